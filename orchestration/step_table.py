"""The pipeline's steps in order, and everything the orchestration knows about each one.

This table is the only place that names a step: the flow walks it, the config validates
`main.steps` against it, the runner builds each step's parameters and cache key from it, a sweep
reads which steps run per variant, the summary reads which metrics count its rows, and the
contract tests check it against MLproject. Adding a step is one row here (plus its entry point).
No Prefect and no MLflow here, so flows, reporting and tests all import it cheaply.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # orchestration/config.py validates main.steps against this table
    from orchestration.config import PipelineConfig

# A step's parameters from the validated configuration (and the directory the run started in,
# against which a relative data source is resolved), by the names its MLproject declares.
Parameters = Callable[["PipelineConfig", Path], dict[str, Any]]


@dataclass(frozen=True)
class SourceFingerprint:
    """A parameter that enters the cache key by the content it names, not by its text.

    `parameter` holds a location (get_data's `source`); its content digest goes into the key,
    and, when there is one, into `checked_by`, which the step compares with the bytes it reads,
    so a file replaced after the fingerprint is never cached under it.
    """

    parameter: str
    checked_by: str


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
    # The section of PipelineConfig its settings come from (None: it has none of its own).
    config_section: str | None = None
    # Its parameters from the configuration (None: the fields of its config section, by name);
    # the upstream inputs are added by the runner.
    parameters: Parameters | None = field(default=None, compare=False)
    # The metrics that count the rows it read and wrote, for the summary ("": none).
    rows: tuple[str, str] = ("", "")
    # Run once per variant in a sweep (the steps before the first such step are shared).
    per_variant: bool = False
    # It moves a registry alias, under the promotion lock (steps/registry/promotion_lock.py).
    needs_promotion_lock: bool = False
    # The parameter whose content (not text) enters its cache key, if any.
    fingerprint: SourceFingerprint | None = None
    # Its `test_` metrics are the scores of the run's model (the summary's test metrics).
    scores_model: bool = False
    # Its Prefect task runs are named after the model and source ("train-random_forest-demo").
    labelled: bool = True

    def settings(self, cfg: PipelineConfig, start_dir: Path) -> dict[str, Any]:
        """The entry point's parameters from the configuration, by its MLproject names."""
        if self.parameters is not None:
            return self.parameters(cfg, start_dir)
        if self.config_section is None:
            return {}
        section: dict[str, Any] = getattr(cfg, self.config_section).model_dump()
        return section


def _get_data(cfg: PipelineConfig, start_dir: Path) -> dict[str, Any]:
    # source_sha256: filled in by the runner from the fingerprint when the run is cacheable.
    # require_price: training needs the price; the scoring flow passes SCORING_INPUT_PARAMETERS.
    source = cfg.data.resolved_source(start_dir)
    return cfg.data.model_dump() | {"source": source, "source_sha256": "", "require_price": True}


def _promotion_lock(cfg: PipelineConfig) -> dict[str, Any]:
    return {
        "lock_timeout_s": cfg.promotion.lock_timeout_s,
        "lock_lease_s": cfg.promotion.lock_lease_s,
    }


def _aliases(cfg: PipelineConfig) -> dict[str, Any]:
    return {
        "registered_model": cfg.main.registered_model,
        "alias": cfg.promotion.alias,
        "challenger_alias": cfg.promotion.challenger_alias,
        "use_stages": cfg.promotion.use_stages,
    }


def _promote(cfg: PipelineConfig, start_dir: Path) -> dict[str, Any]:
    promotion = cfg.promotion
    return (
        _aliases(cfg)
        | {
            "metric": promotion.metric,
            "direction": promotion.direction,
            "min_relative_improvement": promotion.min_relative_improvement,
            "gate": promotion.gate_bounds(),
            "ready_timeout_s": promotion.ready_timeout_s,
            "dry_run": promotion.dry_run,
        }
        | _promotion_lock(cfg)
    )


def _rollback(cfg: PipelineConfig, start_dir: Path) -> dict[str, Any]:
    # to_version: 0 moves back to the previous champion; the rollback flow passes its own.
    return _aliases(cfg) | {"to_version": 0} | _promotion_lock(cfg)


def _score(cfg: PipelineConfig, start_dir: Path) -> dict[str, Any]:
    # A relative output is taken from where the command was started, like a relative source.
    scoring = cfg.scoring
    return {
        "registered_model": cfg.main.registered_model,
        "alias": scoring.alias or cfg.promotion.alias,
        "output": scoring.resolved_output(start_dir),
        "drift_threshold": scoring.drift_threshold,
    }


STEPS: tuple[StepSpec, ...] = (
    StepSpec(
        "get_data",
        outputs=("raw_data",),
        config_section="data",
        parameters=_get_data,
        rows=("", "rows_out"),
        fingerprint=SourceFingerprint("source", checked_by="source_sha256"),
    ),
    StepSpec(
        "basic_cleaning",
        outputs=("clean_data",),
        inputs={"input_artifact": ("get_data", "raw_data")},
        config_section="cleaning",
        rows=("rows_in", "rows_out"),
    ),
    StepSpec(
        "data_check",
        inputs={"input_artifact": ("basic_cleaning", "clean_data")},
        config_section="data_check",
        # The cleaning bounds are the data contract the check holds the clean data to.
        parameters=lambda cfg, start_dir: cfg.data_check.model_dump() | cfg.cleaning.bounds(),
        rows=("rows_checked", "rows_checked"),
    ),
    StepSpec(
        "data_split",
        outputs=("train_data", "val_data", "test_data"),
        inputs={"input_artifact": ("basic_cleaning", "clean_data")},
        config_section="split",
        rows=("", "rows_train"),
    ),
    StepSpec(
        "train",
        outputs=("model",),
        inputs={"train_data": ("data_split", "train_data"), "val_data": ("data_split", "val_data")},
        config_section="model",
        # trial: empty outside a search; a search's trials name theirs (flows/search.py).
        parameters=lambda cfg, start_dir: {"model_config": cfg.model.model_dump(), "trial": {}},
        rows=("rows_train", "rows_train"),
        per_variant=True,
    ),
    StepSpec(
        "evaluate",
        inputs={"model": ("train", "model"), "test_data": ("data_split", "test_data")},
        rows=("rows_test", "rows_test"),
        per_variant=True,
        scores_model=True,
    ),
    StepSpec(
        "promote",
        inputs={"model": ("train", "model"), "test_data": ("data_split", "test_data")},
        cacheable=False,
        config_section="promotion",
        parameters=_promote,
        needs_promotion_lock=True,
    ),
)

STEP_NAMES: tuple[str, ...] = tuple(spec.name for spec in STEPS)

# Entry points outside the pipeline, run by their own flows (flows/promotion.py, flows/score.py).
MAINTENANCE_STEPS: tuple[StepSpec, ...] = (
    StepSpec(
        "rollback",
        cacheable=False,
        config_section="promotion",
        parameters=_rollback,
        needs_promotion_lock=True,
        labelled=False,
    ),
)
MAINTENANCE_ENTRY_POINTS: tuple[str, ...] = tuple(spec.name for spec in MAINTENANCE_STEPS)

# Entry points that price listings with a registered version, run by flows/score.py after the
# pipeline's own get_data. Never cached: the alias they score with may have moved since.
SCORING_STEPS: tuple[StepSpec, ...] = (
    StepSpec(
        "score",
        outputs=("predictions",),
        inputs={"input_artifact": ("get_data", "raw_data")},
        cacheable=False,
        config_section="scoring",
        parameters=_score,
        rows=("rows_scored", "rows_scored"),
        labelled=False,
    ),
)
SCORING_ENTRY_POINTS: tuple[str, ...] = tuple(spec.name for spec in SCORING_STEPS)

SPEC_BY_NAME: dict[str, StepSpec] = {spec.name: spec for spec in STEPS}
ENTRY_POINT_SPECS: dict[str, StepSpec] = (
    SPEC_BY_NAME | {s.name: s for s in MAINTENANCE_STEPS} | {s.name: s for s in SCORING_STEPS}
)

# The steps every sweep variant runs for itself, in order; the steps before them are shared.
VARIANT_STEPS: tuple[str, ...] = tuple(spec.name for spec in STEPS if spec.per_variant)
# The pipeline step that moves the champion alias: its notes are the run's promotion verdict.
PROMOTION_STEP: str = next(spec.name for spec in STEPS if spec.needs_promotion_lock)
# The step whose run holds the model that the promotion step registers.
MODEL_STEP: str = SPEC_BY_NAME[PROMOTION_STEP].inputs["model"][0]
# The step that scores the model on the test split (its `test_` metrics are the run's scores).
EVALUATION_STEP: str = next(spec.name for spec in STEPS if spec.scores_model)
# The maintenance entry point that moves the champion back.
ROLLBACK_STEP: str = MAINTENANCE_STEPS[0].name
# The entry point that scores listings, and the pipeline step that reads them for it.
SCORING_STEP: str = SCORING_STEPS[0].name
SCORING_INPUT_STEP: str = SCORING_STEPS[0].inputs["input_artifact"][0]
# What the scoring flow's get_data takes besides the table's parameters: listings to price
# may come without a price.
SCORING_INPUT_PARAMETERS: dict[str, Any] = {"require_price": False}


def shared_steps(selected: tuple[str, ...]) -> list[str]:
    """The selected steps a sweep runs once for all variants: those before the per-variant ones
    (the promotion of the winner comes after them)."""
    return [
        name
        for name in selected
        if not SPEC_BY_NAME[name].per_variant and not SPEC_BY_NAME[name].needs_promotion_lock
    ]
