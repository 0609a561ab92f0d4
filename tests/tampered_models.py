"""Model artifacts that run code when loaded the trusting way, for the tests that must refuse them.

Each one leaves a marker file when its payload runs, so a test can show both sides: the artifact
really executes code under a loader that trusts it (the control), and the project's load path
refuses it with the marker never written.
"""

from __future__ import annotations

import pickle
import tempfile
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import mlflow
import yaml


class WritesMarker:
    """An object whose restoration writes a file: what a hostile skops payload would do."""

    def __init__(self, marker: Path) -> None:
        self.marker = str(marker)

    def __getstate__(self) -> dict[str, Any]:
        return {"marker": self.marker}

    def __setstate__(self, state: dict[str, Any]) -> None:
        Path(state["marker"]).write_text("code from the artifact ran\n")
        self.marker = state["marker"]


class _OpensMarker:
    """Pickles to `open(marker, "w")`: unpickling it creates the marker (any call would do)."""

    def __init__(self, marker: Path) -> None:
        self.marker = str(marker)

    def __reduce__(self) -> tuple[Any, tuple[str, str]]:
        return (open, (self.marker, "w"))


def point_at_pickle_loader(model_dir: Path, marker: Path) -> None:
    """Rewrite MLmodel to MLflow's cloudpickle loader and add a python_model.pkl that runs code."""
    (model_dir / "python_model.pkl").write_bytes(pickle.dumps(_OpensMarker(marker)))
    mlmodel = model_dir / "MLmodel"
    meta = yaml.safe_load(mlmodel.read_text())
    conf = meta["flavors"]["python_function"]
    conf["loader_module"] = "mlflow.pyfunc.model"
    conf["python_model"] = "python_model.pkl"
    conf.pop("data", None)
    mlmodel.write_text(yaml.safe_dump(meta))


def replace_pipeline_with_untrusted_type(model_dir: Path, marker: Path) -> None:
    """Replace data/pipeline.skops with a skops file holding a WritesMarker (an untrusted type)."""
    import skops.io

    skops.io.dump({"pipeline": WritesMarker(marker)}, model_dir / "data" / "pipeline.skops")


TAMPERINGS = {
    "pickle_loader": point_at_pickle_loader,
    "untrusted_skops_type": replace_pipeline_with_untrusted_type,
}


@dataclass(frozen=True)
class RegisteredModel:
    """A small price model in the project's format, registered and holding the champion alias."""

    name: str
    uri: str  # models:/NAME@champion
    model_dir: Path  # its files in the store, which a tampering test rewrites in place
    test_uri: str  # runs:/.../test.parquet, raw rows with prices


def register_small_model(
    root: Path, name: str = "housing_price", rows: int = 400
) -> RegisteredModel:
    """Fit torch_lasso on demo rows, log it as `train` does, register it as NAME@champion.

    The tracking store and the artifacts live under `root` (the caller points
    MLFLOW_TRACKING_URI at `root/mlflow.db`); no pipeline runs.
    """
    from mlflow.models import infer_signature

    from steps.common.listing_rows import raw_rows
    from steps.common.model_format import log_price_model
    from steps.ingest.demo_data import generate_listings
    from steps.train.model_factory import build_model
    from steps.train.price_model import input_columns
    from steps.train.train import pip_requirements

    mlflow.set_tracking_uri(f"sqlite:///{root / 'mlflow.db'}")
    experiment = mlflow.create_experiment(
        "tampering", artifact_location=(root / "artifacts").as_uri()
    )
    listings = generate_listings(rows, seed=11)
    train, test = listings.iloc[: rows // 2], listings.iloc[rows // 2 :]
    pipeline = build_model({"name": "torch_lasso", "tfidf_max_features": 20})
    columns = input_columns(pipeline)
    pipeline.fit(raw_rows(train, columns), train["price"].to_numpy(dtype=float))
    with mlflow.start_run(experiment_id=experiment) as run, tempfile.TemporaryDirectory() as work:
        example = raw_rows(test, columns)
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="Hint: Inferred schema contains integer")
            signature = infer_signature(example, pipeline.predict(example))
        info = log_price_model(
            pipeline,
            signature=signature,
            input_example=example.head(5),
            pip_requirements=pip_requirements(),
            work=Path(work),
        )
        test_path = Path(work) / "test.parquet"
        test.to_parquet(test_path)
        mlflow.log_artifact(str(test_path))
    version = mlflow.register_model(info.model_uri, name)
    client = mlflow.MlflowClient()
    client.set_registered_model_alias(name, "champion", version.version)
    location = mlflow.get_logged_model(info.model_id).artifact_location
    return RegisteredModel(
        name=name,
        uri=f"models:/{name}@champion",
        model_dir=Path(location.removeprefix("file://")),
        test_uri=f"runs:/{run.info.run_id}/test.parquet",
    )
