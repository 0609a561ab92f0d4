"""Scoring the real 20,000-row NYC sample with a model trained on it, as the score step does:
every listing priced (the ones cleaning would drop too), and no feature drifted from its own
training split."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sklearn.pipeline import Pipeline

from orchestration.config import PipelineConfig, load_config
from steps.common.listing_columns import TARGET
from steps.common.listing_rows import raw_rows
from steps.ingest.cleaning import clean_listings
from steps.ingest.csv_to_parquet import convert_csv_to_parquet
from steps.score.drift import drifted_features, feature_drift
from steps.score.profile import ReferenceProfile, build_profile
from steps.score.score import predict
from steps.split.splitting import split_listings
from steps.train.model_factory import build_model
from steps.train.price_model import input_columns
from steps.validate.listing_checks import build_scoring_schema, validate_scoring_input


@pytest.fixture(scope="module")
def config() -> PipelineConfig:
    return load_config([])


@pytest.fixture(scope="module")
def raw(real_sample_path: Path, tmp_path_factory: pytest.TempPathFactory) -> pd.DataFrame:
    """The sample as get_data hands it on, with and without the price column."""
    dst = tmp_path_factory.mktemp("real-score") / "raw.parquet"
    convert_csv_to_parquet(real_sample_path, dst)
    return pd.read_parquet(dst)


@pytest.fixture(scope="module")
def trained(raw: pd.DataFrame, config: PipelineConfig) -> tuple[Pipeline, ReferenceProfile]:
    """The pipeline's treatment: cleaned, split, the default model fitted on the train split,
    and the profile train logs beside it."""
    cleaned, _ = clean_listings(raw, config.cleaning)
    train, _, _ = split_listings(cleaned, **config.split.model_dump())
    model = build_model(config.model)
    columns = input_columns(model)
    model.fit(raw_rows(train, columns), train[TARGET].to_numpy(dtype=float))
    return model, build_profile(train, columns)


def test_every_real_listing_gets_a_price(
    raw: pd.DataFrame, trained: tuple[Pipeline, ReferenceProfile]
) -> None:
    model, _ = trained
    columns = input_columns(model)
    listings = validate_scoring_input(raw.drop(columns=[TARGET]), build_scoring_schema(columns))
    predictions = predict(model, listings, columns, "1")
    assert len(predictions) == len(raw) == 20_000
    assert predictions["id"].tolist() == raw["id"].tolist()
    assert np.isfinite(predictions["predicted_price"]).all()
    assert (predictions["model_version"] == 1).all()


def test_the_sample_does_not_drift_from_its_own_training_split(
    raw: pd.DataFrame, trained: tuple[Pipeline, ReferenceProfile]
) -> None:
    model, profile = trained
    listings = validate_scoring_input(raw, build_scoring_schema(input_columns(model)))
    scores = feature_drift(profile, listings, threshold=0.25)
    assert drifted_features(scores) == [], {score.feature: score.score for score in scores}
    assert max(score.score for score in scores) < 0.1
