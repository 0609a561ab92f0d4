"""How an entry point reads its inputs and publishes its outputs through MLflow.

Steps never read each other's local files: inputs arrive as artifact URIs (`runs:/<id>/<path>`),
outputs are artifacts of the step's own run. A run that did not finish is never an input, so a
file half-published by a crashed step cannot be picked up downstream.
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import tempfile
from collections.abc import Iterator, Mapping
from pathlib import Path

import mlflow

from steps.contract import OWNER_HOST_TAG, OWNER_PID_TAG, OWNER_STARTED_TAG, PARENT_RUN_TAG

logger = logging.getLogger(__name__)


def owner_tags() -> dict[str, str]:
    """This process as a run's owner: host, pid and start time (a pid alone can be reused).
    An entry point owns its run; the flow process owns the parent run (processes/run_owner.py
    judges both alike)."""
    import psutil

    return {
        OWNER_HOST_TAG: socket.gethostname(),
        OWNER_PID_TAG: str(os.getpid()),
        OWNER_STARTED_TAG: repr(psutil.Process().create_time()),
    }


@contextlib.contextmanager
def step_run() -> Iterator[mlflow.ActiveRun]:
    """The step's MLflow run: the one `mlflow run` created (MLFLOW_RUN_ID), or a fresh one,
    owned by this process from now on (so a killed step's run can be told from a live one)."""
    with mlflow.start_run() as run:
        mlflow.set_tags(owner_tags())
        yield run


@contextlib.contextmanager
def scratch_dir() -> Iterator[Path]:
    """A private directory for the step's files, removed however the step ends."""
    with tempfile.TemporaryDirectory(prefix="step-") as directory:
        yield Path(directory)


def download_input(uri: str, into: Path) -> Path:
    """Fetch one upstream artifact to a local path; a clear error if it is not there."""
    from steps.common.errors import PreconditionError

    try:
        local = mlflow.artifacts.download_artifacts(artifact_uri=uri, dst_path=str(into))
    except Exception as error:
        raise PreconditionError(
            f"input artifact {uri!r} cannot be read ({error}); run the step that produces it "
            "first (e.g. main.steps=all)"
        ) from error
    from steps.common.wandb_mirror import record_download

    record_download(uri, Path(local))
    return Path(local)


def log_rows(stage: str, rows: int) -> None:
    mlflow.log_metric(f"rows_{stage}", rows)


def log_to_parent(metrics: Mapping[str, float]) -> None:
    """Copy metrics to the pipeline's parent run, so the pipeline's outcome reads off one run."""
    run = mlflow.active_run()
    if run is None:
        return
    parent = run.data.tags.get(PARENT_RUN_TAG)
    if not parent:
        return
    client = mlflow.MlflowClient()
    for key, value in metrics.items():
        client.log_metric(parent, key, float(value))
