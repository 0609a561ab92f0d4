"""One preprocessing definition shared by every model: raw listing rows in, a numeric matrix out.

Every model is trained and served on exactly the same features, so a model comparison compares
regressors, not feature engineering. The transformer takes the raw AB_NYC_2019 rows as they come
from the data file or a prediction request (extra columns ignored, `price` absent at predict time,
text columns as pandas `str` or object dtype, missing values as None/NaN/pd.NA) and is built only
from module-level functions and classes, so the fitted pipeline is stored as plain data in skops'
format, its functions by name (the project's model format, steps/common/model_format.py: a new
function or class here must be added to its TRUSTED_TYPES).
"""

from __future__ import annotations

import logging
import re
from typing import Any

import numpy as np
import pandas as pd
from scipy import sparse
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


# Places whose distance prices a listing: Midtown, the Financial District, Central Park,
# Williamsburg and JFK (latitude, longitude). Distances in km on a local flat-earth projection,
# accurate to well under 1 % across the city.
LANDMARKS: dict[str, tuple[float, float]] = {
    "midtown": (40.7580, -73.9855),
    "downtown": (40.7075, -74.0113),
    "central_park": (40.7829, -73.9654),
    "williamsburg": (40.7081, -73.9571),
    "jfk": (40.6413, -73.7781),
}
_KM_PER_DEGREE_LAT = 111.0
_KM_PER_DEGREE_LON = 111.0 * float(np.cos(np.radians(40.73)))
GEO_FEATURES: tuple[str, ...] = (
    *(f"km_to_{place}" for place in LANDMARKS),
    "log_km_to_midtown",
    "lat_plus_lon",
    "lat_minus_lon",
)
# "2BR", "3 bedroom", "1.5 bd", "2-bed": the bedroom count hosts put in the name.
_BEDROOMS = re.compile(r"(\d{1,2}(?:\.5)?)\s*-?\s*(?:br\b|bd\b|bdr|bed|b/r)", re.IGNORECASE)
_MAX_BEDROOMS = 10.0
NAME_FEATURES: tuple[str, ...] = (
    "name_length",
    "name_words",
    "name_upper_share",
    "name_bedrooms",
    "name_bedrooms_missing",
    "name_studio",
)


def geo_features(X: Any) -> np.ndarray:
    """[latitude, longitude] (imputed) -> distances to LANDMARKS, log distance, rotated axes.

    Rotated coordinates let a tree split along the island's diagonal; distances give a linear
    model the "closer to Midtown costs more" shape that raw coordinates cannot express.
    """
    coords = np.asarray(X, dtype=np.float64).reshape(-1, 2)
    lat, lon = coords[:, 0], coords[:, 1]
    columns = []
    for place_lat, place_lon in LANDMARKS.values():
        north = (lat - place_lat) * _KM_PER_DEGREE_LAT
        east = (lon - place_lon) * _KM_PER_DEGREE_LON
        columns.append(np.hypot(north, east))
    columns += [np.log1p(columns[0]), lat + lon, lat - lon]
    return np.column_stack(columns)


def geo_feature_names(transformer: Any, input_features: Any = None) -> np.ndarray:
    """Names of geo_features' columns (for FunctionTransformer.get_feature_names_out)."""
    return np.array(GEO_FEATURES, dtype=object)


def _bedrooms(name: str) -> float:
    match = _BEDROOMS.search(name)
    if match is None:
        return np.nan
    count = float(match.group(1))
    return count if count <= _MAX_BEDROOMS else np.nan


def name_features(X: Any) -> np.ndarray:
    """Listing name -> length, words, share of capitals, bedrooms stated in it, studio flag.

    A name without a bedroom count gets 0 bedrooms and the missing flag 1.
    """
    names = to_text(X)
    length = np.array([len(n) for n in names], dtype=np.float64)
    words = np.array([len(n.split()) for n in names], dtype=np.float64)
    upper = np.array([sum(c.isupper() for c in n) for n in names], dtype=np.float64)
    bedrooms = np.array([_bedrooms(n) for n in names], dtype=np.float64)
    missing = np.isnan(bedrooms)
    studio = np.array(["studio" in n.lower() for n in names], dtype=np.float64)
    return np.column_stack(
        [
            length,
            words,
            upper / np.maximum(length, 1.0),
            np.where(missing, 0.0, bedrooms),
            missing.astype(np.float64),
            studio,
        ]
    )


def name_feature_names(transformer: Any, input_features: Any = None) -> np.ndarray:
    """Names of name_features' columns (for FunctionTransformer.get_feature_names_out)."""
    return np.array(NAME_FEATURES, dtype=object)


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


# Rows of a sparse part densified at a time while the feature matrix is stacked: bounds the
# transient copy to a few MiB whatever the number of rows.
_STACK_ROWS = 1 << 15
FEATURE_DTYPES: tuple[str, ...] = ("float64", "float32")


class DenseFeatures(ColumnTransformer):
    """A ColumnTransformer whose output is always one dense C-ordered matrix of `dtype`.

    scikit-learn's own stacking densifies every sparse part whole (the TF-IDF and one-hot
    columns) and then copies all parts into the result, so the matrix exists twice while it is
    built. Here the result is allocated once and filled part by part, a sparse part a block of
    rows at a time: the parts plus one matrix, never two. `dtype="float32"` halves the matrix for
    a model that reads float32 (torch_lasso accumulates its products in float64 anyway).
    """

    def __init__(
        self,
        transformers: list[tuple[str, Any, Any]],
        *,
        remainder: Any = "drop",
        dtype: str = "float64",
        verbose_feature_names_out: bool = True,
    ) -> None:
        super().__init__(
            transformers,
            remainder=remainder,
            sparse_threshold=0.0,
            verbose_feature_names_out=verbose_feature_names_out,
        )
        self.dtype = dtype

    def _hstack(self, Xs: list[Any], *, n_samples: int) -> Any:
        if self.dtype not in FEATURE_DTYPES:
            raise ValueError(f"dtype must be one of {FEATURE_DTYPES}, got {self.dtype!r}")
        if not all(sparse.issparse(X) or isinstance(X, np.ndarray) for X in Xs):
            return super()._hstack(Xs, n_samples=n_samples)
        rows = Xs[0].shape[0] if Xs else n_samples
        out = np.empty((rows, sum(X.shape[1] for X in Xs)), dtype=self.dtype)
        column = 0
        for part in Xs:
            width = part.shape[1]
            if sparse.issparse(part):
                rows_of = part.tocsr()
                for start in range(0, rows, _STACK_ROWS):
                    stop = min(rows, start + _STACK_ROWS)
                    out[start:stop, column : column + width] = rows_of[start:stop].toarray()
            else:
                out[:, column : column + width] = part
            column += width
        return out


def _category_step() -> FunctionTransformer:
    return FunctionTransformer(to_category_strings, feature_names_out="one-to-one")


def build_preprocessor(
    tfidf_max_features: int, reference_date: str | None = None, dtype: str = "float64"
) -> ColumnTransformer:
    """Build the unfitted feature transformer of raw listing rows (see the module docstring).

    tfidf_max_features: size of the TF-IDF vocabulary of `name` (most frequent terms).
    reference_date: fixed 'YYYY-MM-DD' for days-since-last-review; None learns it at fit time.
    dtype: of the feature matrix, "float64" or "float32" (DenseFeatures).
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
    geo = Pipeline(
        [
            ("float", FunctionTransformer(to_float, feature_names_out="one-to-one")),
            ("impute", SimpleImputer(strategy="median", keep_empty_features=True)),
            ("geo", FunctionTransformer(geo_features, feature_names_out=geo_feature_names)),
        ]
    )
    name_stats = FunctionTransformer(name_features, feature_names_out=name_feature_names)
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
    return DenseFeatures(
        [
            ("room_type", room_type, ["room_type"]),
            ("neighbourhood_group", group, ["neighbourhood_group"]),
            ("neighbourhood", neighbourhood, ["neighbourhood"]),
            ("zero", zero_numeric, list(ZERO_IMPUTED_COLUMNS)),
            ("median", median_numeric, list(MEDIAN_IMPUTED_COLUMNS)),
            ("log1p", log_numeric, list(LOG1P_COLUMNS)),
            ("last_review", DaysSinceTransformer(reference_date), ["last_review"]),
            ("geo", geo, ["latitude", "longitude"]),
            ("name_stats", name_stats, ["name"]),
            ("name", name_tfidf, "name"),
        ],
        remainder="drop",
        # Always dense: a few hundred columns, and every regressor then sees the same type.
        dtype=dtype,
    )
