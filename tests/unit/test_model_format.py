"""The project's model format: what the verifier refuses before MLflow reads a model directory.

Each case is a change an attacker with write access to the artifact store could make to a model
this project logged; each must be refused with a message naming the problem and the fix, and
nothing from the artifact may run (the marker file of tests/tampered_models.py never appears).
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import skops.io
import yaml

from steps.common.model_format import (
    DATA_PATH,
    FORMAT,
    FORMAT_KEY,
    LOADER_MODULE,
    TRUSTED_TYPES,
    UnsafeModelError,
    read_pipeline,
    verify_model_dir,
    write_pipeline,
)
from steps.train.torch_lasso import TorchLasso
from tests.tampered_models import TAMPERINGS, WritesMarker


def _mlmodel() -> dict[str, Any]:
    """The MLmodel MLflow 3 writes for a model of this format (the keys verify reads)."""
    return {
        "flavors": {
            "python_function": {
                "code": None,
                "data": DATA_PATH,
                "env": {"conda": "conda.yaml", "virtualenv": "python_env.yaml"},
                "loader_module": LOADER_MODULE,
                "python_version": "3.11.7",
                "streamable": False,
            }
        },
        "metadata": {FORMAT_KEY: FORMAT},
        "mlflow_version": "3.17.2",
    }


_X = np.random.default_rng(0).normal(size=(30, 2))


@functools.cache
def _fitted() -> TorchLasso:
    return TorchLasso(alpha=0.01).fit(_X, _X @ np.array([1.0, -2.0]))


def _model_dir(root: Path, meta: dict[str, Any] | None = None) -> Path:
    model = root / "model"
    (model / "data").mkdir(parents=True)
    write_pipeline(_fitted(), model / "data")
    (model / "MLmodel").write_text(yaml.safe_dump(meta or _mlmodel()))
    return model


def _pyfunc(meta: dict[str, Any]) -> dict[str, Any]:
    conf: dict[str, Any] = meta["flavors"]["python_function"]
    return conf


def test_a_model_in_the_format_passes_and_loads(tmp_path: Path) -> None:
    model = _model_dir(tmp_path)
    verify_model_dir(model)
    restored = read_pipeline(model / DATA_PATH)
    assert isinstance(restored, TorchLasso)
    np.testing.assert_array_equal(restored.predict(_X), _fitted().predict(_X))


def _other_loader(meta: dict[str, Any]) -> None:
    _pyfunc(meta)["loader_module"] = "mlflow.pyfunc.model"


def _cloudpickle_model(meta: dict[str, Any]) -> None:
    _pyfunc(meta)["python_model"] = "python_model.pkl"


def _code_path(meta: dict[str, Any]) -> None:
    _pyfunc(meta)["code"] = "code"


def _model_config(meta: dict[str, Any]) -> None:
    _pyfunc(meta)["model_config"] = {"x": 1}


def _sklearn_flavor(meta: dict[str, Any]) -> None:
    meta["flavors"]["sklearn"] = {"pickled_model": "model.pkl", "serialization_format": "pickle"}


def _data_elsewhere(meta: dict[str, Any]) -> None:
    _pyfunc(meta)["data"] = "../../elsewhere/pipeline.skops"


def _no_format(meta: dict[str, Any]) -> None:
    del meta["metadata"]


def _models_from_code(meta: dict[str, Any]) -> None:
    _pyfunc(meta)["model_code_path"] = "model.py"


@pytest.mark.parametrize(
    ("edit", "named"),
    [
        (_other_loader, "loader_module 'mlflow.pyfunc.model'"),
        (_cloudpickle_model, "python_model"),
        (_code_path, "code is 'code'"),
        (_model_config, "model_config"),
        (_sklearn_flavor, "expected only python_function"),
        (_data_elsewhere, "data path"),
        (_no_format, FORMAT_KEY),
        (_models_from_code, "model_code_path"),
    ],
)
def test_a_tampered_mlmodel_is_refused_naming_what_and_the_fix(
    tmp_path: Path, edit: Callable[[dict[str, Any]], None], named: str
) -> None:
    meta = _mlmodel()
    edit(meta)
    model = _model_dir(tmp_path, meta)
    with pytest.raises(UnsafeModelError) as refused:
        verify_model_dir(model)
    assert named in str(refused.value)
    assert "retrain it (make run)" in str(refused.value)


def test_a_symlinked_or_missing_data_file_and_bad_yaml_are_refused(tmp_path: Path) -> None:
    model = _model_dir(tmp_path)
    data = model / DATA_PATH
    data.rename(tmp_path / "outside.skops")
    with pytest.raises(UnsafeModelError, match="not a plain file"):
        verify_model_dir(model)
    data.symlink_to(tmp_path / "outside.skops")
    with pytest.raises(UnsafeModelError, match="not a plain file"):
        verify_model_dir(model)
    data.unlink()
    outside = tmp_path / "outside"
    outside.mkdir()
    (tmp_path / "outside.skops").rename(outside / "pipeline.skops")
    (model / "data").rmdir()
    (model / "data").symlink_to(outside)  # the file is plain, the folder leads elsewhere
    with pytest.raises(UnsafeModelError, match="not a plain file"):
        verify_model_dir(model)
    (model / "MLmodel").write_text("flavors: [unclosed\n")
    with pytest.raises(UnsafeModelError, match="not valid YAML"):
        verify_model_dir(model)
    (model / "MLmodel").unlink()
    with pytest.raises(UnsafeModelError, match="no MLmodel"):
        verify_model_dir(model)


@pytest.mark.parametrize("tampering", sorted(TAMPERINGS))
def test_the_test_tamperings_are_refused_by_the_verifier_or_the_loader(
    tmp_path: Path, tampering: str
) -> None:
    model = _model_dir(tmp_path)
    marker = tmp_path / "marker"
    TAMPERINGS[tampering](model, marker)
    with pytest.raises(UnsafeModelError):
        verify_model_dir(model)
        read_pipeline(model / DATA_PATH)
    assert not marker.exists()


def test_an_untrusted_skops_type_is_refused_unread_though_it_would_run(tmp_path: Path) -> None:
    marker = tmp_path / "marker"
    path = tmp_path / "pipeline.skops"
    skops.io.dump({"pipeline": WritesMarker(marker)}, path)
    with pytest.raises(UnsafeModelError, match=r"tests\.tampered_models\.WritesMarker"):
        read_pipeline(path)
    assert not marker.exists()
    # Control: trusting what the file itself lists (as the sklearn flavor trusted its MLmodel)
    # really runs the payload.
    skops.io.load(path, trusted=skops.io.get_untrusted_types(file=path))
    assert marker.exists()


def test_saving_refuses_a_type_the_project_does_not_trust(tmp_path: Path) -> None:
    with pytest.raises(UnsafeModelError, match="add them to TRUSTED_TYPES"):
        write_pipeline({"x": WritesMarker(tmp_path / "m")}, tmp_path)
    assert not (tmp_path / "pipeline.skops").exists()
    assert all(name.startswith(("numpy.", "sklearn.", "steps.")) for name in TRUSTED_TYPES)
