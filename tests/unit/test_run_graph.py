"""The run graph: each step's task run waits for the task runs whose outputs it reads, so
Prefect draws the pipeline's chain instead of every step hanging from the parent run."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from orchestration.config import load_config
from orchestration.step_runner import StepRunner
from orchestration.step_table import SPEC_BY_NAME, STEP_NAMES
from tasks.step_result import StepResult


def _outputs(step: str) -> dict[str, str]:
    return {name: f"runs:/run-{step}/{name}" for name in SPEC_BY_NAME[step].outputs}


def test_each_step_waits_for_the_steps_whose_outputs_it_reads(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    runner = StepRunner(load_config(["main.force=true"]), "1", None, tmp_path)
    waited: dict[str, list[str]] = {}

    def task(*, step: str, wait_for: list[Any], **_: Any) -> StepResult:
        waited[step] = [upstream.step for upstream in wait_for]
        return StepResult(step, f"run-{step}", outputs=_outputs(step))

    monkeypatch.setattr(runner, "task_for", lambda cfg, labelled=True: task)
    # get_data was left out of main.steps: its reused run is no task run of this flow run.
    results: dict[str, StepResult] = {
        "get_data": StepResult("get_data", "old-run", outputs=_outputs("get_data"), reused=True)
    }
    for step in STEP_NAMES[1:]:
        results[step] = runner.run(step, results, "parent")
    assert waited == {
        "basic_cleaning": [],
        "data_check": ["basic_cleaning"],
        "data_split": ["basic_cleaning"],
        "train": ["data_split"],
        "evaluate": ["train", "data_split"],
        "promote": ["train", "data_split"],
    }


def test_a_sweep_variants_evaluate_waits_for_that_variants_train(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Submitted steps (a sweep's variants on Dask) draw the same edges: the variant's train
    future is what its evaluate waits for, besides the shared data_split."""
    runner = StepRunner(load_config(["main.force=true"]), "1", None, tmp_path)

    def task(*, step: str, **_: Any) -> StepResult:
        return StepResult(step, f"run-{step}", outputs=_outputs(step))

    monkeypatch.setattr(runner, "task_for", lambda cfg, labelled=True: task)
    monkeypatch.setattr(runner, "arguments", lambda step, *args, **kwargs: {"step": step})
    results: dict[str, StepResult] = {}
    for step in ("get_data", "basic_cleaning", "data_split"):
        results[step] = runner.run(step, results, "parent")

    submitted: dict[str, list[Any]] = {}

    class Runner:
        def submit(self, task: Any, arguments: dict[str, Any], wait_for: list[Any]) -> str:
            submitted[arguments["step"]] = wait_for
            return f"future-{arguments['step']}"

    future = runner.submit(Runner(), "train", results, "variant-run")  # type: ignore[arg-type]
    train = StepResult("train", "run-train", outputs=_outputs("train"))
    runner.remember(train, future)
    runner.submit(Runner(), "evaluate", {**results, "train": train}, "variant-run")  # type: ignore[arg-type]
    assert [r.step for r in submitted["train"]] == ["data_split"]
    assert submitted["evaluate"][0] == "future-train"
    assert [r.step for r in submitted["evaluate"][1:]] == ["data_split"]
