"""The deployments on a real Prefect server: schedules, event triggers, runs, MLflow output,
limits, errors."""

from __future__ import annotations

import json
from typing import Any
from uuid import UUID

import mlflow
import pytest

from deployments.spec import load_deployments
from orchestration.step_table import STEP_NAMES
from steps.contract import FLOW_RUN_TAG, PARENT_RUN_TAG, STEP_TAG
from tests.services.conftest import (
    SMALL_RUN,
    DeploymentRuns,
    PrefectServer,
    Served,
    check_registered,
    read_run_artifacts,
    read_served_deployments,
    train_specs,
    trigger,
    wait_for_final_states,
)

SPECS = {spec.name: spec for spec in load_deployments()}
TRAIN_SPECS = {spec.name: spec for spec in train_specs()}


def _model(deployment: str) -> str:
    spec = TRAIN_SPECS[deployment]
    overrides = spec.overrides
    typed = (spec.form.model if spec.form is not None else None) or "torch_lasso"
    return next((o.split("=", 1)[1] for o in overrides if o.startswith("model=")), typed)


def test_every_deployment_is_registered_with_its_schedule(
    prefect_server: PrefectServer, served: Served, deployment_runs: DeploymentRuns
) -> None:
    """Each deployment runs its own flow, on its cron (or none) and on its event triggers,
    which the server holds as automations that run the deployment with the event's object."""
    client = prefect_server.client()
    deployments = {d.name: d for d in read_served_deployments(client)}
    assert set(deployments) == set(SPECS)
    for name, spec in SPECS.items():
        deployment = deployments[name]
        assert deployment.entrypoint == spec.deployable.module_entrypoint
        check_registered(client, deployment, spec)
    assert any(spec.triggers for spec in SPECS.values()), "no deployment runs on events"


DEPLOYMENTS = list(TRAIN_SPECS)


@pytest.mark.parametrize("name", DEPLOYMENTS)
def test_deployment_run_completes_with_a_readable_name(
    name: str, deployment_runs: DeploymentRuns
) -> None:
    flow_run = deployment_runs.runs[name]
    assert flow_run.state is not None
    assert flow_run.state.is_completed(), flow_run.state.message
    assert flow_run.name.startswith(f"train-{_model(name)}-demo-"), flow_run.name


@pytest.mark.parametrize("name", DEPLOYMENTS)
def test_deployment_run_produced_its_mlflow_runs(
    name: str, served: Served, deployment_runs: DeploymentRuns
) -> None:
    flow_run = deployment_runs.runs[name]
    client = mlflow.MlflowClient(tracking_uri=served.tracking_uri)
    experiments = client.search_experiments()
    [parent] = client.search_runs(
        [e.experiment_id for e in experiments],
        filter_string=f"tags.`{FLOW_RUN_TAG}` = '{flow_run.id}' AND tags.`{STEP_TAG}` = 'pipeline'",
    )
    assert parent.info.status == "FINISHED"
    assert parent.data.params["model"] == _model(name)
    children = client.search_runs(
        [parent.info.experiment_id],
        filter_string=f"tags.`{PARENT_RUN_TAG}` = '{parent.info.run_id}'",
    )
    steps = {run.data.tags[STEP_TAG] for run in children}
    # Steps whose inputs did not change are cached: an earlier run's child stands for them.
    assert {"train", "evaluate", "promote"} <= steps <= set(STEP_NAMES), steps
    assert all(run.info.status == "FINISHED" for run in children)


@pytest.mark.parametrize("name", DEPLOYMENTS)
def test_deployment_run_publishes_a_summary_and_a_step_table(
    name: str, prefect_server: PrefectServer, deployment_runs: DeploymentRuns
) -> None:
    by_key = read_run_artifacts(prefect_server.client(), deployment_runs.runs[name].id)
    assert {"pipeline-summary", "pipeline-steps"} <= set(by_key)
    summary = str(by_key["pipeline-summary"].data)
    assert "test_mae" in summary and "Champion/challenger verdict" in summary
    assert "/#/experiments/" in summary and "/runs/" in summary
    data = by_key["pipeline-steps"].data
    rows: list[dict[str, Any]] = json.loads(data) if isinstance(data, str) else list(data)  # type: ignore[arg-type]
    assert [row["step"] for row in rows] == list(STEP_NAMES)
    assert {"wall_s", "work_s", "rows_in", "rows_out"} <= set(rows[0])


def test_a_second_run_while_one_trains_is_cancelled_not_queued(
    prefect_server: PrefectServer, served: Served, deployment_runs: DeploymentRuns
) -> None:
    spec = TRAIN_SPECS["nightly-retrain"]
    parameters = {"overrides": [*spec.overrides, *SMALL_RUN, "main.force=train"]}
    ids: list[UUID] = [trigger(spec.name, parameters).id for _ in range(2)]
    runs = wait_for_final_states(prefect_server.client(), ids, 600, served.process)
    states = sorted(str(run.state_name) for run in runs.values())
    assert states == ["Cancelled", "Completed"], states
    [cancelled] = [run for run in runs.values() if run.state and run.state.is_cancelled()]
    assert cancelled.state is not None
    assert "concurrency limit" in (cancelled.state.message or "")


def test_bad_parameters_from_the_ui_fail_at_once_with_the_config_error(
    prefect_server: PrefectServer, served: Served, deployment_runs: DeploymentRuns
) -> None:
    flow_run = trigger("weekly-retrain-random-forest", {"overrides": ["model=xgb"]})
    [finished] = wait_for_final_states(
        prefect_server.client(), [flow_run.id], 180, served.process
    ).values()
    assert finished.state is not None and finished.state.is_failed()
    message = finished.state.message or ""
    assert "ConfigError" in message
    assert "invalid override: model=xgb is not an option; allowed:" in message
    assert "random_forest" in message
    assert finished.name.startswith("train-invalid-config-")


def test_parameters_of_the_wrong_type_are_refused_by_the_server(
    prefect_server: PrefectServer, served: Served, deployment_runs: DeploymentRuns
) -> None:
    with pytest.raises(Exception, match="overrides"):
        trigger("nightly-retrain", {"overrides": "model=random_forest"})
