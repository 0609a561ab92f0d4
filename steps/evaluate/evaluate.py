"""Entry point `evaluate`: score the logged model on the held-out test split, as served."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd

from steps.common.entrypoint import run_entry_point
from steps.common.listing_columns import TARGET
from steps.common.listing_rows import predict_rows
from steps.common.metrics import regression_metrics
from steps.common.model_format import load_price_model
from steps.common.params_cli import params_parser, with_params
from steps.common.tables import read_table
from steps.common.tracking import download_input, log_to_parent, scratch_dir, step_run
from steps.common.wandb_mirror import WandbMirror
from steps.contract import EVALUATION_PLOT_FILE
from steps.evaluate.schema import EvaluateParams

logger = logging.getLogger(__name__)


def build_parser() -> argparse.ArgumentParser:
    return params_parser(EvaluateParams, "evaluate", __doc__)


def plot_predictions(truth: np.ndarray, predicted: np.ndarray, path: Path) -> Path:
    """Predicted against actual price: the picture a reviewer checks before the numbers."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(figsize=(5, 5))
    axes.scatter(truth, predicted, s=4, alpha=0.3)
    upper = float(max(truth.max(), predicted.max()))
    axes.plot([0, upper], [0, upper], color="black", linewidth=1)
    axes.set_xlabel("actual price")
    axes.set_ylabel("predicted price")
    axes.set_title("Test split: predicted vs actual")
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)
    return path


def main(params: EvaluateParams) -> None:
    with step_run() as run, scratch_dir() as work:
        test = read_table(download_input(params.test_data, work))
        # Verified before MLflow reads it: no pickle, no code from the artifact.
        model = load_price_model(params.model)
        truth = test[TARGET].to_numpy(dtype=float)
        schema = model.metadata.get_input_schema()
        columns = schema.input_names() if schema is not None else None
        predicted = predict_rows(model, test, columns)
        metrics = regression_metrics(truth, predicted, "test")
        mlflow.log_metrics(metrics)
        log_to_parent(metrics)
        mlflow.log_metric("rows_test", len(test))
        mlflow.set_tags({"model_uri": params.model, "test_data": params.test_data})
        plot = plot_predictions(truth, predicted, work / EVALUATION_PLOT_FILE)
        mlflow.log_artifact(str(plot))
        residuals = pd.Series(predicted - truth).describe().to_dict()
        logger.info("test metrics %s; residuals %s", metrics, residuals)
        with WandbMirror("evaluate", params.model_dump(), run.info.run_id) as mirror:
            mirror.use_input("model", params.model, "model")
            mirror.log_metrics(metrics)
            mirror.log_artifact(plot, "predicted_vs_actual", "plot")


if __name__ == "__main__":
    run_entry_point(build_parser(), with_params(EvaluateParams, main))
