"""`make serve` serves only a model that passes the project's checks; `mlflow models serve` of a
model in the project's format refuses a skops payload of an untrusted type.

One small torch_lasso model in the project's format is registered as housing_price@champion in a
temporary store (no pipeline run). The tests start real servers on loopback ports, so they live
in the services tier. What cannot be prevented is shown too: raw `mlflow models serve` runs the
loader that the model's own MLmodel names, so a rewritten MLmodel pointing at MLflow's cloudpickle
loader is only refused on the supported path, `make serve` (see docs/model-format.md).
"""

from __future__ import annotations

import json
import shutil
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import mlflow
import pandas as pd
import pytest

from steps.common.model_format import load_price_model
from tests.loopback import free_port
from tests.services.conftest import PROJECT_ROOT, Process, base_env, start_process
from tests.tampered_models import TAMPERINGS, RegisteredModel, register_small_model

START_TIMEOUT_S = 180.0


@pytest.fixture(scope="module")
def registered(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RegisteredModel]:
    previous = mlflow.get_tracking_uri()
    root = tmp_path_factory.mktemp("serving")
    model = register_small_model(root)
    shutil.copytree(model.model_dir, root / "pristine")
    yield model
    mlflow.set_tracking_uri(previous)


@pytest.fixture
def model(registered: RegisteredModel) -> RegisteredModel:
    """The registered model with its pristine files back."""
    shutil.rmtree(registered.model_dir)
    shutil.copytree(registered.model_dir.parents[3] / "pristine", registered.model_dir)
    return registered


def _env(model: RegisteredModel, home: Path) -> dict[str, str]:
    store = model.model_dir.parents[3] / "mlflow.db"
    return base_env(home) | {"MLFLOW_TRACKING_URI": f"sqlite:///{store}"}


def _make_serve(port: int) -> list[str]:
    # -o: never reinstall from a test; the recipe that runs is serve's own.
    return [
        "make",
        "-s",
        "-C",
        str(PROJECT_ROOT),
        "-o",
        ".venv/.install-run.stamp",
        "serve",
        "MODEL=housing_price",
        f"PORT={port}",
    ]


def _mlflow_serve(uri: str, port: int) -> list[str]:
    mlflow_cli = str(Path(sys.executable).with_name("mlflow"))
    return [
        mlflow_cli,
        "models",
        "serve",
        "-m",
        uri,
        "--env-manager",
        "local",
        "-h",
        "127.0.0.1",
        "-p",
        str(port),
    ]


def _answers(port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/ping", timeout=2) as response:
            return bool(response.status == 200)
    except OSError:
        return False


def _wait_for_exit_or_answer(server: Process, port: int) -> bool:
    """True once the server answers /ping; False once it has exited without answering."""
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        if _answers(port):
            return True
        if server.popen.poll() is not None:
            return False
        time.sleep(1)
    raise AssertionError(f"{server.name}: neither answered nor exited\n{server.log_tail()}")


def _predict(port: int, rows: pd.DataFrame) -> list[float]:
    records = json.loads(rows.to_json(orient="records", date_format="iso"))
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}/invocations",
        data=json.dumps({"dataframe_records": records}).encode(),
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=60) as response:
        return [float(p) for p in json.loads(response.read())["predictions"]]


def test_make_serve_serves_the_verified_champion(model: RegisteredModel, tmp_path: Path) -> None:
    port = free_port()
    server = start_process(
        "make-serve", _make_serve(port), _env(model, tmp_path), tmp_path, tmp_path
    )
    try:
        assert _wait_for_exit_or_answer(server, port), server.log_tail()
        mlflow.set_tracking_uri(_env(model, tmp_path)["MLFLOW_TRACKING_URI"])
        test = pd.read_parquet(
            mlflow.artifacts.download_artifacts(model.test_uri, dst_path=str(tmp_path))
        )
        rows = test.drop(columns="price").head(5)
        expected = [float(p) for p in load_price_model(model.uri).predict(rows)]
        assert _predict(port, rows) == pytest.approx(expected)
    finally:
        server.stop()


@pytest.mark.parametrize("tampering", sorted(TAMPERINGS))
def test_make_serve_refuses_a_tampered_champion_before_any_server_starts(
    model: RegisteredModel, tmp_path: Path, tampering: str
) -> None:
    marker = tmp_path / "payload-ran"
    TAMPERINGS[tampering](model.model_dir, marker)
    port = free_port()
    server = start_process(
        "make-serve", _make_serve(port), _env(model, tmp_path), tmp_path, tmp_path
    )
    try:
        assert not _wait_for_exit_or_answer(server, port), "a tampered model was served"
        log = server.log_tail()
        assert server.popen.returncode != 0
        assert "model models:/housing_price@champion is refused before loading" in log, log
        assert "retrain it (make run)" in log, log
        # Refused before `mlflow models serve` started: no server ever ran.
        assert "verified; serving it" not in log and "Uvicorn running" not in log, log
    finally:
        server.stop()
    assert not marker.exists()


def test_mlflow_models_serve_refuses_an_untrusted_skops_type(
    model: RegisteredModel, tmp_path: Path
) -> None:
    marker = tmp_path / "payload-ran"
    TAMPERINGS["untrusted_skops_type"](model.model_dir, marker)
    port = free_port()
    server = start_process(
        "mlflow-serve", _mlflow_serve(model.uri, port), _env(model, tmp_path), tmp_path, tmp_path
    )
    try:
        answered = _wait_for_exit_or_answer(server, port)
        log = server.log_tail(20000)
        assert not answered, f"the model server answered with an untrusted model loaded\n{log}"
        assert "does not trust" in log, log
    finally:
        server.stop()
    assert not marker.exists()
