"""Ingest, clean, validate and split the real 20,000-row NYC sample (and the demo data)."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from orchestration.config import PipelineConfig, load_config
from steps.ingest.cleaning import clean_listings
from steps.ingest.csv_to_parquet import convert_csv_to_parquet
from steps.ingest.demo_data import write_demo_csv
from steps.split.splitting import split_listings
from steps.validate.listing_checks import build_listing_schema, validate_listings

REAL_SAMPLE_SHA256 = "5c92c8f30e288f2c696c00882c169d9e1dc8ebbf1cf83d17bd7ee903a7148b4d"


@pytest.fixture(scope="module")
def config() -> PipelineConfig:
    """The project configuration as the pipeline composes it (schema defaults plus conf/)."""
    return load_config([])


def _clean_and_validate(raw: Path, tmp_path: Path, config: PipelineConfig) -> pd.DataFrame:
    """The pipeline's path for a source: Parquet, then cleaning, then the data contract."""
    dst = tmp_path / "raw.parquet"
    convert_csv_to_parquet(raw, dst, compression=config.data.compression)
    cleaned, stats = clean_listings(pd.read_parquet(dst), config.cleaning)
    assert stats.rows_out > 0.9 * stats.rows_in
    assert stats.rows_out >= (1 - config.cleaning.max_drop_fraction) * stats.rows_in
    check = config.data_check
    schema = build_listing_schema(
        min_rows=check.min_rows, max_rows=check.max_rows, bounds=config.cleaning
    )
    report = validate_listings(
        cleaned,
        schema,
        {str(group): share for group, share in check.reference_distribution.items()},
        check.kl_threshold,
    )
    assert report.kl_divergence < check.kl_threshold
    return cleaned


@pytest.fixture(scope="module")
def real_raw(real_sample_path: Path, tmp_path_factory: pytest.TempPathFactory) -> pd.DataFrame:
    dst = tmp_path_factory.mktemp("real") / "raw.parquet"
    stats = convert_csv_to_parquet(real_sample_path, dst)
    assert stats.rows == 20_000
    assert stats.input_sha256 == REAL_SAMPLE_SHA256
    return pd.read_parquet(dst)


def test_real_sample_converts_to_all_rows(real_raw: pd.DataFrame) -> None:
    assert len(real_raw) == 20_000
    assert real_raw["id"].is_unique
    assert real_raw["price"].min() == 0
    assert real_raw["price"].max() == 10_000
    assert real_raw["last_review"].isna().any()
    assert real_raw["name"].str.contains(",", regex=False).any()


def test_real_sample_passes_cleaning_and_validation(
    real_sample_path: Path, tmp_path: Path, config: PipelineConfig
) -> None:
    cleaned = _clean_and_validate(real_sample_path, tmp_path, config)
    assert cleaned["price"].between(10, 350).all()


def test_real_sample_split_is_stratified(real_raw: pd.DataFrame, config: PipelineConfig) -> None:
    cleaned, _ = clean_listings(real_raw, config.cleaning)
    split = config.split.model_dump()
    parts = split_listings(cleaned, **split)
    assert sum(len(p) for p in parts) == len(cleaned)
    column = split["stratify_by"]
    overall = cleaned[column].value_counts(normalize=True)
    for part in parts:
        shares = part[column].value_counts(normalize=True)
        for group, share in overall.items():
            assert abs(shares.get(group, 0.0) - share) < 0.01


def test_demo_data_passes_cleaning_and_validation(tmp_path: Path, config: PipelineConfig) -> None:
    source = write_demo_csv(tmp_path / "demo.csv", config.data.demo_rows, config.data.demo_seed)
    cleaned = _clean_and_validate(source, tmp_path, config)
    assert len(cleaned) >= config.data_check.min_rows
