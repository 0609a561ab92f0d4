"""The parameters of the ingest entry points, get_data and basic_cleaning.

`SourceSettings` and `CleaningSettings` are also the `data` and `cleaning` sections of the
pipeline's configuration (orchestration/config.py composes them); the `*Params` classes add what the
flow feeds from upstream steps or computes itself.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from steps.common.bounds import CleaningBounds
from steps.common.settings import Settings

Compression = Literal["zstd", "snappy", "gzip", "lz4", "brotli", "none"]


class SourceSettings(Settings):
    """Where the listings come from, and the bounds on an untrusted source
    (docs/source_limits.md)."""

    source: str = Field(
        default="demo",
        min_length=1,
        description=(
            "demo (generated listings), a local path to listings.csv[.gz], file://, http(s):// "
            "or oss://BUCKET/PREFIX; credentials only through ${oc.env:NAME} references."
        ),
    )
    demo_rows: int = Field(default=20000, ge=1, description="Rows of the generated demo listings.")
    demo_seed: int = Field(default=42, ge=0, description="Seed of the generated demo listings.")
    compression: Compression = Field(default="zstd", description="Parquet compression of raw_data.")
    http_timeout_s: float = Field(
        default=60, gt=0, description="Network timeout of one HTTP(S) or OSS request (seconds)."
    )
    max_source_mb: float = Field(
        default=4096,
        gt=0,
        le=1_048_576,
        description="Most MB downloaded, and most MB of CSV read after decompression.",
    )
    max_compression_ratio: float = Field(
        default=100,
        gt=1,
        le=100_000,
        description=(
            "How many times a gzip source may expand (a bomb expands ~1000x, listings 3-10x)."
        ),
    )
    download_deadline_s: float = Field(
        default=1200,
        gt=0,
        le=604_800,
        description="Seconds a whole HTTP(S) or OSS download may take, however steadily it drips.",
    )


class GetDataParams(SourceSettings):
    """Entry point `get_data`."""

    source_sha256: str = Field(
        default="",
        description=(
            "The digest the flow fingerprinted the source with (its cache key); empty: none."
        ),
    )
    require_price: bool = Field(
        default=True,
        description=(
            "Refuse a source without a price column (the pipeline trains on it); the score "
            "flow reads listings to price, which may have none."
        ),
    )


class CleaningSettings(CleaningBounds):
    """The cleaning rules: the bounds, and how much of the source they may reject."""

    max_drop_fraction: float = Field(
        default=0.5,
        ge=0,
        le=1,
        description=(
            "Stop at basic_cleaning when the rules drop more than this share of the rows: a "
            "source they mostly reject is the wrong data."
        ),
    )


class BasicCleaningParams(CleaningSettings):
    """Entry point `basic_cleaning`."""

    input_artifact: str = Field(description="URI of get_data's raw_data output.")
