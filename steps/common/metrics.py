"""Regression scores, computed one way for validation (train) and test (evaluate)."""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike
from sklearn.metrics import mean_absolute_error, mean_squared_error, r2_score


def regression_metrics(y_true: ArrayLike, y_pred: ArrayLike, prefix: str) -> dict[str, float]:
    truth = np.asarray(y_true, dtype=float)
    predicted = np.asarray(y_pred, dtype=float)
    return {
        f"{prefix}_mae": float(mean_absolute_error(truth, predicted)),
        f"{prefix}_rmse": float(np.sqrt(mean_squared_error(truth, predicted))),
        f"{prefix}_r2": float(r2_score(truth, predicted)),
    }
