"""The pipeline's parent MLflow run: every step's run is its child, so the UI shows one tree."""

from __future__ import annotations

import os
import time
from collections.abc import Mapping
from typing import Any

import mlflow
from mlflow.entities import Metric, Param, RunTag
from prefect import task

from processes.run_owner import owner_tags, reap_ghosts
from steps.contract import FLOW_RUN_TAG, PARENT_RUN_TAG, PIPELINE_KIND, STEP_TAG, VARIANT_KIND
from tasks.step_result import StepResult
from tasks.tracking_store import result_of, reuse_result


@task(name="start-pipeline-run", persist_result=False)
def start_pipeline_run(
    experiment_id: str,
    run_name: str,
    flow_run_id: str | None,
    params: Mapping[str, Any],
    kind: str = PIPELINE_KIND,
) -> str:
    """Open the parent run (or adopt the one `mlflow run . -e main` opened) and log the config.

    `kind` tags it (`pipeline.step`): "pipeline" for one model, "sweep" for a sweep's parent.
    """
    client = mlflow.MlflowClient()
    adopted = os.environ.get("MLFLOW_RUN_ID")
    run_id = adopted or client.create_run(experiment_id, run_name=run_name).info.run_id
    client.set_tag(run_id, STEP_TAG, kind)
    for key, value in owner_tags().items():  # this flow process: if it dies, the run is a ghost
        client.set_tag(run_id, key, value)
    if flow_run_id:
        client.set_tag(run_id, FLOW_RUN_TAG, flow_run_id)
    existing = client.get_run(run_id).data.params
    for key, value in params.items():
        if key not in existing:
            client.log_param(run_id, key, value)
    return run_id


@task(name="reap-ghost-runs", persist_result=False)
def reap_ghost_runs(experiment_id: str) -> list[str]:
    """Mark KILLED the runs a killed pipeline left RUNNING (their owner process is gone), so the
    MLflow UI shows no ghosts; runs of live pipelines and of other hosts are left alone."""
    return reap_ghosts(experiment_id)


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


@task(name="read-step-run", task_run_name="read-{step}-{run_id}", persist_result=False)
def read_step_run(run_id: str, step: str) -> StepResult:
    """A finished step run read back as its result: a search's best trial that an earlier run
    of the search trained, for the promotion."""
    return result_of(mlflow.MlflowClient().get_run(run_id), step)


@task(name="start-variant-run", task_run_name="variant-{name}", persist_result=False)
def start_variant_run(
    experiment_id: str,
    parent_run_id: str,
    name: str,
    flow_run_id: str | None,
    params: Mapping[str, Any],
) -> str:
    """Open one sweep variant's run under the sweep's parent; its steps become its children."""
    client = mlflow.MlflowClient()
    tags = {PARENT_RUN_TAG: parent_run_id, STEP_TAG: VARIANT_KIND, **owner_tags()}
    if flow_run_id:
        tags[FLOW_RUN_TAG] = flow_run_id
    run_id = client.create_run(experiment_id, run_name=name, tags=tags).info.run_id
    client.log_batch(run_id, params=[Param(key, str(value)) for key, value in params.items()])
    return str(run_id)


@task(name="end-variant-run", persist_result=False)
def end_variant_run(
    run_id: str, succeeded: bool, metrics: Mapping[str, float], tags: Mapping[str, str]
) -> None:
    """Close a variant's run with its scores, so the MLflow UI compares variants side by side."""
    client = mlflow.MlflowClient()
    client.log_batch(
        run_id,
        metrics=[
            Metric(key, float(value), int(time.time() * 1000), 0) for key, value in metrics.items()
        ],
        tags=[RunTag(key, value) for key, value in tags.items()],
    )
    client.set_terminated(run_id, "FINISHED" if succeeded else "FAILED")
