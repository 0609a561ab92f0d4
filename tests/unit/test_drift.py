"""Reference profiles and the PSI drift measure: what a scoring run reports as drifted."""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest

from steps.ingest.cleaning import clean_listings
from steps.ingest.demo_data import generate_listings
from steps.ingest.schema import CleaningSettings
from steps.score.drift import (
    FeatureDrift,
    drifted_features,
    feature_drift,
    psi,
)
from steps.score.profile import (
    MAX_CATEGORIES,
    CategoricalProfile,
    NumericProfile,
    ProfileError,
    ReferenceProfile,
    build_profile,
    categorical_profile,
    numeric_profile,
)

# The raw columns every price model reads (its input signature; `name` is not profiled).
MODEL_COLUMNS = [
    "room_type",
    "neighbourhood_group",
    "neighbourhood",
    "number_of_reviews",
    "reviews_per_month",
    "latitude",
    "longitude",
    "minimum_nights",
    "calculated_host_listings_count",
    "availability_365",
    "last_review",
    "name",
]
THRESHOLD = 0.25


@pytest.fixture(scope="module")
def training() -> pd.DataFrame:
    """Cleaned demo listings, as train sees them (last_review a datetime)."""
    cleaned, _ = clean_listings(generate_listings(3000, 3), CleaningSettings())
    return cleaned


@pytest.fixture(scope="module")
def profile(training: pd.DataFrame) -> ReferenceProfile:
    return build_profile(training, MODEL_COLUMNS)


def scores_of(profile: ReferenceProfile, frame: pd.DataFrame) -> dict[str, float]:
    return {score.feature: score.score for score in feature_drift(profile, frame, THRESHOLD)}


# --- PSI ---------------------------------------------------------------------------------------


def test_psi_of_identical_shares_is_zero() -> None:
    assert psi([0.2, 0.3, 0.5], [0.2, 0.3, 0.5]) == pytest.approx(0.0, abs=1e-12)


def test_psi_is_the_textbook_sum_and_symmetric() -> None:
    expected, actual = np.array([0.5, 0.5]), np.array([0.8, 0.2])
    textbook = float(np.sum((actual - expected) * np.log(actual / expected)))
    assert psi(expected, actual) == pytest.approx(textbook, rel=1e-3)
    assert psi(expected, actual) == pytest.approx(psi(actual, expected))


def test_psi_of_an_empty_bucket_is_large_but_finite() -> None:
    score = psi([0.5, 0.5, 0.0], [0.0, 0.5, 0.5])
    assert math.isfinite(score) and score > 5


def test_psi_takes_counts_as_well_as_shares() -> None:
    assert psi([20, 30, 50], [2, 3, 5]) == pytest.approx(0.0, abs=1e-12)


@pytest.mark.parametrize(
    ("expected", "actual"),
    [([0.5, 0.5], [1.0]), ([], []), ([0.0, 0.0], [0.5, 0.5]), ([-0.1, 1.1], [0.5, 0.5])],
)
def test_psi_refuses_what_is_not_two_share_vectors(
    expected: list[float], actual: list[float]
) -> None:
    with pytest.raises(ValueError):
        psi(expected, actual)


# --- profiles ----------------------------------------------------------------------------------


def test_profile_covers_the_model_inputs_but_the_text(profile: ReferenceProfile) -> None:
    assert set(profile.features) == set(MODEL_COLUMNS) - {"name"}
    kinds = {name: feature.kind for name, feature in profile.features.items()}
    assert kinds["neighbourhood_group"] == "categorical"
    assert kinds["room_type"] == "categorical"
    assert kinds["last_review"] == "date"
    assert kinds["latitude"] == "numeric"


def test_profile_shares_sum_to_one(profile: ReferenceProfile, training: pd.DataFrame) -> None:
    assert profile.rows == len(training)
    for name, feature in profile.features.items():
        assert feature.expected().sum() == pytest.approx(1.0), name


def test_numeric_profile_is_deciles() -> None:
    values = np.arange(1000, dtype=float)
    feature = numeric_profile("numeric", values)
    assert len(feature.edges) == 9
    assert feature.shares == pytest.approx([0.1] * 10, abs=0.002)
    assert feature.missing_share == 0


def test_tied_deciles_merge_into_one_bin() -> None:
    """A count that is mostly 1 (minimum_nights) is one bin, not several empty ones."""
    values = np.array([1.0] * 700 + [2.0] * 200 + [30.0] * 100)
    feature = numeric_profile("numeric", values)
    assert feature.edges == (1.0, 2.0)
    assert feature.shares == pytest.approx((0.7, 0.2, 0.1))


def test_constant_column_has_one_edge_and_scores_zero_against_itself() -> None:
    column = pd.Series([3.0] * 50)
    feature = numeric_profile("numeric", column.to_numpy())
    assert feature.edges == (3.0,)
    assert feature.shares == (1.0, 0.0)
    assert psi(feature.expected(), feature.observed(column)) == pytest.approx(0.0, abs=1e-12)
    # Any other value falls in the empty bin above it: drift.
    assert psi(feature.expected(), feature.observed(pd.Series([4.0] * 50))) > THRESHOLD


def test_missing_values_are_a_bucket_of_their_own() -> None:
    column = pd.Series([1.0, 2.0, None, None])
    feature = numeric_profile("numeric", np.array([1.0, 2.0, np.nan, np.nan]))
    assert feature.missing_share == 0.5
    assert feature.observed(column)[-1] == 0.5
    all_missing = numeric_profile("numeric", np.array([np.nan, np.nan]))
    assert all_missing.edges == () and all_missing.expected().tolist() == [0.0, 1.0]


def test_dates_are_profiled_as_days_whatever_their_form() -> None:
    dates = pd.Series(pd.to_datetime(["2019-01-01", "2019-06-01", None]))
    text = pd.Series(["2019-01-01", "2019-06-01", None], dtype=object)
    feature = numeric_profile("date", NumericProfile("date", (), (1.0,), 0.0).values(dates))
    assert feature.observed(text).tolist() == pytest.approx(feature.expected().tolist())


def test_categorical_profile_keeps_the_most_frequent_and_buckets_the_rest() -> None:
    names = [f"n{i:03d}" for i in range(MAX_CATEGORIES + 10)]
    column = pd.Series(names * 2 + ["n000"] * 10 + [None] * 5, dtype=object)
    feature = categorical_profile(column)
    assert len(feature.shares) == MAX_CATEGORIES
    assert next(iter(feature.shares)) == "n000"
    assert feature.other_share > 0 and feature.missing_share == pytest.approx(5 / len(column))
    assert feature.expected().sum() == pytest.approx(1.0)


def test_profile_round_trips_through_json(profile: ReferenceProfile) -> None:
    again = ReferenceProfile.from_dict(json.loads(json.dumps(profile.to_dict())))
    assert again == profile


@pytest.mark.parametrize(
    "data",
    [
        {"format": "something-else"},
        [],
        {"format": "reference-profile/1", "rows": 3},
        {
            "format": "reference-profile/1",
            "rows": 3,
            "features": {"x": {"kind": "numeric", "edges": [2, 1], "shares": [1, 0, 0]}},
        },
    ],
)
def test_a_broken_profile_is_refused(data: object) -> None:
    with pytest.raises(ProfileError):
        ReferenceProfile.from_dict(data)


# --- drift of listings against a profile -------------------------------------------------------


def test_identical_data_does_not_drift(profile: ReferenceProfile, training: pd.DataFrame) -> None:
    scores = scores_of(profile, training)
    assert max(scores.values()) == pytest.approx(0.0, abs=1e-9)


def test_raw_listings_from_the_same_source_do_not_drift(profile: ReferenceProfile) -> None:
    """Another draw of the same listings, raw (dates as text, counts as integers, a little
    dirt): sampling noise only, well under the threshold."""
    raw = generate_listings(2000, 99)
    scores = scores_of(profile, raw)
    assert max(scores.values()) < 0.1, scores


def test_listings_all_in_one_borough_drift(profile: ReferenceProfile) -> None:
    shifted = generate_listings(2000, 5)
    shifted["neighbourhood_group"] = "Staten Island"
    shifted["price"] = shifted["price"] * 3
    drift = feature_drift(profile, shifted, THRESHOLD)
    assert drifted_features(drift)[0] == "neighbourhood_group"
    assert all(score.score < THRESHOLD for score in drift if score.feature == "latitude")


def test_shifted_numbers_drift(profile: ReferenceProfile) -> None:
    shifted = generate_listings(2000, 5)
    shifted["availability_365"] = 365
    shifted["minimum_nights"] = shifted["minimum_nights"] * 10
    assert {"availability_365", "minimum_nights"} <= set(
        drifted_features(feature_drift(profile, shifted, THRESHOLD))
    )


def test_unseen_categories_count_as_drift(profile: ReferenceProfile) -> None:
    """A room type training never saw goes to the "other" bucket, empty in training."""
    feature = profile.features["room_type"]
    assert isinstance(feature, CategoricalProfile) and feature.other_share == 0
    unseen = generate_listings(500, 5)
    unseen["room_type"] = "Hotel room"
    assert scores_of(profile, unseen)["room_type"] > THRESHOLD


def test_empty_bins_do_not_make_the_score_infinite(profile: ReferenceProfile) -> None:
    """Every listing in one latitude bin: the other nine are empty, the score stays finite."""
    narrow = generate_listings(500, 5)
    narrow["latitude"] = 40.5
    score = scores_of(profile, narrow)["latitude"]
    assert math.isfinite(score) and score > THRESHOLD


def test_a_feature_the_listings_lack_counts_as_all_missing(profile: ReferenceProfile) -> None:
    listings = generate_listings(200, 5).drop(columns=["reviews_per_month"])
    assert scores_of(profile, listings)["reviews_per_month"] > THRESHOLD


def test_drift_needs_rows(profile: ReferenceProfile) -> None:
    with pytest.raises(ValueError):
        feature_drift(profile, generate_listings(50, 5).iloc[:0], THRESHOLD)


def test_drifted_features_are_those_over_the_threshold_largest_first() -> None:
    scores = [
        FeatureDrift("a", 0.3, 0.25),
        FeatureDrift("b", 0.25, 0.25),
        FeatureDrift("c", 2, 0.25),
    ]
    assert drifted_features(scores) == ["c", "a"]
    assert scores[0].as_dict() == {
        "feature": "a",
        "measure": "psi",
        "score": 0.3,
        "threshold": 0.25,
        "drifted": True,
    }
