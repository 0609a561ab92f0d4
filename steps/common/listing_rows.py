"""Listing rows in the form a client sends them to a served model."""

from __future__ import annotations

from collections.abc import Sequence

import pandas as pd

from steps.common.listing_columns import LISTING_COLUMNS, TARGET


def raw_rows(frame: pd.DataFrame, columns: Sequence[str] | None = None) -> pd.DataFrame:
    """Rows as a client sends them: dates as 'YYYY-MM-DD' text, missing values as None."""
    if columns is None:
        columns = [c for c in LISTING_COLUMNS if c != TARGET and c in frame]
    rows = frame[list(columns)].copy()
    if "last_review" in rows and pd.api.types.is_datetime64_any_dtype(rows["last_review"]):
        rows["last_review"] = rows["last_review"].dt.strftime("%Y-%m-%d")
    return rows.astype(object).where(rows.notna(), None)
