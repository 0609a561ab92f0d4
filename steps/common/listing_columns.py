"""The 16 columns of the public AB_NYC_2019 listing file: one definition for every step."""

from __future__ import annotations

import pyarrow as pa

# Column name -> Arrow type used when a source CSV is parsed. Identifiers stay int64, counts are
# floats where the real file leaves them empty, and text stays text.
LISTING_ARROW_TYPES: dict[str, pa.DataType] = {
    "id": pa.int64(),
    "name": pa.string(),
    "host_id": pa.int64(),
    "host_name": pa.string(),
    "neighbourhood_group": pa.string(),
    "neighbourhood": pa.string(),
    "latitude": pa.float64(),
    "longitude": pa.float64(),
    "room_type": pa.string(),
    "price": pa.float64(),
    "minimum_nights": pa.float64(),
    "number_of_reviews": pa.float64(),
    "last_review": pa.string(),
    "reviews_per_month": pa.float64(),
    "calculated_host_listings_count": pa.float64(),
    "availability_365": pa.float64(),
}

LISTING_COLUMNS: tuple[str, ...] = tuple(LISTING_ARROW_TYPES)

NEIGHBOURHOOD_GROUPS: tuple[str, ...] = (
    "Bronx",
    "Brooklyn",
    "Manhattan",
    "Queens",
    "Staten Island",
)

ROOM_TYPES: tuple[str, ...] = ("Entire home/apt", "Private room", "Shared room")

TARGET = "price"

# Whole-number columns: integers in the raw file and in JSON requests, so a served model's
# signature declares them as integers (MLflow will not narrow int64 to double on its own).
COUNT_COLUMNS: tuple[str, ...] = (
    "minimum_nights",
    "number_of_reviews",
    "calculated_host_listings_count",
    "availability_365",
)
