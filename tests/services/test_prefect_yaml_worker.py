"""prefect.yaml on its own server: `prefect deploy --all` registers the same deployments for the
process work pool, and `prefect worker start` runs one to completion."""

from __future__ import annotations

import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import mlflow
import pytest
from prefect.settings import PREFECT_API_URL, temporary_settings

from deployments.spec import load_deployments
from steps.contract import FLOW_RUN_TAG, STEP_TAG
from tests.services.conftest import (
    PREFECT_CLI,
    PROJECT_ROOT,
    SMALL_RUN,
    PrefectServer,
    check_registered,
    read_served_deployments,
    start_process,
    start_server,
    trigger,
    wait_for_final_states,
)


@pytest.fixture
def own_server(tmp_path: Path) -> Iterator[PrefectServer]:
    """A second server, so prefect.yaml's deployments do not replace the served ones."""
    server = start_server(tmp_path / "server")
    try:
        with temporary_settings({PREFECT_API_URL: server.api_url}):
            yield server
    finally:
        assert server.process.stop(signal.SIGTERM) is not None


def test_prefect_deploy_all_and_a_process_worker_run_the_deployments(
    own_server: PrefectServer, tmp_path: Path
) -> None:
    specs = {spec.name: spec for spec in load_deployments()}
    pool = next(iter(specs.values())).work_pool
    env = own_server.client_env() | {
        "MLFLOW_TRACKING_URI": f"sqlite:///{tmp_path / 'mlflow.db'}",
        "WANDB_MODE": "offline",
        "WANDB_DIR": str(tmp_path),
        "PREFECT_WORKER_QUERY_SECONDS": "2",
    }
    mlflow.MlflowClient(tracking_uri=env["MLFLOW_TRACKING_URI"]).search_experiments()
    for command in (
        ["work-pool", "create", pool, "--type", "process", "--overwrite"],
        ["--no-prompt", "deploy", "--all"],
    ):
        done = subprocess.run(
            [str(PREFECT_CLI), *command],
            cwd=PROJECT_ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )
        assert done.returncode == 0, f"prefect {' '.join(command)}:\n{done.stdout}{done.stderr}"

    client = own_server.client()
    deployments = {d.name: d for d in read_served_deployments(client)}
    assert set(deployments) == set(specs)
    for name, spec in specs.items():
        deployment = deployments[name]
        assert deployment.work_pool_name == pool
        assert deployment.entrypoint == spec.deployable.file_entrypoint
        check_registered(client, deployment, spec)

    worker = start_process(
        "worker",
        [str(PREFECT_CLI), "worker", "start", "--pool", pool],
        env | {"PATH": f"{Path(sys.executable).parent}:{env['PATH']}"},
        tmp_path,
        tmp_path,
    )
    try:
        spec = specs["nightly-retrain"]
        flow_run = trigger(spec.name, {"overrides": [*spec.overrides, *SMALL_RUN]})
        [finished] = wait_for_final_states(client, [flow_run.id], 900, worker).values()
    finally:
        assert worker.stop(signal.SIGINT) is not None
    assert finished.state is not None and finished.state.is_completed(), finished.state
    tracking = mlflow.MlflowClient(tracking_uri=env["MLFLOW_TRACKING_URI"])
    experiments = [e.experiment_id for e in tracking.search_experiments()]
    [parent] = tracking.search_runs(
        experiments,
        filter_string=f"tags.`{FLOW_RUN_TAG}` = '{finished.id}' AND tags.`{STEP_TAG}` = 'pipeline'",
    )
    assert parent.info.status == "FINISHED"
