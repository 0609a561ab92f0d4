"""Entry point `train`: fit the configured model on the train split and log it (`model`).

The logged model is the whole pipeline (preprocessing + regressor), so it takes raw listing rows:
what `evaluate` scores is exactly what the registry serves. Every model is logged in the project's
one format (steps/common/model_format.py): a skops file of plain data and the project's own
loader, no pickle and no code in the artifact. Beside it, `reference_profile.json` describes the
training rows' model inputs (steps/score/profile.py), the reference that scoring measures drift
against.
"""

from __future__ import annotations

import argparse
import logging
import time
import warnings

import mlflow
from mlflow.models import infer_signature

from steps.common.entrypoint import run_entry_point
from steps.common.listing_columns import TARGET
from steps.common.listing_rows import raw_rows
from steps.common.metrics import regression_metrics
from steps.common.model_format import log_price_model
from steps.common.outputs import publish_output
from steps.common.params_cli import params_parser, with_params
from steps.common.tables import read_table
from steps.common.tracking import download_input, scratch_dir, step_run
from steps.common.wandb_mirror import WandbMirror
from steps.score.profile import PROFILE_FILE, build_profile
from steps.train.model_factory import build_model
from steps.train.price_model import input_columns
from steps.train.schema import TrainParams
from steps.train.staged_fit import fit_price_model, report_stages

logger = logging.getLogger(__name__)


def build_parser() -> argparse.ArgumentParser:
    return params_parser(TrainParams, "train", __doc__)


# What a served model imports besides this project (whose installed code loads it), pinned to the
# versions it was trained with. Declaring them spares MLflow's requirement inference (a
# subprocess that re-imports the model: ~4 s a step).
MODEL_RUNTIME_PACKAGES = (
    "mlflow",
    "numpy",
    "pandas",
    "pyarrow",
    "scikit-learn",
    "scipy",
    "skops",
    "torch",
)


def pip_requirements() -> list[str]:
    from importlib.metadata import version

    return [f"{name}=={version(name).split('+')[0]}" for name in MODEL_RUNTIME_PACKAGES]


def main(params: TrainParams) -> None:
    config = params.model.model_dump()
    model = build_model(params.model)
    with step_run() as run, scratch_dir() as work:
        train = read_table(download_input(params.train_data, work))
        val = read_table(download_input(params.val_data, work))
        columns = input_columns(model)
        val_rows = raw_rows(val, columns)
        started = time.perf_counter()
        staged = fit_price_model(
            model,
            params.model,
            raw_rows(train, columns),
            train[TARGET].to_numpy(dtype=float),
            val_rows,
            val[TARGET].to_numpy(dtype=float),
            params.trial,
        )
        fit_seconds = time.perf_counter() - started
        report_stages(staged)
        val_predictions = model.predict(val_rows)
        metrics = regression_metrics(val[TARGET], val_predictions, "val")
        metrics |= {"fit_seconds": fit_seconds, "rows_train": float(len(train))}
        mlflow.log_params({f"model.{key}": value for key, value in config.items()})
        mlflow.log_metrics(metrics)

        # Inferred from the whole validation split, so columns that can be empty are optional.
        # Counts are integers on purpose (raw files and JSON requests carry them so): MLflow's
        # hint about integer columns does not apply.
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="Hint: Inferred schema contains integer")
            signature = infer_signature(val_rows, val_predictions)
        example = val_rows.head(5)
        info = log_price_model(
            model,
            signature=signature,
            input_example=example,
            pip_requirements=pip_requirements(),
            work=work,
        )
        publish_output("model", info.model_uri)
        # What the model's inputs looked like in training: scoring measures drift against it.
        mlflow.log_dict(build_profile(train, columns).to_dict(), PROFILE_FILE)
        logger.info("trained %s in %.1f s: %s", config["name"], fit_seconds, metrics)
        with WandbMirror("train", config, run.info.run_id) as mirror:
            mirror.log_metrics(metrics)


if __name__ == "__main__":
    run_entry_point(build_parser(), with_params(TrainParams, main))
