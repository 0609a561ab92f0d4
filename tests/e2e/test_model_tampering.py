"""A registered model whose artifact was rewritten to run code on load is refused by the project.

The store holds one small torch_lasso model in the project's format, registered as
housing_price@champion (built directly, no pipeline run). Each test rewrites the registered
version's files in place, as someone with write access to the artifact store could, and shows
that `evaluate` (its entry point, in-process) and `promote` (its `score`, which loads both the
candidate and the champion) refuse it with exit code 5 / UnsafeModelError and a message naming
the problem, while the payload's marker file never appears. A control first shows each tampered
artifact really runs its payload when loaded the trusting way. `make serve` and
`mlflow models serve` are attacked in tests/services/test_model_serving.py.
"""

from __future__ import annotations

import contextlib
import shutil
from collections.abc import Iterator
from pathlib import Path

import mlflow
import pandas as pd
import pytest
import skops.io

from steps.common.entrypoint import run_entry_point
from steps.common.model_format import DATA_PATH, UnsafeModelError, load_price_model
from steps.common.params_cli import with_params
from steps.evaluate import evaluate
from steps.evaluate.schema import EvaluateParams
from steps.registry.promote import score
from tests.e2e.conftest import isolate
from tests.tampered_models import TAMPERINGS, RegisteredModel, register_small_model


@pytest.fixture(scope="module")
def registered(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RegisteredModel]:
    previous = mlflow.get_tracking_uri()
    root = tmp_path_factory.mktemp("tampering")
    model = register_small_model(root)
    shutil.copytree(model.model_dir, root / "pristine")
    yield model
    mlflow.set_tracking_uri(previous)


@pytest.fixture
def model(
    registered: RegisteredModel, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> RegisteredModel:
    """The registered model with its pristine files back, the store as the process's."""
    pristine = registered.model_dir.parents[3] / "pristine"
    shutil.rmtree(registered.model_dir)
    shutil.copytree(pristine, registered.model_dir)
    root = registered.model_dir.parents[3]
    isolate(monkeypatch, tmp_path)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{root / 'mlflow.db'}")
    mlflow.set_tracking_uri(f"sqlite:///{root / 'mlflow.db'}")
    return registered


def _test_rows(model: RegisteredModel, into: Path) -> pd.DataFrame:
    return pd.read_parquet(mlflow.artifacts.download_artifacts(model.test_uri, dst_path=str(into)))


def test_the_untampered_champion_loads_and_is_scored(
    model: RegisteredModel, tmp_path: Path
) -> None:
    test = _test_rows(model, tmp_path)
    loaded = load_price_model(model.uri)
    rows = test.drop(columns="price")
    assert list(loaded.predict(rows)) == list(loaded.predict(rows))
    scores = score(model.uri, test)
    assert 0 < scores["test_mae"] < 1000


def _control(tampering: str, model_dir: Path) -> None:
    """Load the tampered model the trusting way: the payload runs (the marker appears)."""
    if tampering == "pickle_loader":
        # The payload runs while unpickling; what it returns is no model, so loading then fails.
        with contextlib.suppress(Exception):
            mlflow.pyfunc.load_model(str(model_dir))
    else:
        path = model_dir / DATA_PATH
        skops.io.load(path, trusted=skops.io.get_untrusted_types(file=path))


@pytest.mark.parametrize("tampering", sorted(TAMPERINGS))
def test_a_tampered_champion_is_refused_and_runs_nothing(
    model: RegisteredModel,
    tmp_path: Path,
    tampering: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    marker = tmp_path / "payload-ran"
    TAMPERINGS[tampering](model.model_dir, marker)
    control = tmp_path / "control"
    shutil.copytree(model.model_dir, control)
    _control(tampering, control)
    assert marker.exists(), "the tampered artifact should run its payload when trusted"
    marker.unlink()

    test = _test_rows(model, tmp_path)
    with pytest.raises(UnsafeModelError) as refused:
        score(model.uri, test)  # promote: candidate and champion are both loaded so
    message = str(refused.value)
    assert f"model {model.uri} is refused before loading" in message
    assert "retrain it (make run)" in message and "rollback --to-version" in message
    with pytest.raises(UnsafeModelError):
        load_price_model(f"models:/{model.name}/1")
    with pytest.raises(SystemExit) as exited:
        run_entry_point(
            evaluate.build_parser(),
            with_params(EvaluateParams, evaluate.main),
            ["--model", model.uri, "--test_data", model.test_uri],
        )
    assert exited.value.code == 5
    assert f"model {model.uri} is refused before loading" in caplog.text
    assert not marker.exists()
