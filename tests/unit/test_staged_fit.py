"""A search trial's staged fit: the same model as a plain fit unless pruned, each stage's score in
the study, and the percentile rule among trials of the same model."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import optuna
import pandas as pd
import pytest

from steps.common.listing_columns import TARGET
from steps.ingest.demo_data import generate_listings
from steps.train.model_factory import build_model, model_settings
from steps.train.schema import TrialTarget
from steps.train.staged_fit import fit_price_model, stage_counts
from steps.train.trial_report import percentile_verdict

MODELS: dict[str, dict[str, Any]] = {
    "random_forest": {"name": "random_forest", "n_estimators": 12, "max_depth": 6, "n_jobs": 1},
    # log_target: the regressor sits inside a TransformedTargetRegressor.
    "hist_gradient_boosting": {"name": "hist_gradient_boosting", "max_iter": 30},
}


@pytest.fixture(scope="module")
def listings() -> tuple[pd.DataFrame, np.ndarray, pd.DataFrame, np.ndarray]:
    frame = generate_listings(900, 3)
    frame = frame[frame[TARGET].between(10, 1000)]
    train, val = frame.iloc[:600], frame.iloc[600:]
    return (
        train.drop(columns=TARGET),
        train[TARGET].to_numpy(dtype=float),
        val.drop(columns=TARGET),
        val[TARGET].to_numpy(dtype=float),
    )


def a_trial(tmp_path: Path, model: str, peers: int = 0, **pruning: Any) -> TrialTarget:
    """A trial of `model` in a fresh SQLite study, after `peers` completed trials of the same
    model that scored 0 at every stage (so that anything is worse)."""
    storage = f"sqlite:///{tmp_path / 'optuna.db'}"
    study = optuna.create_study(study_name="s", storage=storage, load_if_exists=True)
    for _ in range(peers):
        peer = study.ask()
        peer.suggest_categorical("model", [model])
        for stage in range(5):
            peer.report(0.0, stage)
        study.tell(peer, 0.0)
    trial = study.ask()
    trial.suggest_categorical("model", [model])
    return TrialTarget(storage=storage, study_name="s", trial_number=trial.number, **pruning)


@pytest.mark.parametrize("model", sorted(MODELS))
def test_an_unpruned_trial_ends_with_the_model_a_plain_fit_gives(
    model: str, listings: Any, tmp_path: Path
) -> None:
    x, y, x_val, y_val = listings
    plain = build_model(MODELS[model]).fit(x, y)
    staged = build_model(MODELS[model])
    report = fit_price_model(
        staged, model_settings(MODELS[model]), x, y, x_val, y_val, a_trial(tmp_path, model)
    )
    assert report.pruned_at_stage is None
    assert len(report.stage_scores) >= 2
    np.testing.assert_allclose(staged.predict(x_val), plain.predict(x_val), rtol=1e-9)
    assert staged.get_params()  # still a plain scikit-learn pipeline
    study = optuna.load_study(study_name="s", storage=f"sqlite:///{tmp_path / 'optuna.db'}")
    assert len(study.trials[-1].intermediate_values) == len(report.stage_scores)


def test_a_trial_worse_than_its_peers_stops_early_with_a_usable_model(
    listings: Any, tmp_path: Path
) -> None:
    x, y, x_val, y_val = listings
    config = MODELS["random_forest"]
    target = a_trial(tmp_path, "random_forest", peers=2, startup_trials=2, warmup_stages=1)
    model = build_model(config)
    report = fit_price_model(model, model_settings(config), x, y, x_val, y_val, target)
    assert report.pruned_at_stage == 1  # the warm-up stage is never pruned
    assert "worse than the 50th percentile" in report.reason
    assert "2 finished trials of the same model" in report.reason
    forest = model.named_steps["regressor"]
    assert len(forest.estimators_) == stage_counts(12, 5)[1] < 12
    assert np.isfinite(model.predict(x_val)).all()


def test_outside_a_search_or_for_a_model_without_stages_the_fit_is_one_go(
    listings: Any, tmp_path: Path
) -> None:
    x, y, x_val, y_val = listings
    config = MODELS["random_forest"]
    report = fit_price_model(
        build_model(config), model_settings(config), x, y, x_val, y_val, TrialTarget()
    )
    assert report.stage_scores == () and report.pruned_at_stage is None
    lasso = {"name": "torch_lasso", "device": "cpu"}
    target = a_trial(tmp_path, "torch_lasso")
    report = fit_price_model(build_model(lasso), model_settings(lasso), x, y, x_val, y_val, target)
    assert report.stage_scores == ()


def test_stage_counts_grow_to_the_configured_count() -> None:
    assert stage_counts(100, 5) == [20, 40, 60, 80, 100]
    assert stage_counts(3, 5) == [1, 2, 3]
    assert stage_counts(1, 4) == [1]


def test_the_percentile_rule_waits_for_warm_up_and_peers() -> None:
    rule = TrialTarget(startup_trials=2, warmup_stages=1, percentile=50)
    assert not percentile_verdict(9.0, [1.0, 2.0], 0, rule, minimize=True).prune  # warm-up
    assert not percentile_verdict(9.0, [1.0], 1, rule, minimize=True).prune  # one peer
    assert percentile_verdict(9.0, [1.0, 2.0], 1, rule, minimize=True).prune
    assert not percentile_verdict(1.2, [1.0, 2.0], 1, rule, minimize=True).prune
    # A score to maximize (R²): worse is lower.
    assert percentile_verdict(0.1, [0.6, 0.7], 1, rule, minimize=False).prune
    assert not percentile_verdict(0.9, [0.6, 0.7], 1, rule, minimize=False).prune
