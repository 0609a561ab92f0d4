"""The reference profile: what the training data's model-input features looked like.

`train` logs one (`reference_profile.json`) on the training run, the run a registered version's
`run_id` points to, so scoring can compare the listings it is given with the rows the serving
model learned from (steps/score/drift.py). A profile is a few hundred numbers, not the data:

- a numeric feature (and a date, as days since 1970-01-01): the training deciles as bin edges and
  the share of training rows in each bin. Bins are right-closed, `(-inf, e0], (e0, e1], ...,
  (e_last, inf)`; repeated deciles (a count that is mostly 1) collapse to one edge, so a value
  that fills several deciles is one bin rather than several empty ones;
- a categorical feature: the shares of its most frequent categories, with every other category
  (and any category never seen in training) in one "other" bucket;
- every feature: the share of missing values, a bucket of its own.

The free text (`name`) is not profiled: its words enter the model through TF-IDF, which no
bucketing summarizes well.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import pandas as pd

PROFILE_FILE = "reference_profile.json"
PROFILE_FORMAT = "reference-profile/1"
# Deciles: ten bins where the data allow, the usual resolution of a PSI (steps/score/drift.py).
NUMERIC_BINS = 10
# Categories beyond the most frequent ones share the "other" bucket (there are ~220
# neighbourhoods; a bucket for each would be mostly noise at a few thousand rows).
MAX_CATEGORIES = 20
# Columns read as dates (days since the epoch) and free text left out of the profile.
DATE_COLUMNS: tuple[str, ...] = ("last_review",)
TEXT_COLUMNS: tuple[str, ...] = ("name",)
# Categorical by meaning even where a file's types say otherwise.
CATEGORICAL_COLUMNS: tuple[str, ...] = ("neighbourhood_group", "neighbourhood", "room_type")

Kind = Literal["numeric", "date", "categorical"]
_EPOCH = pd.Timestamp("1970-01-01")


class ProfileError(ValueError):
    """A reference profile that cannot be read (another format, a broken file)."""


def _shares(counts: np.ndarray, total: int) -> np.ndarray:
    return counts / total if total else np.zeros_like(counts, dtype=float)


def as_days(values: pd.Series) -> np.ndarray:
    """Dates ('YYYY-MM-DD' text or datetimes) as days since 1970-01-01; NaN where missing or
    unparsable, as the model's own date feature reads them."""
    parsed = pd.to_datetime(
        pd.Series(values.astype(object).to_numpy(), dtype=object),
        errors="coerce",
        format="ISO8601",
        utc=True,
    ).dt.tz_localize(None)
    days = (parsed - _EPOCH).dt.total_seconds() / 86400.0
    return days.to_numpy(dtype="float64", na_value=np.nan)


def as_numbers(values: pd.Series) -> np.ndarray:
    """Numbers as float64; anything unparsable, missing or infinite as NaN."""
    numbers = pd.to_numeric(values, errors="coerce").astype("float64")
    array = numbers.to_numpy(dtype="float64", na_value=np.nan)
    return np.where(np.isfinite(array), array, np.nan)


def as_categories(values: pd.Series) -> pd.Series:
    """Categories as text; missing values stay missing."""
    present = values.notna()
    return values[present].astype(str)


@dataclass(frozen=True)
class NumericProfile:
    """Bin edges from the training deciles and the share of training rows in each bucket."""

    kind: Literal["numeric", "date"]
    # Interior edges, strictly increasing; len(edges) + 1 bins.
    edges: tuple[float, ...]
    # Share of all training rows in each bin (missing rows are in missing_share).
    shares: tuple[float, ...]
    missing_share: float

    def values(self, column: pd.Series) -> np.ndarray:
        return as_days(column) if self.kind == "date" else as_numbers(column)

    def expected(self) -> np.ndarray:
        """The reference shares: each bin, then missing."""
        return np.array([*self.shares, self.missing_share], dtype=float)

    def observed(self, column: pd.Series) -> np.ndarray:
        """The share of `column`'s rows in each of the same buckets."""
        values = self.values(column)
        missing = np.isnan(values)
        present = values[~missing]
        # side="left": the number of edges below a value, i.e. right-closed bins.
        bins = np.searchsorted(np.asarray(self.edges, dtype=float), present, side="left")
        counts = np.bincount(bins, minlength=len(self.edges) + 1).astype(float)
        return _shares(np.append(counts, missing.sum()), len(values))

    def to_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "edges": list(self.edges),
            "shares": list(self.shares),
            "missing_share": self.missing_share,
        }


@dataclass(frozen=True)
class CategoricalProfile:
    """The shares of the most frequent training categories, the rest, and missing values."""

    shares: Mapping[str, float]
    other_share: float
    missing_share: float
    kind: Literal["categorical"] = "categorical"

    def expected(self) -> np.ndarray:
        """The reference shares: each category, then other, then missing."""
        return np.array([*self.shares.values(), self.other_share, self.missing_share], dtype=float)

    def observed(self, column: pd.Series) -> np.ndarray:
        """The share of `column`'s rows in each of the same buckets; a category the training
        data never had (or had too rarely to keep) counts as "other"."""
        text = as_categories(column)
        counts = text.value_counts()
        known = np.array([float(counts.get(name, 0)) for name in self.shares], dtype=float)
        other = float(len(text)) - known.sum()
        missing = float(len(column) - len(text))
        return _shares(np.array([*known, other, missing], dtype=float), len(column))

    def to_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "shares": dict(self.shares),
            "other_share": self.other_share,
            "missing_share": self.missing_share,
        }


FeatureProfile = NumericProfile | CategoricalProfile


@dataclass(frozen=True)
class ReferenceProfile:
    """Every profiled feature of one training set, and how many rows it had."""

    rows: int
    features: Mapping[str, FeatureProfile]

    def to_dict(self) -> dict[str, Any]:
        return {
            "format": PROFILE_FORMAT,
            "rows": self.rows,
            "numeric_bins": NUMERIC_BINS,
            "max_categories": MAX_CATEGORIES,
            "features": {name: feature.to_dict() for name, feature in self.features.items()},
        }

    @classmethod
    def from_dict(cls, data: Any) -> ReferenceProfile:
        """Read a profile back; ProfileError when it is not one this code wrote."""
        if not isinstance(data, Mapping) or data.get("format") != PROFILE_FORMAT:
            found = data.get("format") if isinstance(data, Mapping) else type(data).__name__
            raise ProfileError(f"not a reference profile of format {PROFILE_FORMAT} ({found!r})")
        try:
            features = {
                str(name): _feature_from_dict(value) for name, value in data["features"].items()
            }
            return cls(rows=int(data["rows"]), features=features)
        except (KeyError, TypeError, ValueError, AttributeError) as error:
            raise ProfileError(f"a broken reference profile ({error!r})") from error


def _feature_from_dict(data: Mapping[str, Any]) -> FeatureProfile:
    kind = data["kind"]
    if kind in ("numeric", "date"):
        edges = tuple(float(edge) for edge in data["edges"])
        shares = tuple(float(share) for share in data["shares"])
        if len(shares) != len(edges) + 1 or list(edges) != sorted(set(edges)):
            raise ValueError(f"{len(edges)} edges need {len(edges) + 1} increasing bins")
        return NumericProfile(kind, edges, shares, float(data["missing_share"]))
    if kind == "categorical":
        return CategoricalProfile(
            {str(k): float(v) for k, v in data["shares"].items()},
            float(data["other_share"]),
            float(data["missing_share"]),
        )
    raise ValueError(f"unknown feature kind {kind!r}")


def feature_kind(name: str, column: pd.Series) -> Kind | None:
    """How a column is profiled (None: not at all, free text)."""
    if name in TEXT_COLUMNS:
        return None
    if name in DATE_COLUMNS or pd.api.types.is_datetime64_any_dtype(column):
        return "date"
    if name in CATEGORICAL_COLUMNS or not pd.api.types.is_numeric_dtype(column):
        return "categorical"
    return "numeric"


def numeric_profile(
    kind: Literal["numeric", "date"], values: np.ndarray, bins: int = NUMERIC_BINS
) -> NumericProfile:
    """Edges at the deciles of the present values (ties merged), shares over all rows."""
    present = values[~np.isnan(values)]
    if present.size:
        # Observed values as edges (no interpolation between two counts): each decile is the
        # smallest value with at least that share of the rows at or below it.
        cuts = np.quantile(present, np.linspace(0.0, 1.0, bins + 1)[1:-1], method="inverted_cdf")
        edges = tuple(float(edge) for edge in np.unique(cuts))
    else:
        edges = ()
    counts = np.bincount(
        np.searchsorted(np.asarray(edges, dtype=float), present, side="left"),
        minlength=len(edges) + 1,
    ).astype(float)
    shares = _shares(counts, len(values))
    missing = float(len(values) - present.size) / len(values) if len(values) else 0.0
    return NumericProfile(kind, edges, tuple(float(s) for s in shares), missing)


def categorical_profile(
    column: pd.Series, max_categories: int = MAX_CATEGORIES
) -> CategoricalProfile:
    """The shares of the `max_categories` most frequent categories (ties by name), the rest."""
    text = as_categories(column)
    rows = len(column)
    counts = sorted(text.value_counts().items(), key=lambda item: (-int(item[1]), str(item[0])))
    kept = counts[:max_categories]
    shares = {str(name): int(count) / rows for name, count in kept}
    other = (len(text) - sum(int(count) for _, count in kept)) / rows if rows else 0.0
    missing = (rows - len(text)) / rows if rows else 0.0
    return CategoricalProfile(shares, float(other), float(missing))


def build_profile(frame: pd.DataFrame, columns: Sequence[str]) -> ReferenceProfile:
    """The profile of `frame`'s `columns` (the model's raw input columns); text is skipped."""
    features: dict[str, FeatureProfile] = {}
    for name in columns:
        column = frame[name]
        kind = feature_kind(name, column)
        if kind == "categorical":
            features[name] = categorical_profile(column)
        elif kind == "date":
            features[name] = numeric_profile("date", as_days(column))
        elif kind == "numeric":
            features[name] = numeric_profile("numeric", as_numbers(column))
    return ReferenceProfile(rows=len(frame), features=features)
