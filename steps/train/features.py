"""One preprocessing definition shared by every model: raw listing rows in, a numeric matrix out.

Every model is trained and served on exactly the same features, so a model comparison compares
regressors, not feature engineering. The transformer takes the raw AB_NYC_2019 rows as they come
from the data file or a prediction request (extra columns ignored, `price` absent at predict time,
text columns as pandas `str` or object dtype, missing values as None/NaN/pd.NA) and is built only
from module-level functions and classes, so the fitted pipeline pickles (MLflow stores it so).
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.compose import ColumnTransformer
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.impute import SimpleImputer
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import FunctionTransformer, OneHotEncoder, OrdinalEncoder
from sklearn.utils.validation import check_is_fitted

from steps.common.listing_columns import ROOM_TYPES

logger = logging.getLogger(__name__)

# Missing categories become one explicit level: encoders never see None/NaN/pd.NA.
MISSING_CATEGORY = "__missing__"

# Neighbourhoods with fewer training rows than this share one "infrequent" column: a one-hot
# column learned from a handful of listings is noise, and unseen neighbourhoods join that column.
NEIGHBOURHOOD_MIN_FREQUENCY = 20

# Counts whose absence means "none" (a listing without reviews has no review rate).
ZERO_IMPUTED_COLUMNS: tuple[str, ...] = ("number_of_reviews", "reviews_per_month")
# Measurements whose absence says nothing: the training median is the least surprising value.
MEDIAN_IMPUTED_COLUMNS: tuple[str, ...] = (
    "latitude",
    "longitude",
    "minimum_nights",
    "calculated_host_listings_count",
    "availability_365",
)
# Heavy-tailed counts also enter as log1p: linear models see a usable scale, trees don't care.
LOG1P_COLUMNS: tuple[str, ...] = (
    "minimum_nights",
    "number_of_reviews",
    "reviews_per_month",
    "calculated_host_listings_count",
)


def to_category_strings(X: Any) -> np.ndarray:
    """Return the columns as an object array of str, missing values as MISSING_CATEGORY.

    sklearn encoders mishandle pd.NA and mixed None/NaN; plain Python strings are safe.
    """
    frame = pd.DataFrame(X)
    out = np.empty(frame.shape, dtype=object)
    for j, column in enumerate(frame.columns):
        values = frame[column]
        missing = values.isna().to_numpy()
        text = values.astype(object).to_numpy()
        out[:, j] = [MISSING_CATEGORY if m else str(v) for v, m in zip(text, missing, strict=True)]
    return out


def to_float(X: Any) -> np.ndarray:
    """Return the columns as float64, anything unparsable or missing as NaN (for the imputers)."""
    frame = pd.DataFrame(X)
    columns = [pd.to_numeric(frame[c], errors="coerce") for c in frame.columns]
    return np.column_stack(
        [c.astype("float64").to_numpy(dtype="float64", na_value=np.nan) for c in columns]
    ).reshape(len(frame), len(columns))


def to_log1p_float(X: Any) -> np.ndarray:
    """log1p of the non-negative counts (negatives clipped to 0); NaN stays NaN for the imputer."""
    return np.log1p(np.clip(to_float(X), 0.0, None))


def to_text(X: Any) -> np.ndarray:
    """Return one 1-D array of str for TfidfVectorizer; missing names become ""."""
    values = pd.DataFrame(X).iloc[:, 0] if np.ndim(X) == 2 else pd.Series(X)
    missing = values.isna().to_numpy()
    text = values.astype(object).to_numpy()
    return np.array(["" if m else str(v) for v, m in zip(text, missing, strict=True)], dtype=object)


def _parse_dates(X: Any) -> pd.Series:
    """Parse 'YYYY-MM-DD' strings, datetimes or missing values into naive datetime64 (NaT)."""
    values = pd.DataFrame(X).iloc[:, 0] if np.ndim(X) == 2 else pd.Series(X)
    values = pd.Series(values.astype(object).to_numpy(), dtype=object)
    parsed = pd.to_datetime(values, errors="coerce", format="ISO8601", utc=True)
    return parsed.dt.tz_localize(None)


class DaysSinceTransformer(TransformerMixin, BaseEstimator):
    """Days from each date to a reference date fixed at fit time, plus a missing indicator.

    The reference date is the latest date seen in training (or `reference_date` when given), never
    "today", so the same row always gets the same features and predictions are reproducible.
    A missing date gets the oldest training age (a "long ago" value) and indicator 1.
    """

    def __init__(self, reference_date: str | None = None) -> None:
        self.reference_date = reference_date

    def fit(self, X: Any, y: Any = None) -> DaysSinceTransformer:
        """Learn the reference date and the age given to missing dates."""
        dates = _parse_dates(X)
        if self.reference_date is not None:
            reference = pd.Timestamp(self.reference_date)
        elif dates.notna().any():
            reference = dates.max()
        else:
            reference = None
            logger.warning("no date in the training data: days-since feature is constant")
        self.reference_date_: str | None = None if reference is None else reference.isoformat()
        days = self._days(dates)
        self.fill_value_: float = float(np.nanmax(days)) if np.isfinite(days).any() else 0.0
        self.n_features_in_ = 1
        return self

    def _days(self, dates: pd.Series) -> np.ndarray:
        if self.reference_date_ is None:
            return np.full(len(dates), np.nan)
        delta = (pd.Timestamp(self.reference_date_) - dates).dt.total_seconds() / 86400.0
        return delta.to_numpy(dtype="float64", na_value=np.nan)

    def transform(self, X: Any) -> np.ndarray:
        """Return [days_since, is_missing] per row."""
        check_is_fitted(self, "fill_value_")
        days = self._days(_parse_dates(X))
        missing = ~np.isfinite(days)
        days = np.where(missing, self.fill_value_, days)
        return np.column_stack([days, missing.astype("float64")])

    def get_feature_names_out(self, input_features: Any = None) -> np.ndarray:
        """Name the two output columns (so coefficients and importances can be reported)."""
        return np.array(["days_since_last_review", "last_review_missing"], dtype=object)


def _category_step() -> FunctionTransformer:
    return FunctionTransformer(to_category_strings, feature_names_out="one-to-one")


def build_preprocessor(
    tfidf_max_features: int, reference_date: str | None = None
) -> ColumnTransformer:
    """Build the unfitted feature transformer of raw listing rows (see the module docstring).

    tfidf_max_features: size of the TF-IDF vocabulary of `name` (most frequent terms).
    reference_date: fixed 'YYYY-MM-DD' for days-since-last-review; None learns it at fit time.
    """
    if isinstance(tfidf_max_features, bool) or not isinstance(tfidf_max_features, int):
        raise TypeError(f"tfidf_max_features must be an int, got {tfidf_max_features!r}")
    if tfidf_max_features < 1:
        raise ValueError(f"tfidf_max_features must be >= 1, got {tfidf_max_features}")
    room_type = Pipeline(
        [
            ("clean", _category_step()),
            (
                "ordinal",
                OrdinalEncoder(
                    categories=[list(ROOM_TYPES)],
                    handle_unknown="use_encoded_value",
                    unknown_value=np.nan,
                ),
            ),
            # Unknown or missing room type: the most common type in training.
            ("impute", SimpleImputer(strategy="most_frequent")),
        ]
    )
    group = Pipeline(
        [
            ("clean", _category_step()),
            ("onehot", OneHotEncoder(handle_unknown="ignore", dtype=np.float64)),
        ]
    )
    neighbourhood = Pipeline(
        [
            ("clean", _category_step()),
            (
                "onehot",
                OneHotEncoder(
                    handle_unknown="infrequent_if_exist",
                    min_frequency=NEIGHBOURHOOD_MIN_FREQUENCY,
                    dtype=np.float64,
                ),
            ),
        ]
    )
    zero_numeric = Pipeline(
        [
            ("float", FunctionTransformer(to_float, feature_names_out="one-to-one")),
            (
                "impute",
                SimpleImputer(strategy="constant", fill_value=0.0, keep_empty_features=True),
            ),
        ]
    )
    median_numeric = Pipeline(
        [
            ("float", FunctionTransformer(to_float, feature_names_out="one-to-one")),
            ("impute", SimpleImputer(strategy="median", keep_empty_features=True)),
        ]
    )
    log_numeric = Pipeline(
        [
            ("log1p", FunctionTransformer(to_log1p_float, feature_names_out="one-to-one")),
            (
                "impute",
                SimpleImputer(strategy="constant", fill_value=0.0, keep_empty_features=True),
            ),
        ]
    )
    name_tfidf = Pipeline(
        [
            ("text", FunctionTransformer(to_text, feature_names_out="one-to-one")),
            (
                "tfidf",
                TfidfVectorizer(
                    max_features=tfidf_max_features, stop_words="english", dtype=np.float64
                ),
            ),
        ]
    )
    return ColumnTransformer(
        [
            ("room_type", room_type, ["room_type"]),
            ("neighbourhood_group", group, ["neighbourhood_group"]),
            ("neighbourhood", neighbourhood, ["neighbourhood"]),
            ("zero", zero_numeric, list(ZERO_IMPUTED_COLUMNS)),
            ("median", median_numeric, list(MEDIAN_IMPUTED_COLUMNS)),
            ("log1p", log_numeric, list(LOG1P_COLUMNS)),
            ("last_review", DaysSinceTransformer(reference_date), ["last_review"]),
            ("name", name_tfidf, "name"),
        ],
        remainder="drop",
        # Always dense: a few hundred columns, and every regressor then sees the same type.
        sparse_threshold=0.0,
    )
