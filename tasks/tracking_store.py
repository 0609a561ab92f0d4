"""The MLflow tracking store as the orchestrator sees it: experiments, the parent run, reuse.

Plain functions over `MlflowClient`, called from tasks; the tracking URI is set once per process
by `use_tracking_uri` (MLflow reads it globally) and inherited by every entry-point process.
"""

from __future__ import annotations

import fcntl
import logging
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import mlflow
from mlflow.entities import Run
from mlflow.exceptions import MlflowException

from steps.contract import DIGEST_TAG_PREFIX, NOTE_TAG_PREFIX, OUTPUT_TAG_PREFIX, STEP_TAG
from tasks.step_result import StepResult

logger = logging.getLogger(__name__)


def default_tracking_uri(work_dir: Path) -> str:
    """A SQLite store under ./mlruns: a file, yet with a model registry (file stores have none)."""
    return f"sqlite:///{(work_dir / 'mlruns' / 'mlflow.db').resolve()}"


def use_tracking_uri(uri: str) -> str:
    """Point this process and every entry point it starts at one tracking store."""
    parsed = urlparse(uri)
    os.environ["MLFLOW_TRACKING_URI"] = uri
    mlflow.set_tracking_uri(uri)
    if parsed.scheme == "sqlite":
        _create_sqlite_store_once(Path(parsed.path))
    return uri


def use_environment(environment: Mapping[str, str]) -> None:
    """Adopt the flow's store settings in this process (a Dask worker runs tasks of flows that
    started elsewhere); a no-op where they are already in place."""
    for name, value in environment.items():
        if os.environ.get(name) != value:
            os.environ[name] = value
    uri = environment.get("MLFLOW_TRACKING_URI")
    if uri and mlflow.get_tracking_uri() != uri:
        use_tracking_uri(uri)


def _create_sqlite_store_once(database: Path) -> None:
    """Create a new SQLite store's schema under a file lock.

    Two pipelines starting together on a store that does not exist yet would both run MLflow's
    schema migrations, and the loser fails ("duplicate column name"). The first one creates it
    while the other waits; afterwards the lock costs one open of an empty file.
    """
    database.parent.mkdir(parents=True, exist_ok=True)
    with (database.parent / f".{database.name}.create.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            mlflow.MlflowClient().search_experiments(max_results=1)
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


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
    try:
        experiment_id = client.create_experiment(name, artifact_location=artifact_root)
    except MlflowException:  # created meanwhile by a pipeline started at the same time
        created = client.get_experiment_by_name(name)
        if created is None:
            raise
        return str(created.experiment_id)
    logger.info("created MLflow experiment %r (%s)", name, experiment_id)
    return str(experiment_id)


def _tags_with_prefix(run: Run, prefix: str) -> dict[str, str]:
    return {
        key[len(prefix) :]: value for key, value in run.data.tags.items() if key.startswith(prefix)
    }


def outputs_of(run: Run) -> dict[str, str]:
    return _tags_with_prefix(run, OUTPUT_TAG_PREFIX)


def notes_of(run: Run) -> dict[str, str]:
    return _tags_with_prefix(run, NOTE_TAG_PREFIX)


def result_of(run: Run, step: str, **flags: Any) -> StepResult:
    """A finished run, read back as the step's result."""
    return StepResult(
        step=step,
        run_id=run.info.run_id,
        outputs=outputs_of(run),
        metrics=dict(run.data.metrics),
        notes=notes_of(run),
        digests=_tags_with_prefix(run, DIGEST_TAG_PREFIX),
        **flags,
    )


def newest_finished_run(experiment_id: str, tag: str, value: str) -> Run | None:
    """The newest FINISHED run of the experiment whose tag `tag` is `value`."""
    runs = mlflow.MlflowClient().search_runs(
        [experiment_id],
        f"tags.`{tag}` = '{value}' and attributes.status = 'FINISHED'",
        order_by=["attributes.start_time DESC"],
        max_results=1,
    )
    return runs[0] if runs else None


def latest_finished_run(experiment_id: str, step: str) -> Run | None:
    """The newest FINISHED run of a step in the experiment: what a partial pipeline reuses."""
    return newest_finished_run(experiment_id, STEP_TAG, step)


def reuse_result(experiment_id: str, step: str) -> StepResult | None:
    run = latest_finished_run(experiment_id, step)
    return None if run is None else result_of(run, step, reused=True)
