"""Listing rows in the form a client sends them to a served model."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

from steps.common.listing_columns import COUNT_COLUMNS, LISTING_COLUMNS, TARGET


def raw_rows(frame: pd.DataFrame, columns: Sequence[str] | None = None) -> pd.DataFrame:
    """Rows as a listings file or a JSON request carries them.

    Dates are 'YYYY-MM-DD' text, whole-number counts are integers, text is Python strings with
    None for missing. Training, evaluation and the model signature all see this one form, so the
    served model accepts exactly what a client sends.
    """
    if columns is None:
        columns = [c for c in LISTING_COLUMNS if c != TARGET and c in frame]
    rows = frame[list(columns)].copy()
    for column in rows.columns:
        values = rows[column]
        if column == "last_review" and pd.api.types.is_datetime64_any_dtype(values):
            values = values.dt.strftime("%Y-%m-%d")
        if column in COUNT_COLUMNS and pd.api.types.is_numeric_dtype(values):
            if values.notna().all():
                rows[column] = values.astype("int64")
            continue
        if not pd.api.types.is_numeric_dtype(values):
            rows[column] = values.astype(object).where(values.notna(), None)
    return rows


# Rows predicted at a time: a model's features for this many rows are a few tens of MiB.
PREDICT_BATCH_ROWS = 1 << 16


def predict_rows(
    model: Any,
    frame: pd.DataFrame,
    columns: Sequence[str] | None = None,
    batch_rows: int = PREDICT_BATCH_ROWS,
) -> np.ndarray:
    """`model.predict(raw_rows(frame, columns))` as float64, a batch of rows at a time: every
    feature is a function of its own row, so the predictions are the same, and the features of
    only one batch are ever held."""
    parts = [
        np.asarray(
            model.predict(raw_rows(frame.iloc[start : start + batch_rows], columns)), dtype=float
        ).ravel()
        for start in range(0, len(frame), batch_rows)
    ]
    return np.concatenate(parts) if parts else np.empty(0)
