"""`make mlflow-server` with MLFLOW_ARTIFACTS_DESTINATION=oss://bucket/mlflow, for real.

`python -m deployments.tracking_server` keeps its artifacts on the loopback OSS server: a client
that has only the server's URL (no OSS settings) logs an artifact and a model, reads both back
and deletes one; the objects are in the OSS bucket, nothing is on the server's disk, and no
credential is in its log, database or command line. STS credentials, the secret and token from
the `.env` where the server starts.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import mlflow
import numpy as np
import pytest
from mlflow.exceptions import MlflowException

from tests.loopback import free_port, healthy
from tests.oss_server import OssServer
from tests.oss_store import KEY_ID, KEY_SECRET, ROOT, TOKEN, assert_no_secret, keys, loopback_store
from tests.services.conftest import group_command_lines

PROJECT_ROOT = Path(__file__).resolve().parents[2]
SERVER_START_TIMEOUT_S = 60.0
IN_DOTENV = ("OSS_ACCESS_KEY_SECRET", "OSS_SECURITY_TOKEN")


@pytest.fixture
def oss(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[OssServer]:
    with loopback_store(tmp_path, monkeypatch) as server:
        yield server


@contextlib.contextmanager
def tracking_server(home: Path, oss: OssServer) -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    """`python -m deployments.tracking_server` in its own process group, artifacts on OSS; the
    whole group is stopped afterwards, whatever happened. The key id and endpoint come from the
    environment, the secret and STS token from `.env` where the server starts."""
    port = free_port()
    (home / ".env").write_text(f"{IN_DOTENV[0]}={KEY_SECRET}\n{IN_DOTENV[1]}={TOKEN}\n")
    inherited = {
        name: value
        for name, value in os.environ.items()
        if not name.startswith("MLFLOW_") and name not in IN_DOTENV
    }
    env = inherited | {
        "PYTHONPATH": str(PROJECT_ROOT),
        "MLFLOW_BACKEND_STORE_URI": f"sqlite:///{home / 'mlflow.db'}",
        "MLFLOW_HOST": "127.0.0.1",
        "MLFLOW_PORT": str(port),
        "MLFLOW_ARTIFACTS_DESTINATION": ROOT,
        "OSS_ACCESS_KEY_ID": KEY_ID,
        "OSS_ENDPOINT": oss.endpoint,
    }
    url = f"http://127.0.0.1:{port}"
    with (home / "server.log").open("wb") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "deployments.tracking_server", "tracking.server.workers=1"],
            cwd=home,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        deadline = time.monotonic() + SERVER_START_TIMEOUT_S
        while not healthy(url):
            if process.poll() is not None or time.monotonic() > deadline:
                tail = (home / "server.log").read_text(errors="replace")[-4000:]
                pytest.fail(f"the tracking server did not answer {url}/health:\n{tail}")
            time.sleep(0.3)
        yield url, process
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=10)
        deadline = time.monotonic() + 10
        while group_command_lines(process.pid) and time.monotonic() < deadline:
            time.sleep(0.2)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)  # workers that outlived the wrapper


def test_the_tracking_server_keeps_artifacts_and_models_on_oss(
    oss: OssServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from sklearn.linear_model import LinearRegression

    home = tmp_path / "server"
    home.mkdir()
    previous_uri = mlflow.get_tracking_uri()
    with tracking_server(home, oss) as (url, process):
        assert_no_secret("\n".join(group_command_lines(process.pid)))
        # The client has the server's URL and nothing else: no OSS settings at all.
        for name in ("OSS_ACCESS_KEY_ID", "OSS_ACCESS_KEY_SECRET", "OSS_SECURITY_TOKEN"):
            monkeypatch.delenv(name)
        monkeypatch.setenv("MLFLOW_TRACKING_URI", url)
        try:
            mlflow.set_tracking_uri(url)
            note = tmp_path / "hello.txt"
            note.write_bytes(b"served from oss\n")
            x = np.arange(12, dtype=float).reshape(6, 2)
            y = x @ np.array([1.5, -2.0]) + 0.5
            experiment_id = mlflow.create_experiment("oss-artifacts")
            with mlflow.start_run(experiment_id=experiment_id) as run:
                mlflow.log_artifact(str(note), "notes")
                mlflow.log_text("scratch", "scratch/tmp.txt")
                info = mlflow.sklearn.log_model(
                    LinearRegression().fit(x, y), name="model", pip_requirements=["scikit-learn"]
                )
            run_id = run.info.run_id

            loaded = mlflow.sklearn.load_model(info.model_uri)
            np.testing.assert_allclose(loaded.predict(x), y)
            back = tmp_path / "back"
            back.mkdir()
            got = mlflow.artifacts.download_artifacts(
                run_id=run_id, artifact_path="notes/hello.txt", dst_path=str(back)
            )
            assert Path(got).read_bytes() == note.read_bytes()
            listed = {f.path for f in mlflow.MlflowClient().list_artifacts(run_id)}
            assert listed == {"notes", "scratch"}
            run_prefix = f"mlflow/{experiment_id}/{run_id}/artifacts"
            request = urllib.request.Request(
                f"{url}/api/2.0/mlflow-artifacts/artifacts/{run_prefix.removeprefix('mlflow/')}"
                "/scratch",
                method="DELETE",
            )
            with urllib.request.urlopen(request, timeout=10) as response:
                assert response.status == 200
            with pytest.raises(MlflowException):
                mlflow.artifacts.download_artifacts(run_id=run_id, artifact_path="gone.txt")
        finally:
            mlflow.set_tracking_uri(previous_uri)

    stored = keys(oss)
    assert all(key.startswith("mlflow/") for key in stored), stored
    assert f"{run_prefix}/notes/hello.txt" in stored
    assert not any(key.startswith(f"{run_prefix}/scratch") for key in stored)
    model_prefix = f"mlflow/{experiment_id}/models/{info.model_id}/artifacts"
    assert {f"{model_prefix}/MLmodel", f"{model_prefix}/model.skops"} <= set(stored)
    # Nothing on the server's disk but its .env, database and log: no mlartifacts, no mlruns.
    assert sorted(p.name for p in home.rglob("*")) == [".env", "mlflow.db", "server.log"]
    log = (home / "server.log").read_text(errors="replace")
    assert "artifacts oss://bucket/mlflow" in log
    assert '/gone.txt HTTP/1.1" 404' in log  # a missing object is a 404 to clients, not retried
    assert_no_secret(log)
    database = (home / "mlflow.db").read_bytes().decode("latin-1")
    assert_no_secret(database)
