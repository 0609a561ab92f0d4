"""build_model turns each conf/model config into a raw-rows-in, price-out pipeline, or says why."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import yaml
from sklearn.compose import TransformedTargetRegressor
from sklearn.ensemble import HistGradientBoostingRegressor, RandomForestRegressor
from sklearn.pipeline import Pipeline

from steps.common.errors import ConfigurationError
from steps.common.listing_columns import LISTING_COLUMNS, NEIGHBOURHOOD_GROUPS, ROOM_TYPES
from steps.train.model_factory import build_model, model_settings
from steps.train.model_schemas import MODEL_NAMES, TorchLassoSchema
from steps.train.torch_lasso import TorchLasso

CONF_DIR = Path(__file__).resolve().parents[2] / "conf" / "model"

SMALL_CONFIGS: dict[str, dict[str, Any]] = {
    "torch_lasso": {
        "name": "torch_lasso",
        "alpha": 0.001,
        "max_iter": 2000,
        "tol": 1e-6,
        "device": "cpu",
        "log_target": True,
        "tfidf_max_features": 20,
    },
    "random_forest": {
        "name": "random_forest",
        "n_estimators": 20,
        "max_depth": 8,
        "min_samples_split": 4,
        "min_samples_leaf": 3,
        "max_features": 0.5,
        "n_jobs": 1,
        "random_state": 42,
        "log_target": False,
        "tfidf_max_features": 5,
    },
    "hist_gradient_boosting": {
        "name": "hist_gradient_boosting",
        "learning_rate": 0.1,
        "max_iter": 60,
        "max_leaf_nodes": 15,
        "max_depth": None,
        "min_samples_leaf": 10,
        "l2_regularization": 0.0,
        "max_features": 1.0,
        "early_stopping": False,
        "random_state": 42,
        "log_target": True,
        "tfidf_max_features": 20,
    },
}
EXPECTED_REGRESSOR: dict[str, type] = {
    "torch_lasso": TorchLasso,
    "random_forest": RandomForestRegressor,
    "hist_gradient_boosting": HistGradientBoostingRegressor,
}


def _listings(n_rows: int, seed: int) -> pd.DataFrame:
    """Synthetic raw listings whose price follows borough, room type, and a word in the name."""
    rng = np.random.default_rng(seed)
    groups = rng.choice(NEIGHBOURHOOD_GROUPS, size=n_rows)
    rooms = rng.choice(ROOM_TYPES, size=n_rows, p=[0.5, 0.45, 0.05])
    luxury = rng.random(n_rows) < 0.2
    reviews = rng.poisson(15, size=n_rows)
    base = np.select(
        [groups == "Manhattan", groups == "Brooklyn"], [180.0, 130.0], default=90.0
    ) * np.select([rooms == "Entire home/apt", rooms == "Private room"], [1.0, 0.5], 0.3)
    price = base * np.where(luxury, 1.6, 1.0) * rng.lognormal(0.0, 0.15, size=n_rows)
    last = pd.Timestamp("2019-07-01") - pd.to_timedelta(rng.integers(0, 900, n_rows), unit="D")
    frame = pd.DataFrame(
        {
            "id": np.arange(n_rows),
            "name": np.where(luxury, "Luxury loft with view", "Cozy room near subway"),
            "host_id": rng.integers(1, 10_000, n_rows),
            "host_name": "Host",
            "neighbourhood_group": groups,
            "neighbourhood": [
                f"{g} {i}" for g, i in zip(groups, rng.integers(0, 4, n_rows), strict=True)
            ],
            "latitude": 40.7 + rng.normal(0, 0.05, n_rows),
            "longitude": -73.95 + rng.normal(0, 0.05, n_rows),
            "room_type": rooms,
            "price": price.round(),
            "minimum_nights": rng.integers(1, 30, n_rows),
            "number_of_reviews": reviews,
            "last_review": np.where(reviews > 0, last.strftime("%Y-%m-%d"), None),
            "reviews_per_month": np.where(reviews > 0, reviews / 12.0, np.nan),
            "calculated_host_listings_count": rng.integers(1, 5, n_rows),
            "availability_365": rng.integers(0, 366, n_rows),
        },
        columns=list(LISTING_COLUMNS),
    )
    return frame


@pytest.mark.parametrize("name", MODEL_NAMES)
def test_each_model_fits_raw_rows_and_predicts_prices(name: str) -> None:
    train, test = _listings(600, seed=1), _listings(200, seed=2)
    model = build_model(SMALL_CONFIGS[name])
    assert isinstance(model, Pipeline)
    model.fit(train.drop(columns="price"), train["price"])
    predicted = model.predict(test.drop(columns="price"))
    assert predicted.shape == (len(test),)
    assert np.isfinite(predicted).all()
    baseline = np.abs(test["price"] - train["price"].median()).mean()
    assert np.abs(test["price"] - predicted).mean() < 0.6 * baseline
    one = model.predict(test.drop(columns="price").iloc[[0]])
    assert one.shape == (1,)
    # Stored as train stores it (skops, the project's trusted types): the same predictions.
    from steps.common.model_format import read_pipeline, write_pipeline

    with tempfile.TemporaryDirectory() as directory:
        restored = read_pipeline(write_pipeline(model, Path(directory)))
    np.testing.assert_array_equal(restored.predict(test.drop(columns="price")), predicted)


@pytest.mark.parametrize("name", MODEL_NAMES)
def test_shipped_configs_build(name: str) -> None:
    cfg = yaml.safe_load((CONF_DIR / f"{name}.yaml").read_text())
    model = build_model(cfg)
    regressor = model.steps[-1][1]
    if model_settings(cfg).log_target:
        assert isinstance(regressor, TransformedTargetRegressor)
        regressor = regressor.regressor
    assert isinstance(regressor, EXPECTED_REGRESSOR[name])


def test_log_target_wraps_regressor() -> None:
    cfg = dict(SMALL_CONFIGS["random_forest"], log_target=True)
    regressor = build_model(cfg).steps[-1][1]
    assert isinstance(regressor, TransformedTargetRegressor)
    assert isinstance(regressor.regressor, RandomForestRegressor)
    plain = build_model(SMALL_CONFIGS["random_forest"]).steps[-1][1]
    assert isinstance(plain, RandomForestRegressor)
    assert plain.get_params()["max_depth"] == 8


def test_unknown_model_name_lists_allowed_names() -> None:
    with pytest.raises(ConfigurationError, match=r"model\.name.*torch_lasso.*random_forest"):
        build_model({"name": "xgboost"})
    with pytest.raises(ConfigurationError, match=r"model\.name"):
        build_model({"alpha": 1.0})


def test_unknown_key_is_named_with_allowed_keys() -> None:
    cfg = dict(SMALL_CONFIGS["torch_lasso"], n_estimators=10)
    with pytest.raises(ConfigurationError, match=r"n_estimators.*allowed keys.*alpha"):
        build_model(cfg)


@pytest.mark.parametrize(
    ("name", "key", "value"),
    [
        ("torch_lasso", "alpha", -0.1),
        ("torch_lasso", "alpha", "small"),
        ("torch_lasso", "max_iter", 0),
        ("torch_lasso", "tol", 0),
        ("torch_lasso", "device", "tpu"),
        ("torch_lasso", "log_target", "yes"),
        ("torch_lasso", "tfidf_max_features", 0),
        ("random_forest", "n_estimators", 0),
        ("random_forest", "max_features", "most"),
        ("random_forest", "min_samples_leaf", -3),
        ("random_forest", "tfidf_max_features", 2.5),
        ("hist_gradient_boosting", "learning_rate", 0.0),
        ("hist_gradient_boosting", "max_leaf_nodes", 1),
        ("hist_gradient_boosting", "max_features", 1.5),
        ("hist_gradient_boosting", "early_stopping", "sometimes"),
        ("hist_gradient_boosting", "l2_regularization", -1.0),
    ],
)
def test_invalid_values_name_the_key(name: str, key: str, value: object) -> None:
    cfg = dict(SMALL_CONFIGS[name], **{key: value})
    with pytest.raises(ConfigurationError, match=key):
        build_model(cfg)


def test_defaults_fill_missing_keys() -> None:
    model = build_model({"name": "torch_lasso"})
    regressor = model.steps[-1][1]
    assert isinstance(regressor, TransformedTargetRegressor)
    assert isinstance(regressor.regressor, TorchLasso)
    # The defaults are the schema's, which are what the pipeline trains with (conf/ adds none).
    lasso = regressor.regressor.get_params()
    assert (lasso["alpha"], lasso["max_iter"], lasso["tol"]) == (0.001, 2000, 1e-6)
    assert TorchLassoSchema().hyperparameters() == {
        "alpha": 0.001,
        "max_iter": 2000,
        "tol": 1e-6,
        "device": "auto",
    }


def test_hist_gradient_boosting_defaults_and_trusted_types() -> None:
    """Its defaults fill in, and the fitted pipeline holds only types the project trusts."""
    from steps.common.model_format import read_pipeline, untrusted_types, write_pipeline

    model = build_model({"name": "hist_gradient_boosting", "max_iter": 20})
    regressor = model.steps[-1][1]
    assert isinstance(regressor, TransformedTargetRegressor)
    assert isinstance(regressor.regressor, HistGradientBoostingRegressor)
    train = _listings(300, seed=3)
    model.fit(train.drop(columns="price"), train["price"])
    assert untrusted_types(model) == []
    rows = train.drop(columns="price")
    with tempfile.TemporaryDirectory() as directory:
        restored = read_pipeline(write_pipeline(model, Path(directory)))
    np.testing.assert_array_equal(restored.predict(rows), model.predict(rows))
