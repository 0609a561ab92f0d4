"""The demo generator: deterministic, contract-shaped, learnable, and a little dirty."""

from __future__ import annotations

import csv
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from steps.common.errors import ConfigurationError
from steps.common.listing_columns import LISTING_COLUMNS, NEIGHBOURHOOD_GROUPS, ROOM_TYPES
from steps.ingest.demo_data import generate_listings, write_demo_csv


@pytest.fixture(scope="module")
def listings() -> pd.DataFrame:
    return generate_listings(5_000, 7)


def test_same_seed_gives_identical_frame() -> None:
    pd.testing.assert_frame_equal(generate_listings(800, 3), generate_listings(800, 3))


def test_different_seed_gives_different_frame() -> None:
    assert not generate_listings(200, 1).equals(generate_listings(200, 2))


def test_columns_are_the_contract_in_order(listings: pd.DataFrame) -> None:
    assert tuple(listings.columns) == LISTING_COLUMNS
    assert len(listings) == 5_000


def test_categories_are_known_values(listings: pd.DataFrame) -> None:
    assert set(listings["neighbourhood_group"]) <= set(NEIGHBOURHOOD_GROUPS)
    assert set(listings["room_type"]) == set(ROOM_TYPES)
    assert listings["neighbourhood"].notna().all()


def test_borough_shares_are_realistic(listings: pd.DataFrame) -> None:
    shares = listings["neighbourhood_group"].value_counts(normalize=True)
    assert shares["Manhattan"] == pytest.approx(0.44, abs=0.03)
    assert shares["Brooklyn"] == pytest.approx(0.41, abs=0.03)
    assert shares["Queens"] == pytest.approx(0.12, abs=0.02)
    assert shares["Bronx"] < 0.05
    assert shares["Staten Island"] < 0.03


def test_prices_follow_borough_and_room_type(listings: pd.DataFrame) -> None:
    sane = listings[listings["price"].between(10, 1_000)]
    by_borough = sane[sane["room_type"] == "Entire home/apt"].groupby("neighbourhood_group")
    medians = by_borough["price"].median()
    assert medians["Manhattan"] > medians["Brooklyn"] > medians["Queens"]
    assert medians["Queens"] > max(medians["Bronx"], medians["Staten Island"]) * 0.95
    by_room = sane.groupby("room_type")["price"].median()
    assert by_room["Entire home/apt"] > by_room["Private room"] > by_room["Shared room"]


def test_name_words_carry_price_signal(listings: pd.DataFrame) -> None:
    sane = listings[listings["price"].between(10, 1_000)]
    luxury = sane[sane["name"].str.contains("Luxury", case=False)]["price"].median()
    budget = sane[sane["name"].str.contains("Budget")]["price"].median()
    assert luxury > 1.5 * budget


def test_names_have_commas_quotes_and_line_breaks(listings: pd.DataFrame) -> None:
    names = listings["name"]
    assert names.str.contains(",", regex=False).any()
    assert names.str.contains('"', regex=False).any()
    assert names.str.contains("\n", regex=False).any()


def test_review_fields_empty_together(listings: pd.DataFrame) -> None:
    empty = listings["last_review"].isna()
    assert empty.mean() == pytest.approx(0.20, abs=0.03)
    assert (empty == listings["reviews_per_month"].isna()).all()
    assert (listings.loc[empty, "number_of_reviews"] == 0).all()
    dates = pd.to_datetime(listings.loc[~empty, "last_review"], format="%Y-%m-%d")
    assert dates.notna().all()


def test_positions_inside_nyc_except_a_few(listings: pd.DataFrame) -> None:
    inside = listings["latitude"].between(40.50, 40.92) & listings["longitude"].between(
        -74.25, -73.50
    )
    outside = int((~inside).sum())
    assert 1 <= outside <= 10


def test_a_little_dirt(listings: pd.DataFrame) -> None:
    bad_price = (listings["price"] == 0) | (listings["price"] >= 5_000)
    assert 10 <= int(bad_price.sum()) <= 40
    assert 1 <= int(listings["id"].duplicated().sum()) <= 5


def test_model_can_learn_prices(listings: pd.DataFrame) -> None:
    """A plain linear model on borough, room type and name words already explains much of price."""
    from sklearn.linear_model import LinearRegression
    from sklearn.model_selection import train_test_split

    sane = listings[listings["price"].between(10, 350)]
    features = pd.get_dummies(sane[["neighbourhood_group", "room_type"]], dtype=float)
    for word in ("Luxury", "Budget", "Affordable", "Cozy", "Studio", "Loft", "Penthouse", "Duplex"):
        features[word] = sane["name"].str.contains(word, case=False).astype(float)
    features["long_stay"] = (sane["minimum_nights"] >= 30).astype(float)
    x_train, x_test, y_train, y_test = train_test_split(
        features, sane["price"], test_size=0.25, random_state=0
    )
    model = LinearRegression().fit(x_train, y_train)
    assert model.score(x_test, y_test) > 0.4


@pytest.mark.parametrize("bad", [0, -5])
def test_rejects_non_positive_rows(bad: int) -> None:
    with pytest.raises(ConfigurationError, match="demo_rows"):
        generate_listings(bad, 1)


def test_tiny_frames_work() -> None:
    frame = generate_listings(3, 0)
    assert len(frame) == 3
    assert tuple(frame.columns) == LISTING_COLUMNS


def test_write_demo_csv_round_trips_and_is_fast(tmp_path: Path) -> None:
    path = tmp_path / "sub" / "demo.csv"
    start = time.perf_counter()
    assert write_demo_csv(path, 20_000, 42) == path
    assert time.perf_counter() - start < 1.0
    with path.open(newline="", encoding="utf-8") as handle:
        header = next(csv.reader(handle))
    assert tuple(header) == LISTING_COLUMNS
    back = pd.read_csv(path)
    expected = generate_listings(20_000, 42)
    assert len(back) == 20_000
    assert back["name"].tolist() == expected["name"].tolist()
    assert np.allclose(back["latitude"], expected["latitude"])


def test_write_demo_csv_in_blocks_keeps_the_first_block_and_unique_ids(tmp_path: Path) -> None:
    path = write_demo_csv(tmp_path / "demo.csv", 2_500, 42, block_rows=1_000)
    back = pd.read_csv(path)
    assert len(back) == 2_500
    first = generate_listings(1_000, 42)
    assert back["name"].head(1_000).tolist() == first["name"].tolist()
    # Only each block's deliberate duplicates repeat an id; no id is shared across blocks.
    blocks = [set(back["id"].iloc[i : i + 1_000]) for i in range(0, 2_500, 1_000)]
    assert all(not (a & b) for i, a in enumerate(blocks) for b in blocks[i + 1 :])
    assert back["id"].duplicated().sum() <= 3 * round(1_000 * 0.0003)
