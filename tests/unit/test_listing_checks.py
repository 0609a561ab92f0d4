"""The data contract: a clean frame passes; a broken one fails with every rule named."""

from __future__ import annotations

import math
import re
from typing import Any

import numpy as np
import pandas as pd
import pandera.pandas as pa
import pyarrow
import pytest
from pydantic import ValidationError

from steps.common.bounds import CleaningBounds
from steps.common.errors import ConfigurationError, DataValidationError
from steps.common.listing_columns import LISTING_ARROW_TYPES
from steps.ingest.cleaning import clean_listings
from steps.ingest.demo_data import generate_listings
from steps.validate.listing_checks import (
    ValidationReport,
    build_listing_schema,
    neighbourhood_kl_divergence,
    validate_listings,
)
from steps.validate.schema import DataCheckSettings

BOX: dict[str, Any] = {
    "min_longitude": -74.25,
    "max_longitude": -73.50,
    "min_latitude": 40.50,
    "max_latitude": 40.92,
}
PRICES: dict[str, Any] = {"min_price": 10, "max_price": 350}
REFERENCE = {
    "Manhattan": 0.443,
    "Brooklyn": 0.411,
    "Queens": 0.116,
    "Bronx": 0.022,
    "Staten Island": 0.008,
}


BOUNDS = CleaningBounds(**PRICES, **BOX)


def _schema(min_rows: int = 50, max_rows: int = 100_000) -> pa.DataFrameSchema:
    return build_listing_schema(min_rows=min_rows, max_rows=max_rows, bounds=BOUNDS)


@pytest.fixture(scope="module")
def clean_frame() -> pd.DataFrame:
    """Cleaned demo listings with the types they have after the Parquet round trip."""
    raw = generate_listings(400, 21)
    for name, arrow_type in LISTING_ARROW_TYPES.items():
        if arrow_type.equals(pyarrow.float64()):
            raw[name] = raw[name].astype("float64")
    cleaned, _ = clean_listings(raw, BOUNDS)
    return cleaned


def test_clean_frame_passes(clean_frame: pd.DataFrame) -> None:
    report = validate_listings(clean_frame, _schema(), REFERENCE, kl_threshold=0.2)
    assert isinstance(report, ValidationReport)
    assert report.rows == len(clean_frame)
    assert 0 <= report.kl_divergence < 0.2
    assert report.kl_threshold == 0.2
    assert sum(report.group_shares.values()) == pytest.approx(1.0)
    assert set(report.group_shares) <= set(REFERENCE)


def test_broken_frame_names_every_rule(clean_frame: pd.DataFrame) -> None:
    bad = clean_frame.copy()
    bad.loc[[0, 1], "price"] = [5.0, 9_999.0]
    bad.loc[2, "neighbourhood_group"] = "Atlantis"
    bad.loc[3, "room_type"] = "Castle"
    bad.loc[4, "id"] = bad.loc[5, "id"]
    bad.loc[6, "latitude"] = 41.5
    bad.loc[7, "number_of_reviews"] = -1.0
    bad.loc[8, "neighbourhood"] = None
    bad.loc[9, "availability_365"] = 400.0
    bad["host_id"] = bad["host_id"].astype("float64")
    bad["surprise"] = 1
    with pytest.raises(DataValidationError) as info:
        validate_listings(bad, _schema(min_rows=10_000), REFERENCE, kl_threshold=0.2)
    message = str(info.value)
    expected = [
        r"column 'price': check 'in_range\(10\.0, 350\.0\)' failed for 2 row\(s\); "
        r"e\.g\. 5\.0 \(row 0\)",
        r"column 'neighbourhood_group': check 'isin\(.*\)' failed for 1 row\(s\); "
        r"e\.g\. 'Atlantis' \(row 2\)",
        r"column 'room_type': check 'isin\(.*\)' failed for 1 row\(s\); e\.g\. 'Castle' \(row 3\)",
        r"column 'id': check 'field_uniqueness' failed for 2 row\(s\)",
        r"column 'latitude': check 'in_range\(40\.5, 40\.92\)' failed for 1 row\(s\); "
        r"e\.g\. 41\.5 \(row 6\)",
        r"column 'number_of_reviews': check 'greater_than_or_equal_to\(0\)' failed for 1 row",
        r"column 'neighbourhood': check 'not_nullable' failed for 1 row\(s\); "
        r"e\.g\. <missing> \(row 8\)",
        r"column 'availability_365': check 'in_range\(0, 365\)' failed for 1 row",
        r"column 'host_id': check 'dtype\('int64'\)' failed: found float64",
        r"dataframe: check 'column_in_schema' failed: unexpected column\(s\): 'surprise'",
        rf"dataframe: check 'row count between 10000 and 100000' failed: the data has "
        rf"{len(bad)} row\(s\)",
    ]
    for pattern in expected:
        assert re.search(pattern, message), f"{pattern!r} not in:\n{message}"
    assert message.startswith(f"data validation failed: {len(expected)} rule(s) broken")


def test_missing_column_and_wrong_date_type(clean_frame: pd.DataFrame) -> None:
    bad = clean_frame.drop(columns=["price"])
    bad["last_review"] = bad["last_review"].dt.strftime("%Y-%m-%d")
    with pytest.raises(DataValidationError) as info:
        validate_listings(bad, _schema(), REFERENCE, kl_threshold=0.2)
    message = str(info.value)
    assert "check 'column_in_dataframe' failed: missing column(s): 'price'" in message
    assert "column 'last_review': check 'dtype('datetime64[ns]')' failed" in message


def test_examples_are_capped(clean_frame: pd.DataFrame) -> None:
    bad = clean_frame.copy()
    bad.loc[:19, "price"] = 0.0
    with pytest.raises(DataValidationError) as info:
        validate_listings(bad, _schema(), REFERENCE, kl_threshold=0.2, max_examples=3)
    line = next(s for s in str(info.value).splitlines() if "'price'" in s)
    assert "failed for 20 row(s)" in line
    assert line.count("(row ") == 3


def test_kl_failure_reports_value_and_threshold(clean_frame: pd.DataFrame) -> None:
    skewed = clean_frame.copy()
    skewed["neighbourhood_group"] = "Staten Island"
    with pytest.raises(DataValidationError) as info:
        validate_listings(skewed, _schema(), REFERENCE, kl_threshold=0.2)
    message = str(info.value)
    assert re.search(
        r"check 'kl_divergence' failed: KL\(observed \|\| reference\) = [\d.]+ > "
        r"threshold 0\.2",
        message,
    )
    assert "Staten Island 1.000" in message
    assert message.startswith("data validation failed: 1 rule(s) broken")


def test_kl_of_identical_distribution_is_zero() -> None:
    observed = pd.Series(["a"] * 30 + ["b"] * 70)
    assert neighbourhood_kl_divergence(observed, {"a": 0.3, "b": 0.7}) == pytest.approx(0, abs=1e-9)


def test_kl_matches_formula_and_normalises_reference() -> None:
    observed = pd.Series(["a"] * 50 + ["b"] * 50 + [None] * 10)
    expected = 0.5 * math.log(0.5 / 0.25) + 0.5 * math.log(0.5 / 0.75)
    assert neighbourhood_kl_divergence(observed, {"a": 0.25, "b": 0.75}) == pytest.approx(
        expected, rel=1e-4
    )
    assert neighbourhood_kl_divergence(observed, {"a": 25, "b": 75}) == pytest.approx(
        expected, rel=1e-4
    )


def test_kl_is_finite_for_unknown_or_absent_categories() -> None:
    unknown = neighbourhood_kl_divergence(pd.Series(["a", "z"]), {"a": 1.0})
    assert np.isfinite(unknown)
    assert unknown > 1
    absent = neighbourhood_kl_divergence(pd.Series(["a", "a"]), {"a": 0.5, "b": 0.5})
    assert absent == pytest.approx(math.log(2), rel=1e-3)


def test_kl_of_empty_observation_is_a_data_error() -> None:
    with pytest.raises(DataValidationError, match="no values"):
        neighbourhood_kl_divergence(pd.Series([], dtype="str"), REFERENCE)


@pytest.mark.parametrize("reference", [{}, {"a": -1.0, "b": 2.0}, {"a": 0.0}, {"a": math.nan}])
def test_bad_reference_is_configuration_error(reference: dict[str, float]) -> None:
    with pytest.raises(ConfigurationError, match="reference_distribution"):
        neighbourhood_kl_divergence(pd.Series(["a"]), reference)


def test_bad_threshold_is_configuration_error(clean_frame: pd.DataFrame) -> None:
    with pytest.raises(ConfigurationError, match="kl_threshold"):
        validate_listings(clean_frame, _schema(), REFERENCE, kl_threshold=-0.1)


@pytest.mark.parametrize(
    ("override", "pattern"),
    [
        ({"min_rows": 10, "max_rows": 5}, "min_rows must not exceed max_rows"),
        ({"min_rows": 0, "max_rows": 5}, r"min_rows\n.*greater than or equal to 1"),
    ],
)
def test_bad_row_window_is_refused_by_its_schema(override: dict[str, int], pattern: str) -> None:
    with pytest.raises(ValidationError, match=pattern):
        DataCheckSettings.model_validate(override)


def test_bad_price_bounds() -> None:
    with pytest.raises(ValidationError, match="min_price must be below max_price"):
        CleaningBounds(**(PRICES | {"min_price": 400}), **BOX)
