"""A seeded generator of realistic NYC listings, so the pipeline runs end to end without a download.

The frame has the 16 AB_NYC_2019 columns in contract order, with the real file's quirks (commas,
quotes and line breaks in names, empty review fields) and a little dirt that the cleaning step must
remove (zero and extreme prices, a few points outside the NYC box, a handful of duplicated ids).
Prices follow borough, neighbourhood, room type and name words, so a model can learn them.
"""

from __future__ import annotations

import logging
from datetime import date
from pathlib import Path

import numpy as np
import pandas as pd

from steps.common.errors import ConfigurationError
from steps.common.listing_columns import LISTING_COLUMNS

logger = logging.getLogger(__name__)

# Borough -> (share of listings, median nightly price of an entire home).
BOROUGHS: dict[str, tuple[float, float]] = {
    "Manhattan": (0.44, 200.0),
    "Brooklyn": (0.41, 150.0),
    "Queens": (0.12, 115.0),
    "Bronx": (0.02, 95.0),
    "Staten Island": (0.01, 100.0),
}

# Borough -> neighbourhoods as (name, latitude, longitude, price factor), most popular first.
NEIGHBOURHOODS: dict[str, tuple[tuple[str, float, float, float], ...]] = {
    "Manhattan": (
        ("Harlem", 40.8110, -73.9460, 0.75),
        ("Upper West Side", 40.7870, -73.9750, 1.00),
        ("Hell's Kitchen", 40.7630, -73.9900, 1.05),
        ("East Village", 40.7270, -73.9840, 1.00),
        ("Upper East Side", 40.7740, -73.9560, 0.95),
        ("Midtown", 40.7560, -73.9840, 1.15),
        ("Chelsea", 40.7450, -74.0000, 1.20),
        ("Lower East Side", 40.7160, -73.9860, 0.95),
        ("West Village", 40.7350, -74.0040, 1.30),
        ("Financial District", 40.7080, -74.0090, 1.15),
        ("Tribeca", 40.7160, -74.0080, 1.50),
    ),
    "Brooklyn": (
        ("Williamsburg", 40.7140, -73.9570, 1.10),
        ("Bedford-Stuyvesant", 40.6860, -73.9340, 0.80),
        ("Bushwick", 40.6950, -73.9180, 0.75),
        ("Crown Heights", 40.6720, -73.9450, 0.80),
        ("Greenpoint", 40.7300, -73.9510, 1.05),
        ("Park Slope", 40.6720, -73.9790, 1.15),
        ("Flatbush", 40.6460, -73.9610, 0.70),
        ("Brooklyn Heights", 40.6960, -73.9940, 1.30),
    ),
    "Queens": (
        ("Astoria", 40.7640, -73.9230, 1.00),
        ("Long Island City", 40.7460, -73.9480, 1.20),
        ("Flushing", 40.7580, -73.8300, 0.85),
        ("Ridgewood", 40.7040, -73.9030, 0.85),
        ("Sunnyside", 40.7430, -73.9200, 0.90),
        ("Jamaica", 40.7000, -73.8000, 0.80),
    ),
    "Bronx": (
        ("Mott Haven", 40.8090, -73.9230, 1.00),
        ("Concourse", 40.8320, -73.9190, 0.95),
        ("Fordham", 40.8610, -73.8900, 0.90),
        ("Kingsbridge", 40.8730, -73.9020, 0.95),
        ("Riverdale", 40.8900, -73.9120, 1.20),
    ),
    "Staten Island": (
        ("St. George", 40.6440, -74.0800, 1.00),
        ("Tompkinsville", 40.6330, -74.0870, 0.95),
        ("Stapleton", 40.6270, -74.0770, 0.95),
        ("Great Kills", 40.5540, -74.1510, 1.10),
    ),
}

ROOM_TYPE_FACTORS: dict[str, float] = {
    "Entire home/apt": 1.0,
    "Private room": 0.45,
    "Shared room": 0.30,
}

# Borough -> shares of (entire home, private room, shared room), as in the public file.
ROOM_TYPE_SHARES: dict[str, tuple[float, float, float]] = {
    "Manhattan": (0.60, 0.37, 0.03),
    "Brooklyn": (0.47, 0.51, 0.02),
    "Queens": (0.37, 0.59, 0.04),
    "Bronx": (0.35, 0.60, 0.05),
    "Staten Island": (0.45, 0.52, 0.03),
}

# Words of a listing's name with the price factor they carry: the name is a real signal.
ADJECTIVES: tuple[tuple[str, float], ...] = (
    ("Cozy", 0.85),
    ("Charming", 1.00),
    ("Sunny", 1.05),
    ("Spacious", 1.20),
    ("Modern", 1.10),
    ("Quiet", 0.95),
    ("Luxury", 1.45),
    ("Budget", 0.70),
    ("Affordable", 0.75),
    ("Bright", 1.00),
)
UNITS: dict[str, tuple[tuple[str, float], ...]] = {
    "Entire home/apt": (
        ("Apartment", 1.00),
        ("Studio", 0.85),
        ("1BR", 1.00),
        ("Loft", 1.25),
        ("2BR Apartment", 1.35),
        ("3BR Duplex", 1.70),
        ("Penthouse", 2.00),
    ),
    "Private room": (("Private Room", 1.00), ("Bedroom", 1.00), ("Room", 0.90)),
    "Shared room": (("Shared Room", 1.00), ("Bunk Bed", 0.85), ("Couch", 0.80)),
}
UNIT_WEIGHTS: dict[str, tuple[float, ...]] = {
    "Entire home/apt": (0.30, 0.20, 0.18, 0.12, 0.12, 0.06, 0.02),
    "Private room": (0.45, 0.35, 0.20),
    "Shared room": (0.50, 0.30, 0.20),
}
HOST_NAMES: tuple[str, ...] = (
    "Michael",
    "David",
    "John",
    "Alex",
    "Sarah",
    "Maria",
    "Daniel",
    "Jessica",
    "Anna",
    "Chris",
    "Laura",
    "Kevin",
    "Sonder (NYC)",
    "Blueground",
    "Iris",
    "Mei",
    "Jean-Pierre",
    "O'Brien",
)
MINIMUM_NIGHTS: tuple[int, ...] = (1, 2, 3, 4, 5, 7, 14, 30, 60)
MINIMUM_NIGHTS_WEIGHTS: tuple[float, ...] = (0.26, 0.24, 0.16, 0.07, 0.07, 0.06, 0.04, 0.08, 0.02)

FIRST_REVIEW_DAY = date(2012, 1, 1)
LAST_REVIEW_DAY = date(2019, 7, 8)
EMPTY_REVIEW_SHARE = 0.20
PRICE_NOISE_SIGMA = 0.28
POSITION_SD_DEG = 0.008
# The interior of the cleaning step's NYC box, so only the deliberate dirt falls outside it.
LAT_RANGE = (40.505, 40.915)
LON_RANGE = (-74.245, -73.705)


def _pick(rng: np.random.Generator, options: int, weights: np.ndarray, size: int) -> np.ndarray:
    """Index draws from normalised weights (one vectorised call instead of a Python loop)."""
    return rng.choice(options, size=size, p=weights / weights.sum())


def generate_listings(n_rows: int, seed: int) -> pd.DataFrame:
    """Generate `n_rows` realistic listings; the same seed always gives the identical frame."""
    if isinstance(n_rows, bool) or not isinstance(n_rows, int) or n_rows < 1:
        raise ConfigurationError(f"data.demo_rows must be a positive integer, got {n_rows!r}")
    rng = np.random.default_rng(seed)
    n = n_rows

    borough_names = list(BOROUGHS)
    borough_shares = np.array([BOROUGHS[b][0] for b in borough_names])
    borough_idx = _pick(rng, len(borough_names), borough_shares, n)
    boroughs = np.array(borough_names, dtype=object)[borough_idx]

    neighbourhood = np.empty(n, dtype=object)
    lat = np.empty(n)
    lon = np.empty(n)
    price_factor = np.empty(n)
    room_type = np.empty(n, dtype=object)
    base_price = np.empty(n)
    room_names = list(ROOM_TYPE_FACTORS)
    for b_i, borough in enumerate(borough_names):
        mask = borough_idx == b_i
        count = int(mask.sum())
        if count == 0:
            continue
        places = NEIGHBOURHOODS[borough]
        popularity = 1.0 / np.sqrt(np.arange(1, len(places) + 1))
        place_idx = _pick(rng, len(places), popularity, count)
        neighbourhood[mask] = np.array([p[0] for p in places], dtype=object)[place_idx]
        lat[mask] = np.array([p[1] for p in places])[place_idx]
        lon[mask] = np.array([p[2] for p in places])[place_idx]
        price_factor[mask] = np.array([p[3] for p in places])[place_idx]
        room_idx = _pick(rng, len(room_names), np.array(ROOM_TYPE_SHARES[borough]), count)
        room_type[mask] = np.array(room_names, dtype=object)[room_idx]
        base_price[mask] = BOROUGHS[borough][1]

    lat = np.clip(lat + rng.normal(0.0, POSITION_SD_DEG, n), *LAT_RANGE).round(5)
    lon = np.clip(lon + rng.normal(0.0, POSITION_SD_DEG, n), *LON_RANGE).round(5)

    # Name words: an adjective and a unit word, both carrying a price factor.
    adj_idx = rng.integers(0, len(ADJECTIVES), n)
    adjectives = np.array([a[0] for a in ADJECTIVES], dtype=object)[adj_idx]
    name_factor = np.array([a[1] for a in ADJECTIVES])[adj_idx]
    units = np.empty(n, dtype=object)
    for room in room_names:
        mask = room_type == room
        count = int(mask.sum())
        if count == 0:
            continue
        options = UNITS[room]
        unit_idx = _pick(rng, len(options), np.array(UNIT_WEIGHTS[room]), count)
        units[mask] = np.array([u[0] for u in options], dtype=object)[unit_idx]
        name_factor[mask] *= np.array([u[1] for u in options])[unit_idx]
    names = _build_names(rng, adjectives, units, neighbourhood)

    minimum_nights = np.array(MINIMUM_NIGHTS)[
        _pick(rng, len(MINIMUM_NIGHTS), np.array(MINIMUM_NIGHTS_WEIGHTS), n)
    ]
    never_available = rng.random(n) < 0.35
    availability = np.where(never_available, 0, rng.integers(1, 366, n))

    room_factor = np.array([ROOM_TYPE_FACTORS[r] for r in room_type])
    stay_factor = np.where(minimum_nights >= 30, 0.80, 1.0) * np.where(
        availability > 300, 1.10, 1.0
    )
    price = base_price * price_factor * room_factor * name_factor * stay_factor
    price = np.maximum(np.round(price * rng.lognormal(0.0, PRICE_NOISE_SIGMA, n)), 15).astype(
        np.int64
    )

    no_reviews = rng.random(n) < EMPTY_REVIEW_SHARE
    number_of_reviews = np.where(no_reviews, 0, 1 + rng.geometric(1 / 25, n))
    span_days = (LAST_REVIEW_DAY - FIRST_REVIEW_DAY).days
    # Skewed towards recent dates, as on the real site.
    offsets = np.round(span_days * (1.0 - rng.beta(1.0, 4.0, n))).astype(np.int64)
    days = np.datetime64(FIRST_REVIEW_DAY.isoformat()) + offsets.astype("timedelta64[D]")
    last_review = pd.Series(np.datetime_as_string(days, unit="D"), dtype="str")
    last_review[no_reviews] = None
    months_listed = rng.uniform(1.0, 80.0, n)
    reviews_per_month = np.maximum(number_of_reviews / months_listed, 0.01).round(2)
    reviews_per_month = np.where(no_reviews, np.nan, reviews_per_month)

    host_pool = rng.integers(2_000, 275_000_000, max(1, int(n * 0.85)))
    host_weights = 1.0 / np.arange(1, host_pool.size + 1) ** 0.6
    host_id = host_pool[_pick(rng, host_pool.size, host_weights, n)]
    _, host_inverse, host_counts = np.unique(host_id, return_inverse=True, return_counts=True)
    host_listings = host_counts[host_inverse]
    host_name = np.array(HOST_NAMES, dtype=object)[host_id % len(HOST_NAMES)]

    ids = 2_539 + np.cumsum(rng.integers(1, 2_000, n))
    ids = rng.permutation(ids)

    frame = pd.DataFrame(
        {
            "id": ids.astype(np.int64),
            "name": pd.Series(names, dtype="str"),
            "host_id": host_id.astype(np.int64),
            "host_name": pd.Series(host_name, dtype="str"),
            "neighbourhood_group": pd.Series(boroughs, dtype="str"),
            "neighbourhood": pd.Series(neighbourhood, dtype="str"),
            "latitude": lat,
            "longitude": lon,
            "room_type": pd.Series(room_type, dtype="str"),
            "price": price,
            "minimum_nights": minimum_nights.astype(np.int64),
            "number_of_reviews": number_of_reviews.astype(np.int64),
            "last_review": last_review,
            "reviews_per_month": reviews_per_month,
            "calculated_host_listings_count": host_listings.astype(np.int64),
            "availability_365": availability.astype(np.int64),
        },
        columns=list(LISTING_COLUMNS),
    )
    _add_dirt(rng, frame)
    return frame


def _build_names(
    rng: np.random.Generator, adjectives: np.ndarray, units: np.ndarray, places: np.ndarray
) -> list[str]:
    """Listing names in a few styles, with commas, quotes or a line break, like the real file."""
    style = _pick(rng, 5, np.array([0.55, 0.25, 0.12, 0.06, 0.02]), adjectives.size)
    names: list[str] = []
    for s, adj, unit, place in zip(style, adjectives, units, places, strict=True):
        if s == 0:
            names.append(f"{adj} {unit} in {place}")
        elif s == 1:
            names.append(f"{adj} {unit}, {place}")
        elif s == 2:
            names.append(f'"{adj}" {unit} near {place}, NYC')
        elif s == 3:
            names.append(f"{adj.upper()} {unit} - 5 min to subway")
        else:
            names.append(f"{adj} {unit}\n{place}")
    return names


def _add_dirt(rng: np.random.Generator, frame: pd.DataFrame) -> None:
    """Spoil a few rows in place as real exports are spoiled; the cleaning step removes them."""
    n = len(frame)
    n_bad_price = round(n * 0.005)
    n_outside = round(n * 0.0005)
    n_duplicates = round(n * 0.0003)
    total = n_bad_price + n_outside + n_duplicates
    if total == 0 or total >= n:
        return
    rows = rng.choice(n, size=total, replace=False)
    bad_price, outside, duplicates = np.split(rows, [n_bad_price, n_bad_price + n_outside])

    extreme = rng.random(bad_price.size) < 0.5
    prices = np.where(extreme, rng.integers(5_000, 10_001, bad_price.size), 0)
    frame.loc[bad_price, "price"] = prices

    north = rng.random(outside.size) < 0.5
    n_north = int(north.sum())
    frame.loc[outside[north], "latitude"] = rng.uniform(40.93, 40.96, n_north).round(5)
    west = rng.uniform(-74.30, -74.26, outside.size - n_north).round(5)
    frame.loc[outside[~north], "longitude"] = west

    others = np.setdiff1d(np.arange(n), duplicates)
    sources = rng.choice(others, size=duplicates.size, replace=False)
    frame.loc[duplicates, "id"] = frame.loc[sources, "id"].to_numpy()
    logger.debug(
        "demo dirt: %d bad prices, %d outside the box, %d duplicated ids",
        bad_price.size,
        outside.size,
        duplicates.size,
    )


# Rows generated and written at a time: the CSV of any size is written with the memory of one
# block. Up to this many rows the file is exactly generate_listings(n_rows, seed).
DEMO_BLOCK_ROWS = 250_000


def _block_seed(seed: int, block: int) -> int:
    """The seed of block `block` after the first (which uses `seed` itself)."""
    return int(np.random.SeedSequence([seed, block]).generate_state(1)[0])


def write_demo_csv(path: Path, n_rows: int, seed: int, block_rows: int = DEMO_BLOCK_ROWS) -> Path:
    """Write generated listings as a standard CSV (minimal quoting), shaped like the public file.

    Written `block_rows` at a time: the first block is generate_listings(block, seed), each
    later one generated with a seed drawn from (seed, block) and its ids moved past every id
    before it, so ids stay unique across blocks (but for the duplicates each block's dirt adds).
    """
    if isinstance(n_rows, bool) or not isinstance(n_rows, int) or n_rows < 1:
        raise ConfigurationError(f"data.demo_rows must be a positive integer, got {n_rows!r}")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    written = 0
    last_id = 0
    with path.open("w", encoding="utf-8", newline="") as handle:
        for block in range(0, (n_rows + block_rows - 1) // block_rows):
            rows = min(block_rows, n_rows - written)
            frame = generate_listings(rows, seed if block == 0 else _block_seed(seed, block))
            if block:
                frame["id"] += last_id
            last_id = int(frame["id"].max())
            frame.to_csv(handle, index=False, header=block == 0)
            written += rows
    logger.info("wrote %d demo listings (seed %d) to %s", written, seed, path)
    return path
