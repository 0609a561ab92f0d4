"""The pipeline's parent MLflow run: every step's run is its child, so the UI shows one tree."""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

import mlflow
from prefect import task

from tasks.step_result import StepResult
from tasks.tracking_store import FLOW_RUN_TAG, STEP_TAG, reuse_result


@task(name="start-pipeline-run", persist_result=False)
def start_pipeline_run(
    experiment_id: str,
    run_name: str,
    flow_run_id: str | None,
    params: Mapping[str, Any],
) -> str:
    """Open the parent run (or adopt the one `mlflow run . -e main` opened) and log the config."""
    client = mlflow.MlflowClient()
    adopted = os.environ.get("MLFLOW_RUN_ID")
    run_id = adopted or client.create_run(experiment_id, run_name=run_name).info.run_id
    client.set_tag(run_id, STEP_TAG, "pipeline")
    if flow_run_id:
        client.set_tag(run_id, FLOW_RUN_TAG, flow_run_id)
    existing = client.get_run(run_id).data.params
    for key, value in params.items():
        if key not in existing:
            client.log_param(run_id, key, value)
    return run_id


@task(name="end-pipeline-run", persist_result=False)
def end_pipeline_run(run_id: str, succeeded: bool) -> None:
    """Close the parent run, unless `mlflow run` owns it and will close it itself."""
    if os.environ.get("MLFLOW_RUN_ID") == run_id:
        return
    mlflow.MlflowClient().set_terminated(run_id, "FINISHED" if succeeded else "FAILED")


@task(name="reuse-step-outputs", task_run_name="reuse-{step}", persist_result=False)
def reuse_step_outputs(experiment_id: str, step: str) -> StepResult | None:
    """The latest finished run of a step left out of `main.steps`, whose outputs feed later ones."""
    return reuse_result(experiment_id, step)
