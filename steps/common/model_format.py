"""The one on-disk format of a price model, and the only way the project loads one.

Why: an MLflow model is a directory anyone with write access to the artifact store can rewrite.
MLflow's own loaders trust that directory: the cloudpickle pyfunc unpickles `python_model.pkl`,
`code_paths` put the artifact's Python files first on `sys.path`, the sklearn flavor reads its
skops trusted-type list from the artifact's `MLmodel`, and "models from code" run a Python file
copied into the artifact. So every price model (torch_lasso, random_forest,
hist_gradient_boosting) is saved the same way, with nothing in it that runs:

    MLmodel                 flavor python_function, loader_module = this module, no code paths
    data/pipeline.skops     the fitted scikit-learn pipeline in skops' format (JSON + .npy
                            arrays, read with allow_pickle=False): no pickle anywhere
    requirements.txt, conda.yaml, python_env.yaml, input_example.json, serving_input_example.json

Loading runs only code installed with the project: MLflow imports `loader_module` (this module,
from site-packages, as the artifact carries no code), and `_load_pyfunc` reads the skops file
trusting only the types in TRUSTED_TYPES, a list kept here, never read from the artifact.
`load_price_model` (evaluate, promote, `make serve`) first downloads the model and checks its
`MLmodel` with a YAML parser (`verify_model_dir`) before MLflow imports anything the file names:
a model that names another loader, carries code or a pickle-based configuration is refused.
See docs/model-format.md.
"""

from __future__ import annotations

import logging
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import yaml

from steps.common.errors import PreconditionError

logger = logging.getLogger(__name__)

LOADER_MODULE = "steps.common.model_format"
PIPELINE_FILE = "pipeline.skops"
# Where MLflow's save_model(data_path=...) puts the file, relative to the model directory.
DATA_PATH = f"data/{PIPELINE_FILE}"
FORMAT_KEY = "price_model_format"
FORMAT = "skops-pipeline/1"

# The types (and functions) a price pipeline is made of beyond what skops trusts by default
# (scikit-learn's estimators, numpy ufuncs, builtins). A skops file naming anything else is
# refused unread. Training checks its model against this list, so a new transformer fails at
# `train` with its name (add it here after review), never at load time.
TRUSTED_TYPES: tuple[str, ...] = (
    "numpy.dtype",
    "sklearn.ensemble._hist_gradient_boosting.predictor.TreePredictor",
    "sklearn.tree._tree.Tree",
    "steps.train.features.DaysSinceTransformer",
    "steps.train.features.DenseFeatures",
    "steps.train.features.geo_feature_names",
    "steps.train.features.geo_features",
    "steps.train.features.name_feature_names",
    "steps.train.features.name_features",
    "steps.train.features.to_category_strings",
    "steps.train.features.to_float",
    "steps.train.features.to_log1p_float",
    "steps.train.features.to_text",
    "steps.train.torch_lasso.TorchLasso",
)

# Keys MLflow itself writes in the python_function flavor of a loader-module model; any other
# (python_model, model_code_path, model_config, predict_fn, artifacts...) changes what MLflow
# runs on load, so it is refused, and so is a `code` path (put first on sys.path) or streaming.
_PYFUNC_KEYS = frozenset({"loader_module", "data", "env", "python_version", "code", "streamable"})
_PYFUNC_FIXED: dict[str, object] = {"code": None, "streamable": False}


class UnsafeModelError(PreconditionError):
    """A model directory is not in the project's format: loading it could run foreign code."""


def _untrusted(data: bytes) -> list[str]:
    import skops.io

    return sorted(
        name for name in skops.io.get_untrusted_types(data=data) if name not in TRUSTED_TYPES
    )


def untrusted_types(pipeline: Any) -> list[str]:
    """The types in `pipeline` that TRUSTED_TYPES does not list (empty: it can be saved)."""
    import skops.io

    return _untrusted(skops.io.dumps(pipeline))


def write_pipeline(pipeline: Any, directory: Path) -> Path:
    """Write the fitted pipeline as `directory/pipeline.skops`, refusing types not trusted."""
    import skops.io

    data = skops.io.dumps(pipeline)
    foreign = _untrusted(data)
    if foreign:
        raise UnsafeModelError(
            f"the model holds types the project does not trust to load: {foreign}; "
            f"review them and add them to TRUSTED_TYPES in {__name__}"
        )
    path = directory / PIPELINE_FILE
    path.write_bytes(data)
    return path


def log_price_model(
    pipeline: Any,
    *,
    signature: Any,
    input_example: pd.DataFrame,
    pip_requirements: list[str],
    work: Path,
) -> Any:
    """Log `pipeline` to the active run as MLflow model `model` in this format; its ModelInfo."""
    import mlflow

    return mlflow.pyfunc.log_model(
        name="model",
        loader_module=LOADER_MODULE,
        data_path=str(write_pipeline(pipeline, work)),
        signature=signature,
        input_example=input_example,
        pip_requirements=pip_requirements,
        metadata={FORMAT_KEY: FORMAT},
    )


class PricePipeline:
    """What MLflow's pyfunc wrapper calls: raw listing rows in, one price per row out."""

    def __init__(self, pipeline: Any) -> None:
        self.pipeline = pipeline

    def predict(self, model_input: pd.DataFrame, params: dict[str, Any] | None = None) -> Any:
        return np.asarray(self.pipeline.predict(model_input), dtype=float)


def check_pipeline_types(path: Path, label: str | None = None) -> None:
    """Refuse a skops file naming a type outside TRUSTED_TYPES; reads its schema, builds nothing."""
    import skops.io

    label = label or str(path)
    try:
        found = skops.io.get_untrusted_types(file=path)
    except Exception as error:  # not a zip, no schema, a schema skops cannot read
        raise _refuse(label, f"{PIPELINE_FILE} is not a readable skops file ({error})") from error
    foreign = [name for name in found if name not in TRUSTED_TYPES]
    if foreign:
        raise _refuse(
            label,
            f"{PIPELINE_FILE} names types the project does not trust: {foreign} (it was not "
            "written by this project's `train`, or was altered since)",
        )


def read_pipeline(path: Path) -> Any:
    """Load a skops file trusting only TRUSTED_TYPES (and skops' defaults)."""
    import skops.io

    check_pipeline_types(path)
    return skops.io.load(path, trusted=list(TRUSTED_TYPES))


def _load_pyfunc(data_path: str) -> PricePipeline:
    """MLflow's loader-module hook (mlflow models serve, mlflow.pyfunc.load_model)."""
    return PricePipeline(read_pipeline(Path(data_path)))


# What to do about a refused model, for every refusal: a model of an older format (cloudpickle
# pyfunc, sklearn flavor) is refused like a tampered one, and a refused champion blocks promote.
_FIX = (
    "retrain it (make run) and promote the new version; if it is the champion, first point "
    "the alias at a version in this format (python -m flows.promotion rollback --to-version N)"
)


def _refuse(label: str, problem: str) -> UnsafeModelError:
    return UnsafeModelError(
        f"model {label} is refused before loading: {problem}. Only models logged by this "
        f"project's `train` (python_function flavor, loader_module {LOADER_MODULE}, "
        f"{DATA_PATH}, no code, no pickle) are loaded; {_FIX}"
    )


def verify_model_dir(model_dir: Path, label: str | None = None) -> None:
    """Check a downloaded model names the project's loader, nothing that runs, only trusted types.

    Reads the MLmodel with a YAML parser and the skops file's type list; constructs nothing.
    `label` (the model URI) names the model in the error.
    """
    label = label or str(model_dir)
    mlmodel = model_dir / "MLmodel"
    if not mlmodel.is_file():
        raise _refuse(label, "it has no MLmodel file")
    try:
        meta = yaml.safe_load(mlmodel.read_text(encoding="utf-8"))
    except (yaml.YAMLError, UnicodeDecodeError) as error:
        raise _refuse(label, f"its MLmodel is not valid YAML ({error})") from error
    if not isinstance(meta, dict):
        raise _refuse(label, "its MLmodel is not a mapping")
    flavors = meta.get("flavors")
    if not isinstance(flavors, dict) or set(flavors) != {"python_function"}:
        names = sorted(flavors) if isinstance(flavors, dict) else flavors
        raise _refuse(label, f"its flavors are {names!r}, expected only python_function")
    conf = flavors["python_function"]
    if not isinstance(conf, dict):
        raise _refuse(label, "its python_function flavor is not a mapping")
    if conf.get("loader_module") != LOADER_MODULE:
        raise _refuse(label, f"it names loader_module {conf.get('loader_module')!r}")
    extra = sorted(set(conf) - _PYFUNC_KEYS)
    if extra:
        raise _refuse(label, f"its python_function flavor carries {extra}")
    for key, expected in _PYFUNC_FIXED.items():
        if conf.get(key, expected) != expected:
            raise _refuse(label, f"its python_function {key} is {conf[key]!r}, not {expected!r}")
    if conf.get("data") != DATA_PATH:
        raise _refuse(label, f"its data path is {conf.get('data')!r}, not {DATA_PATH!r}")
    metadata = meta.get("metadata")
    if not isinstance(metadata, dict) or metadata.get(FORMAT_KEY) != FORMAT:
        raise _refuse(label, f"its metadata does not declare {FORMAT_KEY}: {FORMAT}")
    data = model_dir / DATA_PATH
    inside = data.resolve().is_relative_to(model_dir.resolve())
    if data.is_symlink() or not data.is_file() or not inside:
        raise _refuse(label, f"{DATA_PATH} is not a plain file")
    check_pipeline_types(data, label)


@contextmanager
def downloaded_model(model_uri: str) -> Iterator[Path]:
    """A private local copy of the model, verified; removed when the block ends."""
    import mlflow

    with tempfile.TemporaryDirectory(prefix="model-") as directory:
        try:
            local = mlflow.artifacts.download_artifacts(artifact_uri=model_uri, dst_path=directory)
        except Exception as error:
            raise PreconditionError(f"model {model_uri!r} cannot be downloaded: {error}") from error
        model_dir = Path(local)
        verify_model_dir(model_dir, model_uri)
        yield model_dir


def load_price_model(model_uri: str) -> Any:
    """The model at `model_uri` as an MLflow PyFuncModel, loaded only if it passes the checks.

    MLflow reads the verified local copy, so what it loads is what was checked; its signature
    is enforced on predict exactly as the model server enforces it.
    """
    import mlflow

    with downloaded_model(model_uri) as model_dir:
        try:
            return mlflow.pyfunc.load_model(str(model_dir))
        except UnsafeModelError:
            raise
        except Exception as error:
            raise PreconditionError(f"model {model_uri!r} cannot be loaded: {error}") from error
