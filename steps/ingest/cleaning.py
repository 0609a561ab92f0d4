"""Drop the rows no price model should learn from, and give last_review its real type.

Rules, applied in this order so each row is counted once, under the first rule it breaks:
price outside [min_price, max_price] (missing prices too), coordinates outside the NYC box
(missing coordinates too), then repeated ids (the first remaining occurrence is kept, so a valid
copy survives when an earlier copy was dropped for its price or position).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from steps.common.bounds import CleaningBounds
from steps.common.errors import DataValidationError
from steps.common.tables import iter_batches, read_table, table_columns

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


def _check_columns(columns: list[str]) -> None:
    missing = [name for name in REQUIRED_COLUMNS if name not in columns]
    if missing:
        raise DataValidationError(
            f"cannot clean listings: column(s) {', '.join(missing)} are missing from the data"
        )


@dataclass(frozen=True)
class _Kept:
    """Which rows the rules keep, and how many each rule dropped."""

    mask: np.ndarray
    dropped_price: int
    dropped_outside_box: int
    dropped_duplicate_id: int


def _kept_rows(df: pd.DataFrame, bounds: CleaningBounds) -> _Kept:
    """The rules on the columns they read (id, price, latitude, longitude), in their order."""
    price_ok = df["price"].between(bounds.min_price, bounds.max_price, inclusive="both")
    inside = df["longitude"].between(
        bounds.min_longitude, bounds.max_longitude, inclusive="both"
    ) & df["latitude"].between(bounds.min_latitude, bounds.max_latitude, inclusive="both")
    price_ok_np = price_ok.to_numpy(dtype=bool)
    in_box = price_ok_np & inside.to_numpy(dtype=bool)
    ids = df["id"].to_numpy()[in_box]
    first = ~pd.Series(ids).duplicated(keep="first").to_numpy(dtype=bool)
    mask = in_box.copy()
    mask[in_box] = first
    return _Kept(
        mask=mask,
        dropped_price=int((~price_ok_np).sum()),
        dropped_outside_box=int(price_ok_np.sum() - in_box.sum()),
        dropped_duplicate_id=int(in_box.sum() - mask.sum()),
    )


def _review_dates(raw_review: pd.Series) -> tuple[pd.Series, int]:
    """last_review as datetimes ('YYYY-MM-DD' text parsed, anything else NaT), and how many
    values were not such dates."""
    if pd.api.types.is_datetime64_any_dtype(raw_review):
        return raw_review, 0
    last_review = pd.to_datetime(raw_review, format="%Y-%m-%d", errors="coerce")
    return last_review, int((last_review.isna() & raw_review.notna()).sum())


def _stats(rows_in: int, rows_out: int, kept: _Kept, invalid_reviews: int) -> CleaningStats:
    stats = CleaningStats(
        rows_in=rows_in,
        rows_out=rows_out,
        dropped_price=kept.dropped_price,
        dropped_outside_box=kept.dropped_outside_box,
        dropped_duplicate_id=kept.dropped_duplicate_id,
        invalid_last_review=invalid_reviews,
    )
    logger.info("cleaning: %s", stats.as_dict())
    if invalid_reviews:
        logger.warning(
            "%d last_review value(s) were not YYYY-MM-DD dates: set to NaT", invalid_reviews
        )
    return stats


def clean_listings(df: pd.DataFrame, bounds: CleaningBounds) -> tuple[pd.DataFrame, CleaningStats]:
    """Return the cleaned copy of `df` (fresh 0..n-1 index) and per-rule drop counts; the bounds
    were checked by their schema (steps/common/bounds.py)."""
    _check_columns(list(df.columns))
    kept = _kept_rows(df, bounds)
    cleaned = df.loc[kept.mask].reset_index(drop=True)
    last_review, invalid_reviews = _review_dates(cleaned["last_review"])
    cleaned["last_review"] = last_review
    return cleaned, _stats(len(df), len(cleaned), kept, invalid_reviews)


# What last_review becomes in the clean table when it arrives as text.
_REVIEW_TYPE = pa.timestamp("us")


def clean_parquet(src: Path, dst: Path, bounds: CleaningBounds) -> CleaningStats:
    """clean_listings from one Parquet table to another, a batch of rows at a time.

    The rules are decided on the four columns they read, for every row at once (duplicate ids
    are found across the whole table); the rows kept are then copied batch by batch as Arrow
    data, so memory holds those four columns and one batch, whatever the table's size. The rows,
    their order and their values are those of clean_listings.
    """
    columns = table_columns(src)
    _check_columns(columns)
    kept = _kept_rows(read_table(src, ["id", "price", "latitude", "longitude"]), bounds)
    schema = pq.ParquetFile(src).schema_arrow
    review_index = schema.get_field_index("last_review")
    if not pa.types.is_timestamp(schema.field(review_index).type):
        schema = schema.set(review_index, pa.field("last_review", _REVIEW_TYPE))
    schema = schema.remove_metadata()
    offset = rows_out = invalid_reviews = 0
    with pq.ParquetWriter(dst, schema) as writer:
        for batch in iter_batches(src):
            mask = kept.mask[offset : offset + batch.num_rows]
            offset += batch.num_rows
            part = pa.Table.from_batches([batch]).filter(pa.array(mask))
            reviews, invalid = _review_dates(part.column("last_review").to_pandas())
            invalid_reviews += invalid
            dates = pa.Array.from_pandas(reviews).cast(schema.field(review_index).type)
            part = part.set_column(review_index, schema.field(review_index), dates)
            writer.write_table(part.cast(schema))
            rows_out += part.num_rows
    return _stats(len(kept.mask), rows_out, kept, invalid_reviews)
