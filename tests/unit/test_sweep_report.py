"""A sweep's choices and report: the winner, the cluster settings, the summary and artifacts."""

from __future__ import annotations

import functools
from pathlib import Path

import pytest

from flows.sweep import SweepFailed, VariantOutcome, pick_best
from orchestration.config import load_config
from orchestration.dask_cluster import (
    describe,
    step_environment,
    step_threads,
    task_runner,
    worker_environment,
)
from orchestration.sweep_plan import SweepPlan, plan_sweep
from reporting.prefect_artifacts import sweep_markdown, variant_rows
from reporting.summary import PipelineSummary
from reporting.sweep_summary import SweepSummary, VariantLine
from tasks.step_result import StepResult


@functools.cache
def _three_variants() -> SweepPlan:
    return plan_sweep([], [["model.alpha=0.1"], ["model.alpha=0.2"], ["model.alpha=0.3"]])


def _outcome(plan_index: int, val_mae: float | None, finished: bool = True) -> VariantOutcome:
    variant = _three_variants().variants[plan_index]
    metrics = {} if val_mae is None else {"val_mae": val_mae}
    outcome = VariantOutcome(
        variant, f"run-{plan_index}", results={"train": StepResult("train", "t", {}, metrics)}
    )
    if finished:
        outcome.results["evaluate"] = StepResult("evaluate", "e", {}, {"test_mae": 1.0})
    return outcome


def test_the_best_validation_score_wins_and_the_first_of_equals() -> None:
    plan = plan_sweep([], [["model.alpha=0.1"]])
    outcomes = [_outcome(0, 30.0), _outcome(1, 25.0), _outcome(2, 25.0)]
    assert pick_best(outcomes, plan).run_id == "run-1"


def test_higher_is_better_when_the_metric_says_so() -> None:
    plan = plan_sweep(
        ["promotion.metric=test_r2", "promotion.direction=maximize"], [["model.alpha=0.1"]]
    )
    outcomes = [_outcome(0, None), _outcome(1, None)]
    outcomes[0].results["train"] = StepResult("train", "t", {}, {"val_r2": 0.5})
    outcomes[1].results["train"] = StepResult("train", "t", {}, {"val_r2": 0.7})
    assert pick_best(outcomes, plan).run_id == "run-1"


def test_only_finished_variants_compete() -> None:
    plan = plan_sweep([], [["model.alpha=0.1"]])
    unfinished = _outcome(0, 1.0, finished=False)
    assert pick_best([unfinished, _outcome(1, 9.0)], plan).run_id == "run-1"
    with pytest.raises(SweepFailed, match="no variant reported val_mae"):
        pick_best([unfinished], plan)


def test_each_step_gets_its_share_of_the_cores() -> None:
    settings = load_config([]).sweep.dask
    assert step_threads(settings, cores=8) == 4
    assert step_threads(settings, cores=1) == 1
    pinned = load_config(["sweep.dask.step_threads=3"]).sweep.dask
    assert step_threads(pinned, cores=8) == 3
    environment = worker_environment(settings, 8, "http://127.0.0.1:4200/api")
    assert environment == {
        "OMP_NUM_THREADS": "4",
        "MKL_NUM_THREADS": "4",
        "OPENBLAS_NUM_THREADS": "4",
        "LOKY_MAX_CPU_COUNT": "4",
        "PREFECT_API_URL": "http://127.0.0.1:4200/api",
    }
    assert describe(settings, 8) == (
        "a local Dask cluster (2 workers in this process, 1 task at a time each; "
        "4 math threads per step; 8 cores)"
    )
    assert step_environment(settings, 8)["OMP_NUM_THREADS"] == "4"
    remote = load_config(["sweep.dask.address=tcp://10.0.0.5:8786"]).sweep.dask
    assert step_environment(remote, 8) == {}  # its machines' cores are not ours to share


def test_a_local_cluster_stays_on_loopback_and_an_address_means_an_existing_one(
    tmp_path: Path,
) -> None:
    local = task_runner(load_config([]).sweep.dask, 2, None, tmp_path)
    assert local.cluster_kwargs["processes"] is False  # in-process: no port at all
    assert local.cluster_kwargs["dashboard_address"] is None
    assert local.cluster_kwargs["n_workers"] == 2
    settings = load_config(["sweep.dask.processes=true"]).sweep.dask
    processes = task_runner(settings, 2, "http://127.0.0.1:4200/api", tmp_path)
    assert processes.cluster_kwargs["host"] == "127.0.0.1"
    assert processes.cluster_kwargs["env"]["PREFECT_API_URL"] == "http://127.0.0.1:4200/api"
    remote_settings = load_config(["sweep.dask.address=tcp://10.0.0.5:8786"]).sweep.dask
    remote = task_runner(remote_settings, 2, None, tmp_path)
    assert remote.address == "tcp://10.0.0.5:8786"
    assert describe(remote_settings, 2) == "the Dask cluster at tcp://10.0.0.5:8786"


def _summary() -> SweepSummary:
    pipeline = PipelineSummary(
        parent_run_id="p" * 32,
        experiment_name="nyc_airbnb_price",
        tracking_uri="sqlite:////tmp/mlruns/mlflow.db",
        test_metrics={"test_mae": 25.9},
    )
    lines = [
        VariantLine(1, "model=torch_lasso model.alpha=0.001", "torch_lasso", "a" * 32, "ran",
                    26.26, {"test_mae": 25.89, "test_r2": 0.77}, 5.6, best=True),
        VariantLine(2, "model=random_forest", "random_forest", "b" * 32, "failed at train",
                    None, {}, 1.0, error="step train failed (permanent): boom"),
    ]  # fmt: skip
    return SweepSummary(pipeline, lines, "val_mae", True, 12.1, "a local Dask cluster", ["x"])


def test_the_report_shows_every_variant_and_marks_the_winner() -> None:
    text = _summary().render()
    assert "Sweep: 2 variants on a local Dask cluster, 12.1 s" in text
    rows = [line for line in text.splitlines() if "model=" in line and "torch_lasso" in line]
    assert rows[0].startswith("* model=torch_lasso model.alpha=0.001")
    assert "failed at train" in text
    assert "variant model=random_forest: step train failed (permanent): boom" in text
    assert "best on the validation split (val_mae, lower is better)" in text
    assert "Pipeline summary" in text
    assert "no winner" not in _summary().headline()


def test_the_prefect_artifacts_link_every_variant_run(monkeypatch: pytest.MonkeyPatch) -> None:
    summary = _summary()
    rows = variant_rows(summary)
    assert [row["best"] for row in rows] == [True, False]
    assert rows[0]["val_mae"] == 26.26
    # A local store is linked where MLFLOW_UI_URL says an MLflow UI serves it; else the ids.
    monkeypatch.delenv("MLFLOW_UI_URL", raising=False)
    assert f"| `{'a' * 8}` |" in sweep_markdown(summary, "1")
    monkeypatch.setenv("MLFLOW_UI_URL", "http://127.0.0.1:5000")
    markdown = sweep_markdown(summary, "1")
    assert f"[{'a' * 8}](http://127.0.0.1:5000/#/experiments/1/runs/{'a' * 32})" in markdown
    assert "| **best** | `model=torch_lasso model.alpha=0.001` |" in markdown
    assert "## Shared steps, winner and promotion" in markdown
