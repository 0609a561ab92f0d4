"""The step table: order, wiring, and which left-out steps a partial pipeline must reuse."""

from __future__ import annotations

import pytest

from flows.pipeline_steps import SPEC_BY_NAME, STEP_NAMES, STEPS
from flows.step_runner import upstream_steps_to_reuse


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
