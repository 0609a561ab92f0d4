"""Reliability for real: caching and resume, killed steps, transient failures, timeouts."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import mlflow
import psutil
import pytest

from fault_injection.http_source import Behaviour, http_source
from fault_injection.process_faults import kill_when_started
from flows.train_pipeline import train_pipeline
from steps.ingest.demo_data import generate_listings
from tasks.step_failure import StepFailed
from tests.e2e.conftest import SMALL_DEMO, Workspace

FIRST_STEPS = "main.steps=get_data,basic_cleaning,data_check"


def runs_of(
    workspace: Workspace, step: str, status: str | None = None
) -> list[mlflow.entities.Run]:
    client = workspace.client()
    experiment = client.get_experiment_by_name("nyc_airbnb_price")
    if experiment is None:
        return []
    query = f"tags.`pipeline.step` = '{step}'"
    if status:
        query += f" and attributes.status = '{status}'"
    return client.search_runs([experiment.experiment_id], query)


def listings_csv(rows: int = 1500, seed: int = 11) -> bytes:
    return generate_listings(rows, seed).to_csv(index=False).encode()


def test_unchanged_steps_are_not_rerun_and_force_reruns_them(workspace: Workspace) -> None:
    first = train_pipeline(overrides=[*SMALL_DEMO, FIRST_STEPS])
    assert not any(line.cached for line in first.steps)

    again = train_pipeline(overrides=[*SMALL_DEMO, FIRST_STEPS])
    assert all(line.cached for line in again.steps)
    assert [line.run_id for line in again.steps] == [line.run_id for line in first.steps]
    assert len(runs_of(workspace, "get_data")) == 1

    # Forcing basic_cleaning re-runs it; its output is byte-identical, so data_check (keyed on
    # the content digest of its input, not the run that made it) is still a cache hit.
    forced = train_pipeline(overrides=[*SMALL_DEMO, FIRST_STEPS, "main.force=basic_cleaning"])
    assert [line.cached for line in forced.steps] == [True, False, True]
    assert len(runs_of(workspace, "basic_cleaning")) == 2

    # A changed parameter is a different step: it runs.
    changed = train_pipeline(overrides=[*SMALL_DEMO, FIRST_STEPS, "cleaning.max_price=300"])
    assert [line.cached for line in changed.steps] == [True, False, False]


def test_rerun_after_a_failure_starts_at_the_failed_step(workspace: Workspace) -> None:
    with pytest.raises(StepFailed, match="data_check"):
        train_pipeline(overrides=[*SMALL_DEMO, FIRST_STEPS, "data_check.min_rows=100000"])
    resumed = train_pipeline(overrides=[*SMALL_DEMO, FIRST_STEPS])
    assert [line.cached for line in resumed.steps] == [True, True, False]
    assert len(runs_of(workspace, "data_check", "FAILED")) == 1
    assert len(runs_of(workspace, "data_check", "FINISHED")) == 1


def test_a_step_killed_mid_run_is_retried_and_leaves_no_output(workspace: Workspace) -> None:
    killer = kill_when_started("steps.ingest.basic_cleaning")
    summary = train_pipeline(
        overrides=[
            *SMALL_DEMO,
            FIRST_STEPS,
            "task.retries=1",
            "task.retry_delay_s=0",
            "main.backend=local",
        ]
    )
    killer.join()

    assert killer.killed, "the cleaning process was never seen"  # type: ignore[attr-defined]
    assert [line.step for line in summary.steps] == ["get_data", "basic_cleaning", "data_check"]
    (dead,) = runs_of(workspace, "basic_cleaning", "FAILED")
    assert not any(key.startswith("output.") for key in dead.data.tags)
    assert dead.data.tags["step.error_kind"] == "transient"
    assert len(runs_of(workspace, "basic_cleaning", "FINISHED")) == 1


def test_transient_http_failures_are_retried_until_the_download_succeeds(
    workspace: Workspace,
) -> None:
    behaviour = Behaviour(body=listings_csv(), faults=[503, 502])
    with http_source(behaviour) as url:
        summary = train_pipeline(
            overrides=[
                f"data.source={url}",
                "main.steps=get_data",
                "task.retries=2",
                "task.retry_delay_s=0.1",
            ]
        )
    assert behaviour.requests == 3
    assert summary.steps[0].rows_out == 1500
    failed = runs_of(workspace, "get_data", "FAILED")
    assert len(failed) == 2
    assert all(run.data.tags["step.error_kind"] == "transient" for run in failed)


def test_exhausted_retries_fail_with_the_step_message(workspace: Workspace) -> None:
    with http_source(Behaviour(faults=[503] * 10)) as url, pytest.raises(StepFailed) as failure:
        train_pipeline(overrides=[f"data.source={url}", "task.retries=1", "task.retry_delay_s=0"])
    assert failure.value.transient
    assert failure.value.exit_code == 75
    assert "HTTP 503" in str(failure.value)
    assert len(runs_of(workspace, "get_data", "FAILED")) == 2
    assert runs_of(workspace, "basic_cleaning") == []


def test_a_timeout_really_stops_the_step(workspace: Workspace) -> None:
    with http_source(Behaviour(body=listings_csv(), delay_s=60)) as url:
        started = time.monotonic()
        with pytest.raises(StepFailed, match="timed out after 3 s"):
            train_pipeline(
                overrides=[
                    f"data.source={url}",
                    "main.steps=get_data",
                    "task.retries=0",
                    "task.timeout_s=3",
                ]
            )
        elapsed = time.monotonic() - started
    assert elapsed < 45  # the 60 s response was not waited for
    (stopped,) = runs_of(workspace, "get_data", "FAILED")
    assert stopped.data.tags["step.error_kind"] == "transient"
    leftovers = [
        p
        for p in psutil.Process().children(recursive=True)
        if "steps.ingest.get_data" in " ".join(p.cmdline())
    ]
    assert leftovers == []


def test_http_errors_that_retrying_cannot_fix_fail_at_once(
    workspace: Workspace, tmp_path: Path
) -> None:
    behaviour = Behaviour(faults=[404])
    with http_source(behaviour) as url, pytest.raises(StepFailed) as failure:
        train_pipeline(overrides=[f"data.source={url}", "task.retries=3"])
    assert not failure.value.transient
    assert "HTTP 404" in str(failure.value)
    assert behaviour.requests == 1  # not retried


def test_two_pipelines_at_once_on_the_same_stores_end_consistent(workspace: Workspace) -> None:
    errors: list[BaseException] = []

    def run(model: str) -> None:
        try:
            train_pipeline(
                overrides=[*SMALL_DEMO, f"model={model}", "task.retries=2", "task.retry_delay_s=1"]
            )
        except BaseException as error:  # surfaced by the assertion below
            errors.append(error)

    threads = [threading.Thread(target=run, args=(m,)) for m in ("torch_lasso", "random_forest")]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=900)
    assert not errors

    client = workspace.client()
    versions = client.search_model_versions("name = 'housing_price'")
    assert len({v.run_id for v in versions}) == len(versions) == 2
    lasso_train = next(
        run
        for run in runs_of(workspace, "train", "FINISHED")
        if '"torch_lasso"' in run.data.params["model_config"]
    )
    champion = client.get_model_version_by_alias("housing_price", "champion")
    assert champion.run_id == lasso_train.info.run_id  # the better model, whatever the order
    for step in ("get_data", "basic_cleaning", "data_split", "train"):
        for finished in runs_of(workspace, step, "FINISHED"):
            assert any(key.startswith("output.") for key in finished.data.tags)
