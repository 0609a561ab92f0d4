"""End-to-end fixtures: a temporary Prefect API, tracking store, W&B directory and working dir."""

from __future__ import annotations

import contextlib
import os
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import mlflow
import pytest
from prefect.testing.utilities import prefect_test_harness

# The variables the pipeline sets for itself and its entry points; each test restores them.
_PIPELINE_ENV = (
    "MLFLOW_TRACKING_URI",
    "WANDB_MODE",
    "WANDB_PROJECT",
    "WANDB_RUN_GROUP",
    "WANDB_DIR",
    "PATH",
)


@pytest.fixture(scope="session", autouse=True)
def prefect_api() -> Iterator[None]:
    """One temporary Prefect API (own SQLite database) for the whole e2e session."""
    with prefect_test_harness(server_startup_timeout=120):
        yield


@dataclass(frozen=True)
class Workspace:
    root: Path
    tracking_uri: str

    def client(self) -> mlflow.MlflowClient:
        return mlflow.MlflowClient(tracking_uri=self.tracking_uri)


def isolate(monkeypatch: pytest.MonkeyPatch, root: Path) -> Workspace:
    """Point the pipeline's stores and working directory at `root` for one test."""
    for name in _PIPELINE_ENV:
        if name in os.environ:
            monkeypatch.setenv(name, os.environ[name])
        else:
            monkeypatch.delenv(name, raising=False)
    tracking_uri = f"sqlite:///{root / 'mlruns' / 'mlflow.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", tracking_uri)
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_DIR", str(root))
    monkeypatch.setenv("MLFLOW_DISABLE_TELEMETRY", "true")
    monkeypatch.setenv("DO_NOT_TRACK", "true")
    monkeypatch.chdir(root)
    return Workspace(root=root, tracking_uri=tracking_uri)


@contextlib.contextmanager
def copy_of(seed: Path, root: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Workspace]:
    """A private copy of a seeded tracking database under `root` (artifacts stay shared and are
    only read), so each test starts from the same store without re-running the seed. The
    process's tracking URI is restored afterwards."""
    (root / "mlruns").mkdir()
    shutil.copy(seed / "mlruns" / "mlflow.db", root / "mlruns" / "mlflow.db")
    previous = mlflow.get_tracking_uri()
    try:
        yield isolate(monkeypatch, root)
    finally:
        mlflow.set_tracking_uri(previous)


@pytest.fixture
def workspace(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Workspace]:
    """A fresh working directory with its own SQLite tracking store and offline W&B."""
    previous_uri = mlflow.get_tracking_uri()
    yield isolate(monkeypatch, tmp_path)
    mlflow.set_tracking_uri(previous_uri)


# Small enough to keep each pipeline quick, large enough for data_check's row bounds.
SMALL_DEMO = ["data.demo_rows=3000", "task.retries=0"]
