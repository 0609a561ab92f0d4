"""The MLflow tracking store as the orchestrator sees it: experiments, the parent run, reuse.

Plain functions over `MlflowClient`, called from tasks; the tracking URI is set once per process
by `use_tracking_uri` (MLflow reads it globally) and inherited by every entry-point process.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from urllib.parse import urlparse

import mlflow
from mlflow.entities import Run

from tasks.step_result import StepResult

logger = logging.getLogger(__name__)

PARENT_RUN_TAG = "mlflow.parentRunId"
STEP_TAG = "pipeline.step"
FLOW_RUN_TAG = "prefect.flow_run_id"
OUTPUT_TAG_PREFIX = "output."
NOTE_TAG_PREFIX = "note."


def default_tracking_uri(work_dir: Path) -> str:
    """A SQLite store under ./mlruns: a file, yet with a model registry (file stores have none)."""
    return f"sqlite:///{(work_dir / 'mlruns' / 'mlflow.db').resolve()}"


def use_tracking_uri(uri: str) -> str:
    """Point this process and every entry point it starts at one tracking store."""
    parsed = urlparse(uri)
    if parsed.scheme == "sqlite":
        Path(parsed.path).parent.mkdir(parents=True, exist_ok=True)
    os.environ["MLFLOW_TRACKING_URI"] = uri
    mlflow.set_tracking_uri(uri)
    return uri


def local_artifact_root(uri: str) -> str | None:
    """Artifacts of a local SQLite store live beside it, whatever directory a step runs in."""
    parsed = urlparse(uri)
    if parsed.scheme != "sqlite":
        return None
    return (Path(parsed.path).parent / "artifacts").resolve().as_uri()


def ensure_experiment(name: str) -> str:
    client = mlflow.MlflowClient()
    experiment = client.get_experiment_by_name(name)
    if experiment is not None:
        if experiment.lifecycle_stage == "deleted":
            client.restore_experiment(experiment.experiment_id)
        return str(experiment.experiment_id)
    artifact_root = local_artifact_root(mlflow.get_tracking_uri())
    experiment_id = client.create_experiment(name, artifact_location=artifact_root)
    logger.info("created MLflow experiment %r (%s)", name, experiment_id)
    return str(experiment_id)


def outputs_of(run: Run) -> dict[str, str]:
    return {
        key[len(OUTPUT_TAG_PREFIX) :]: value
        for key, value in run.data.tags.items()
        if key.startswith(OUTPUT_TAG_PREFIX)
    }


def notes_of(run: Run) -> dict[str, str]:
    return {
        key[len(NOTE_TAG_PREFIX) :]: value
        for key, value in run.data.tags.items()
        if key.startswith(NOTE_TAG_PREFIX)
    }


def latest_finished_run(experiment_id: str, step: str) -> Run | None:
    """The newest FINISHED run of a step in the experiment: what a partial pipeline reuses."""
    runs = mlflow.MlflowClient().search_runs(
        [experiment_id],
        f"tags.`{STEP_TAG}` = '{step}' and attributes.status = 'FINISHED'",
        order_by=["attributes.start_time DESC"],
        max_results=1,
    )
    return runs[0] if runs else None


def reuse_result(experiment_id: str, step: str) -> StepResult | None:
    run = latest_finished_run(experiment_id, step)
    if run is None:
        return None
    return StepResult(
        step=step,
        run_id=run.info.run_id,
        outputs=outputs_of(run),
        metrics=dict(run.data.metrics),
        notes=notes_of(run),
        reused=True,
    )
