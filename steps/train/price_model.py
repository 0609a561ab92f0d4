"""The MLflow form of a trained price model: raw listing rows in, nightly price out."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
from mlflow.pyfunc import PythonModel
from sklearn.pipeline import Pipeline


class PricePipelineModel(PythonModel):
    """A pyfunc over the fitted scikit-learn pipeline, for models with no MLflow flavor (torch)."""

    def __init__(self, pipeline: Pipeline) -> None:
        self.pipeline = pipeline

    def predict(self, context: Any, model_input: pd.DataFrame, params: Any = None) -> np.ndarray:
        return np.asarray(self.pipeline.predict(model_input), dtype=float)


def input_columns(pipeline: Pipeline) -> list[str]:
    """The raw columns the preprocessing reads: the model's input signature."""
    features = pipeline.named_steps["features"]
    columns: list[str] = []
    for _, _, selected in features.transformers:
        for column in [selected] if isinstance(selected, str) else list(selected):
            if column not in columns:
                columns.append(column)
    return columns
