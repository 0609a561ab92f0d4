"""The pipeline's steps in order, and which upstream outputs each one consumes.

This table is the only place that knows how steps connect: the flow walks it, the config
validates `main.steps` against it, and the contract tests check it against MLproject.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class StepSpec:
    name: str
    # Names of the outputs the step publishes.
    outputs: tuple[str, ...] = ()
    # Entry-point parameter -> (upstream step, upstream output) it is fed from.
    inputs: dict[str, tuple[str, str]] = field(default_factory=dict)
    # Whether a finished run with the same inputs may stand for the step (tasks/step_cache.py).
    # Promotion acts on the registry's current state, so it always runs.
    cacheable: bool = True


STEPS: tuple[StepSpec, ...] = (
    StepSpec("get_data", outputs=("raw_data",)),
    StepSpec(
        "basic_cleaning",
        outputs=("clean_data",),
        inputs={"input_artifact": ("get_data", "raw_data")},
    ),
    StepSpec("data_check", inputs={"input_artifact": ("basic_cleaning", "clean_data")}),
    StepSpec(
        "data_split",
        outputs=("train_data", "val_data", "test_data"),
        inputs={"input_artifact": ("basic_cleaning", "clean_data")},
    ),
    StepSpec(
        "train",
        outputs=("model",),
        inputs={"train_data": ("data_split", "train_data"), "val_data": ("data_split", "val_data")},
    ),
    StepSpec(
        "evaluate",
        inputs={"model": ("train", "model"), "test_data": ("data_split", "test_data")},
    ),
    StepSpec(
        "promote",
        inputs={"model": ("train", "model"), "test_data": ("data_split", "test_data")},
        cacheable=False,
    ),
)

STEP_NAMES: tuple[str, ...] = tuple(spec.name for spec in STEPS)
SPEC_BY_NAME: dict[str, StepSpec] = {spec.name: spec for spec in STEPS}

# Entry points outside the pipeline, run by their own flows (flows/promotion.py).
MAINTENANCE_ENTRY_POINTS: tuple[str, ...] = ("rollback",)
