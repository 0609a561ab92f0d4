"""The shared preprocessing copes with raw rows as they come: gaps, one row, new values."""

from __future__ import annotations

import pickle
from datetime import datetime

import numpy as np
import pandas as pd
import pytest

from steps.common.listing_columns import LISTING_COLUMNS
from steps.train.features import DaysSinceTransformer, build_preprocessor


def _rows() -> pd.DataFrame:
    """Raw listing rows with the real file's quirks (empty reviews and names, pandas str dtype)."""
    rows = [
        [1, "Cozy room in Harlem", 11, "Ann", "Manhattan", "Harlem", 40.81, -73.94,
         "Private room", 70.0, 2, 10, "2019-06-01", 0.5, 1, 100],
        [2, "Sunny loft near park", 12, "Bob", "Brooklyn", "Williamsburg", 40.71, -73.95,
         "Entire home/apt", 180.0, 3, 0, None, None, 2, 0],
        [3, None, 13, None, "Queens", "Astoria", 40.76, -73.92,
         "Shared room", 40.0, 1, 5, "2019-07-08", 1.2, 1, 365],
        [4, "Loft with view", 14, "Dee", "Manhattan", "Harlem", 40.80, -73.95,
         "Entire home/apt", 200.0, 30, 100, "2018-01-01", 3.0, 5, 200],
    ]  # fmt: skip
    frame = pd.DataFrame(rows * 5, columns=list(LISTING_COLUMNS))
    frame["id"] = np.arange(len(frame))
    for column in ("name", "host_name", "neighbourhood_group", "neighbourhood", "room_type"):
        frame[column] = frame[column].astype("str")
    frame["last_review"] = frame["last_review"].astype("str")
    return frame


def test_output_is_finite_dense_and_named() -> None:
    pre = build_preprocessor(5)
    frame = _rows()
    out = pre.fit_transform(frame)
    assert isinstance(out, np.ndarray)
    assert out.shape[0] == len(frame)
    assert np.isfinite(out).all()
    names = list(pre.get_feature_names_out())
    assert len(names) == out.shape[1]
    assert "last_review__days_since_last_review" in names
    assert "last_review__last_review_missing" in names
    assert any(n.startswith("name__") for n in names)


def test_price_absent_extra_columns_ignored_and_single_row() -> None:
    pre = build_preprocessor(5).fit(_rows())
    request = _rows().drop(columns=["price"]).iloc[[1]].assign(unrelated="x")
    out = pre.transform(request)
    assert out.shape == (1, len(pre.get_feature_names_out()))
    assert np.isfinite(out).all()


def test_missing_values_everywhere_and_object_dtype() -> None:
    pre = build_preprocessor(5).fit(_rows())
    row = {c: [None] for c in LISTING_COLUMNS if c != "price"}
    nan_row = {c: [np.nan] for c in LISTING_COLUMNS if c != "price"}
    for raw in (row, nan_row):
        out = pre.transform(pd.DataFrame(raw, dtype=object))
        assert np.isfinite(out).all()
    na_row = _rows().iloc[[0]].copy()
    na_row["neighbourhood"] = pd.NA
    na_row["name"] = pd.NA
    assert np.isfinite(pre.transform(na_row)).all()


def test_unseen_categories_do_not_fail() -> None:
    pre = build_preprocessor(5).fit(_rows())
    row = _rows().iloc[[0]].copy()
    row["neighbourhood_group"] = "Atlantis"
    row["neighbourhood"] = "Nowhere"
    row["room_type"] = "Hotel room"
    row["name"] = "completely novel words"
    out = pre.transform(row)
    assert np.isfinite(out).all()
    names = list(pre.get_feature_names_out())
    groups = [i for i, n in enumerate(names) if n.startswith("neighbourhood_group__")]
    assert out[0, groups].sum() == 0.0


def test_days_since_uses_reference_date_fixed_at_fit() -> None:
    frame = _rows()
    transformer = DaysSinceTransformer().fit(frame[["last_review"]])
    assert transformer.reference_date_ is not None
    assert transformer.reference_date_.startswith("2019-07-08")
    mixed = pd.DataFrame(
        {"last_review": ["2019-07-01", datetime(2019, 7, 7), None, np.nan, "not a date"]},
        dtype=object,
    )
    out = transformer.transform(mixed)
    np.testing.assert_allclose(out[:2, 0], [7.0, 1.0])
    np.testing.assert_array_equal(out[:, 1], [0.0, 0.0, 1.0, 1.0, 1.0])
    # A missing date counts as the oldest age seen in training ("long ago").
    assert np.all(out[2:, 0] == transformer.fill_value_)
    assert transformer.fill_value_ == pytest.approx(
        (pd.Timestamp("2019-07-08") - pd.Timestamp("2018-01-01")).days
    )


def test_explicit_reference_date() -> None:
    transformer = DaysSinceTransformer(reference_date="2020-01-01").fit(_rows()[["last_review"]])
    out = transformer.transform(pd.DataFrame({"last_review": ["2019-12-31"]}))
    assert out[0, 0] == 1.0


def test_fitted_preprocessor_pickles() -> None:
    pre = build_preprocessor(5).fit(_rows())
    restored = pickle.loads(pickle.dumps(pre))
    frame = _rows()
    np.testing.assert_array_equal(restored.transform(frame), pre.transform(frame))


@pytest.mark.parametrize("bad", [0, -1, 2.5, True])
def test_rejects_bad_tfidf_size(bad: object) -> None:
    with pytest.raises((TypeError, ValueError)):
        build_preprocessor(bad)  # type: ignore[arg-type]
