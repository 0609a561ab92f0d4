"""Drop the rows no price model should learn from, and give last_review its real type.

Rules, applied in this order so each row is counted once, under the first rule it breaks:
price outside [min_price, max_price] (missing prices too), coordinates outside the NYC box
(missing coordinates too), then repeated ids (the first remaining occurrence is kept, so a valid
copy survives when an earlier copy was dropped for its price or position).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import pandas as pd

from steps.common.bounds import CleaningBounds
from steps.common.errors import DataValidationError

logger = logging.getLogger(__name__)

REQUIRED_COLUMNS: tuple[str, ...] = ("id", "price", "latitude", "longitude", "last_review")


@dataclass(frozen=True)
class CleaningStats:
    """How many rows each rule removed: logged as metrics so a jump in one rule gets noticed."""

    rows_in: int
    rows_out: int
    dropped_price: int
    dropped_outside_box: int
    dropped_duplicate_id: int
    invalid_last_review: int

    def as_dict(self) -> dict[str, int]:
        """Plain mapping for metric loggers."""
        return {
            "rows_in": self.rows_in,
            "rows_out": self.rows_out,
            "dropped_price": self.dropped_price,
            "dropped_outside_box": self.dropped_outside_box,
            "dropped_duplicate_id": self.dropped_duplicate_id,
            "invalid_last_review": self.invalid_last_review,
        }


def clean_listings(df: pd.DataFrame, bounds: CleaningBounds) -> tuple[pd.DataFrame, CleaningStats]:
    """Return the cleaned copy of `df` (fresh 0..n-1 index) and per-rule drop counts; the bounds
    were checked by their schema (steps/common/bounds.py)."""
    missing = [name for name in REQUIRED_COLUMNS if name not in df.columns]
    if missing:
        raise DataValidationError(
            f"cannot clean listings: column(s) {', '.join(missing)} are missing from the data"
        )

    rows_in = len(df)
    price_ok = df["price"].between(bounds.min_price, bounds.max_price, inclusive="both")
    kept = df.loc[price_ok]
    dropped_price = rows_in - len(kept)

    inside = kept["longitude"].between(
        bounds.min_longitude, bounds.max_longitude, inclusive="both"
    ) & kept["latitude"].between(bounds.min_latitude, bounds.max_latitude, inclusive="both")
    before = len(kept)
    kept = kept.loc[inside]
    dropped_outside = before - len(kept)

    before = len(kept)
    kept = kept.loc[~kept["id"].duplicated(keep="first")]
    dropped_duplicates = before - len(kept)

    cleaned = kept.reset_index(drop=True)
    raw_review = cleaned["last_review"]
    if pd.api.types.is_datetime64_any_dtype(raw_review):
        last_review = raw_review
    else:
        last_review = pd.to_datetime(raw_review, format="%Y-%m-%d", errors="coerce")
    invalid_reviews = int((last_review.isna() & raw_review.notna()).sum())
    cleaned["last_review"] = last_review

    stats = CleaningStats(
        rows_in=rows_in,
        rows_out=len(cleaned),
        dropped_price=dropped_price,
        dropped_outside_box=dropped_outside,
        dropped_duplicate_id=dropped_duplicates,
        invalid_last_review=invalid_reviews,
    )
    logger.info("cleaning: %s", stats.as_dict())
    if invalid_reviews:
        logger.warning(
            "%d last_review value(s) were not YYYY-MM-DD dates: set to NaT", invalid_reviews
        )
    return cleaned, stats
