"""Cleaning rules: inclusive price bounds, the NYC box, first-kept duplicates, typed dates."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import pytest
from pydantic import ValidationError

from steps.common.bounds import CleaningBounds
from steps.common.errors import DataValidationError
from steps.ingest.cleaning import CleaningStats, clean_listings

VALUES: dict[str, float] = {
    "min_price": 10,
    "max_price": 350,
    "min_longitude": -74.25,
    "max_longitude": -73.50,
    "min_latitude": 40.50,
    "max_latitude": 40.92,
}
BOUNDS = CleaningBounds(**VALUES)


def _frame(rows: list[dict[str, Any]]) -> pd.DataFrame:
    base = {"id": 0, "price": 100.0, "latitude": 40.7, "longitude": -73.9, "last_review": None}
    frame = pd.DataFrame([base | row for row in rows])
    frame["last_review"] = frame["last_review"].astype("str")
    return frame


def test_price_bounds_are_inclusive() -> None:
    prices = [0, 9.99, 10, 100, 350, 350.01, 10_000, np.nan]
    frame = _frame([{"id": i, "price": p} for i, p in enumerate(prices)])
    cleaned, stats = clean_listings(frame, BOUNDS)
    assert cleaned["price"].tolist() == [10, 100, 350]
    assert stats.dropped_price == 5


def test_coordinates_must_be_inside_the_box() -> None:
    rows: list[dict[str, Any]] = [
        {"id": 1, "latitude": 40.50, "longitude": -74.25},
        {"id": 2, "latitude": 40.92, "longitude": -73.50},
        {"id": 3, "latitude": 40.93},
        {"id": 4, "latitude": 40.49},
        {"id": 5, "longitude": -74.26},
        {"id": 6, "longitude": -73.49},
        {"id": 7, "latitude": np.nan},
    ]
    cleaned, stats = clean_listings(_frame(rows), BOUNDS)
    assert cleaned["id"].tolist() == [1, 2]
    assert stats.dropped_outside_box == 5


def test_duplicate_ids_keep_first_remaining() -> None:
    rows: list[dict[str, Any]] = [
        {"id": 1, "price": 50},
        {"id": 1, "price": 60},
        {"id": 2, "price": 0},
        {"id": 2, "price": 70},
        {"id": 3, "price": 80},
    ]
    cleaned, stats = clean_listings(_frame(rows), BOUNDS)
    assert cleaned[["id", "price"]].values.tolist() == [[1, 50], [2, 70], [3, 80]]
    assert stats.dropped_duplicate_id == 1
    assert stats.dropped_price == 1


def test_each_row_counted_under_one_rule() -> None:
    rows: list[dict[str, Any]] = [
        {"id": 1},
        {"id": 1, "price": 0, "latitude": 41.5},
        {"id": 2, "latitude": 41.5},
        {"id": 1},
    ]
    cleaned, stats = clean_listings(_frame(rows), BOUNDS)
    assert stats == CleaningStats(
        rows_in=4,
        rows_out=1,
        dropped_price=1,
        dropped_outside_box=1,
        dropped_duplicate_id=1,
        invalid_last_review=0,
    )
    assert stats.rows_in - stats.rows_out == (
        stats.dropped_price + stats.dropped_outside_box + stats.dropped_duplicate_id
    )
    assert len(cleaned) == 1


def test_last_review_becomes_datetime_and_invalid_is_nat() -> None:
    rows: list[dict[str, Any]] = [
        {"id": 1, "last_review": "2019-05-26"},
        {"id": 2, "last_review": None},
        {"id": 3, "last_review": "26/05/2019"},
        {"id": 4, "last_review": "2019-02-30"},
    ]
    cleaned, stats = clean_listings(_frame(rows), BOUNDS)
    assert pd.api.types.is_datetime64_any_dtype(cleaned["last_review"])
    assert cleaned.loc[0, "last_review"] == pd.Timestamp("2019-05-26")
    assert cleaned["last_review"].isna().tolist() == [False, True, True, True]
    assert stats.invalid_last_review == 2


def test_already_datetime_last_review_is_kept() -> None:
    frame = _frame([{"id": 1}, {"id": 2}])
    frame["last_review"] = pd.to_datetime(pd.Series(["2019-01-01", None]))
    cleaned, _ = clean_listings(frame, BOUNDS)
    assert cleaned.loc[0, "last_review"] == pd.Timestamp("2019-01-01")


def test_index_is_fresh_and_input_untouched() -> None:
    frame = _frame([{"id": 1, "price": 0}, {"id": 2}, {"id": 3, "last_review": "2019-01-02"}])
    original = frame.copy()
    cleaned, stats = clean_listings(frame, BOUNDS)
    assert cleaned.index.tolist() == [0, 1]
    assert stats.rows_out == 2
    pd.testing.assert_frame_equal(frame, original)
    assert list(cleaned.columns) == list(frame.columns)


def test_stats_as_dict_are_ints() -> None:
    _, stats = clean_listings(_frame([{"id": 1}]), BOUNDS)
    assert stats.as_dict() == {
        "rows_in": 1,
        "rows_out": 1,
        "dropped_price": 0,
        "dropped_outside_box": 0,
        "dropped_duplicate_id": 0,
        "invalid_last_review": 0,
    }


@pytest.mark.parametrize(
    ("override", "pattern"),
    [
        ({"min_price": 400}, "min_price"),
        ({"min_price": 350}, "min_price"),
        ({"min_longitude": -73.0}, "min_longitude"),
        ({"max_latitude": 40.0}, "min_latitude"),
        ({"min_price": -5}, r"min_price\n.*greater than or equal to 0"),
        ({"max_price": float("nan")}, "finite"),
        ({"max_price": float("inf")}, "finite"),
        ({"max_price": "many"}, r"max_price\n.*valid number"),
    ],
)
def test_bad_bounds_are_refused_by_their_schema(override: dict[str, Any], pattern: str) -> None:
    """The one check of the bounds, for basic_cleaning and data_check alike."""
    with pytest.raises(ValidationError, match=pattern):
        CleaningBounds(**(VALUES | override))


def test_missing_columns_are_a_data_error() -> None:
    with pytest.raises(DataValidationError, match="price"):
        clean_listings(_frame([{"id": 1}]).drop(columns=["price"]), BOUNDS)
