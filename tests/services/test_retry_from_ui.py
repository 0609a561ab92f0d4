"""Retry from the Prefect UI: a deployment run that failed at `train` (retries exhausted) is
retried with the very call the UI's Retry button makes, re-runs `train` and what follows only,
shows the steps that had finished as Cached, and completes.

The fault is real for the entry point: STEP_FAILPOINT (set on the served process by the
`served` fixture) makes `train` fail with a transient error while a file exists; the test
removes the file before it presses Retry.
"""

from __future__ import annotations

from typing import Any
from uuid import UUID

import mlflow

from orchestration.step_table import STEP_NAMES
from steps.contract import FLOW_RUN_TAG, STEP_TAG
from tests.services.conftest import (
    PrefectServer,
    Served,
    read_served_deployments,
    trigger,
    wait_for,
    wait_for_final_states,
)

# Data no other services test uses, so that no step is cached before this run starts.
OVERRIDES = [
    "main.steps=all",
    "data.demo_rows=2100",
    "data.demo_seed=1414",
    "task.retries=1",
    "task.retry_delay_s=0.5",
    "task.retry_jitter=0",
]
UPSTREAM = ["get_data", "basic_cleaning", "data_check", "data_split"]
DOWNSTREAM = ["train", "evaluate", "promote"]


def press_retry(server: PrefectServer, flow_run_id: UUID) -> None:
    """What the Prefect UI's Retry button sends (prefect/server/ui, `retryFlowRun`): the flow
    run's state set to Scheduled, named AwaitingRetry, through the set_state endpoint."""
    response = server.client().request(
        "POST",
        "/flow_runs/{id}/set_state",
        path_params={"id": flow_run_id},
        json={
            "state": {"type": "SCHEDULED", "name": "AwaitingRetry", "message": "Retry from the UI"},
            "force": False,
        },
    )
    assert response.json()["status"] == "ACCEPT", response.json()


def step_task_runs(server: PrefectServer, flow_run_id: UUID) -> list[dict[str, Any]]:
    """The flow run's step task runs as the server holds them (the UI's task run list)."""
    response = server.client().request(
        "POST",
        "/task_runs/filter",
        json={
            "task_runs": {"flow_run_id": {"any_": [str(flow_run_id)]}},
            "sort": "EXPECTED_START_TIME_ASC",
            "limit": 200,
            "offset": 0,
        },
    )
    runs = response.json()
    return [run for run in runs if run["name"].split("-", 1)[0] in STEP_NAMES]


def by_step(task_runs: list[dict[str, Any]], attempt: int) -> dict[str, dict[str, Any]]:
    """The task runs of one run of the flow (1: the first, 2: the retry), by step name."""
    return {
        run["name"].split("-", 1)[0]: run
        for run in task_runs
        if run["flow_run_run_count"] == attempt
    }


def mlflow_runs(served: Served, flow_run_id: UUID) -> dict[str, list[str]]:
    """Statuses of the flow run's MLflow step runs, by step."""
    client = mlflow.MlflowClient(tracking_uri=served.tracking_uri)
    experiments = [e.experiment_id for e in client.search_experiments()]
    runs = client.search_runs(experiments, filter_string=f"tags.`{FLOW_RUN_TAG}` = '{flow_run_id}'")
    statuses: dict[str, list[str]] = {}
    for run in runs:
        statuses.setdefault(run.data.tags.get(STEP_TAG, "?"), []).append(run.info.status)
    return {step: sorted(values) for step, values in statuses.items()}


def test_retry_from_the_ui_reruns_train_onwards_with_finished_steps_cached(
    prefect_server: PrefectServer, served: Served
) -> None:
    client = prefect_server.client()
    wait_for(lambda: read_served_deployments(client), 120, "the served deployments")
    served.train_fault.touch()
    try:
        flow_run = trigger("nightly-retrain", {"overrides": OVERRIDES})
        [failed] = wait_for_final_states(client, [flow_run.id], 900, served.process).values()
    finally:
        served.train_fault.unlink()
    assert failed.state is not None and failed.state.is_failed(), failed.state

    first = by_step(step_task_runs(prefect_server, flow_run.id), attempt=1)
    assert [first[step]["state"]["type"] for step in UPSTREAM] == ["COMPLETED"] * 4
    assert first["train"]["state"]["type"] == "FAILED"
    assert first["train"]["run_count"] == 2  # the first try and its one retry
    assert "evaluate" not in first
    before = mlflow_runs(served, flow_run.id)
    assert before["train"] == ["FAILED", "FAILED"], before
    assert all(before[step] == ["FINISHED"] for step in UPSTREAM), before

    press_retry(prefect_server, flow_run.id)
    wait_for(
        lambda: client.read_flow_run(flow_run.id).run_count >= 2,
        300,
        "the served process to pick the retried run up",
    )
    [retried] = wait_for_final_states(client, [flow_run.id], 900, served.process).values()
    assert retried.state is not None and retried.state.is_completed(), retried.state

    second = by_step(step_task_runs(prefect_server, flow_run.id), attempt=2)
    states = {step: (run["state"]["type"], run["state"]["name"]) for step, run in second.items()}
    assert {step: states[step] for step in UPSTREAM} == dict.fromkeys(
        UPSTREAM, ("COMPLETED", "Cached")
    ), states
    assert {step: states[step] for step in DOWNSTREAM} == dict.fromkeys(
        DOWNSTREAM, ("COMPLETED", "Completed")
    ), states
    after = mlflow_runs(served, flow_run.id)
    # get_data and the rest upstream did not run again; train ran once more, then the rest.
    assert all(after[step] == ["FINISHED"] for step in UPSTREAM), after
    assert after["train"] == ["FAILED", "FAILED", "FINISHED"], after
    assert after["evaluate"] == ["FINISHED"] and after["promote"] == ["FINISHED"], after
