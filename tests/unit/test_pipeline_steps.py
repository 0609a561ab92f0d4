"""The step table: order, wiring, and which left-out steps a partial pipeline must reuse."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from orchestration.config import load_config
from orchestration.step_runner import step_parameters, upstream_steps_to_reuse
from orchestration.step_table import (
    ENTRY_POINT_SPECS,
    EVALUATION_STEP,
    MODEL_STEP,
    PROMOTION_STEP,
    ROLLBACK_STEP,
    SPEC_BY_NAME,
    STEP_NAMES,
    STEPS,
    VARIANT_STEPS,
    shared_steps,
)
from tasks.run_entry_point import PROJECT_ROOT


@pytest.mark.parametrize(
    ("selected", "expected"),
    [
        (("train", "evaluate"), ["data_split"]),
        (("evaluate",), ["data_split", "train"]),
        (("get_data",), []),
        (STEP_NAMES, []),
        (("data_check",), ["basic_cleaning"]),
        (("data_split", "train"), ["basic_cleaning"]),
        (("promote",), ["data_split", "train"]),
        (("basic_cleaning", "evaluate"), ["get_data", "data_split", "train"]),
    ],
)
def test_upstream_steps_to_reuse(selected: tuple[str, ...], expected: list[str]) -> None:
    assert upstream_steps_to_reuse(selected) == expected


def test_upstream_steps_to_reuse_accepts_a_list() -> None:
    assert upstream_steps_to_reuse(["train", "evaluate"]) == ["data_split"]


def test_reused_steps_come_in_pipeline_order() -> None:
    for selected in (("evaluate",), ("basic_cleaning", "evaluate"), ("train",)):
        reused = upstream_steps_to_reuse(selected)
        assert reused == [name for name in STEP_NAMES if name in reused]


def test_step_names_are_unique_and_indexed() -> None:
    assert len(set(STEP_NAMES)) == len(STEPS)
    assert list(SPEC_BY_NAME) == list(STEP_NAMES)


def test_inputs_come_from_earlier_steps_outputs() -> None:
    for position, spec in enumerate(STEPS):
        for parameter, (upstream, output) in spec.inputs.items():
            assert upstream in STEP_NAMES[:position], f"{spec.name}.{parameter} from {upstream}"
            assert output in SPEC_BY_NAME[upstream].outputs, f"{upstream} publishes no {output}"


def test_the_table_says_which_steps_run_per_variant_and_which_promotes() -> None:
    assert VARIANT_STEPS == ("train", "evaluate")
    assert PROMOTION_STEP == "promote" and MODEL_STEP == "train"
    assert EVALUATION_STEP == "evaluate" and ROLLBACK_STEP == "rollback"
    assert shared_steps(STEP_NAMES) == ["get_data", "basic_cleaning", "data_check", "data_split"]
    locked = {name for name, spec in ENTRY_POINT_SPECS.items() if spec.needs_promotion_lock}
    assert locked == {"promote", "rollback"}


def test_every_config_section_is_a_section_of_the_configuration() -> None:
    cfg = load_config([])
    for spec in ENTRY_POINT_SPECS.values():
        if spec.config_section is not None:
            assert hasattr(cfg, spec.config_section), spec.name


def test_rollback_parameters_are_its_entry_points() -> None:
    entry_points = yaml.safe_load((PROJECT_ROOT / "MLproject").read_text())["entry_points"]
    declared = set(entry_points[ROLLBACK_STEP]["parameters"])
    assert set(step_parameters(ROLLBACK_STEP, load_config([]), Path.cwd())) == declared


def test_the_fingerprinted_source_is_a_parameter_the_step_takes() -> None:
    cfg = load_config([])
    for spec in STEPS:
        if spec.fingerprint is not None:
            parameters = step_parameters(spec.name, cfg, Path.cwd())
            assert {spec.fingerprint.parameter, spec.fingerprint.checked_by} <= set(parameters)
