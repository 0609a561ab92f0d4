"""A search's settings: the distributions of conf/sweep/*.yaml, checked against the model schemas
before any work, the study's database derived from the tracking store, and the search plan."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from orchestration.config import ConfigError, load_config
from orchestration.search_plan import label, study_storage
from orchestration.search_space import Choice, FloatRange, IntRange, OptunaConfig
from orchestration.sweep_plan import plan_sweep
from steps.train.model_schemas import MODEL_SCHEMAS

SEARCH = ["sweep=search"]


def refusal(*overrides: str) -> str:
    with pytest.raises(ConfigError) as caught:
        load_config([*SEARCH, *overrides])
    return str(caught.value)


def test_the_shipped_search_covers_every_model_with_every_kind_of_distribution() -> None:
    settings = load_config(SEARCH).sweep
    assert settings.search == "optuna"
    space = settings.optuna.space
    assert set(space) == set(MODEL_SCHEMAS)
    kinds = {type(d) for model in space.values() for d in model.values()}
    assert kinds == {IntRange, FloatRange, Choice}
    assert space["torch_lasso"]["alpha"] == FloatRange(type="float", low=1e-5, high=1e-2, log=True)
    assert isinstance(space["random_forest"]["max_depth"], Choice)
    assert None in space["random_forest"]["max_depth"].choices  # null: grow until pure


def test_a_grid_sweep_stays_the_default() -> None:
    assert load_config([]).sweep.search == "grid"


def test_a_range_outside_a_hyperparameters_bounds_is_refused_naming_the_key() -> None:
    message = refusal("sweep.optuna.space.random_forest.min_samples_leaf.low=0")
    assert "sweep.optuna.space: random_forest.min_samples_leaf: 0 is not a value" in message
    assert ">= 1" in message
    message = refusal("sweep.optuna.space.hist_gradient_boosting.max_features.high=1.5")
    assert "hist_gradient_boosting.max_features: 1.5" in message and "<= 1" in message


def test_a_float_range_for_a_whole_number_setting_is_refused() -> None:
    message = refusal(
        "+sweep.optuna.space.random_forest.min_samples_split={type:float,low:2.5,high:4.0}"
    )
    assert "random_forest.min_samples_split: 2.5 is not a value" in message and "int" in message


def test_a_choice_the_model_does_not_take_is_refused() -> None:
    message = refusal("sweep.optuna.space.hist_gradient_boosting.early_stopping.choices=[auto,1]")
    assert "hist_gradient_boosting.early_stopping: 1 is not a value" in message
    assert "'auto' | bool" in message


def test_unknown_settings_and_models_are_refused_with_what_exists() -> None:
    message = refusal("+sweep.optuna.space.random_forest.n_trees={type:int,low:1,high:5}")
    assert "random_forest has no setting 'n_trees'" in message and "n_estimators" in message
    message = refusal("+sweep.optuna.space.xgboost={}")
    assert "'xgboost' is not a model" in message and "hist_gradient_boosting" in message


def test_an_empty_or_backwards_range_and_a_log_range_from_zero_are_refused() -> None:
    message = refusal("sweep.optuna.space.random_forest.n_estimators.low=500")
    assert "sweep.optuna.space.random_forest.n_estimators: low (500) is above high" in message
    message = refusal("sweep.optuna.space.torch_lasso.alpha.low=0")
    assert "sweep.optuna.space.torch_lasso.alpha" in message and "low > 0" in message


def test_the_study_lives_beside_a_local_sqlite_tracking_store(tmp_path: Path) -> None:
    tracking = f"sqlite:///{tmp_path / 'mlruns' / 'mlflow.db'}"
    assert study_storage(OptunaConfig(), tracking) == f"sqlite:///{tmp_path / 'mlruns'}/optuna.db"
    given = OptunaConfig(storage="postgresql://search@db.example:5432/optuna")
    assert study_storage(given, "http://mlflow.example:5000") == given.storage


def test_a_tracking_server_needs_the_study_database_named(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as caught:
        study_storage(OptunaConfig(), "http://user:secret@mlflow.example:5000")
    message = str(caught.value)
    assert "sweep.optuna.storage=postgresql://USER@HOST:5432/DB" in message
    assert "PGPASSWORD" in message and "secret" not in message


def test_a_password_in_the_study_storage_is_refused_and_never_repeated() -> None:
    message = refusal("sweep.optuna.storage=postgresql://search:hunter2@db.example/optuna")
    assert "takes no password" in message and "PGPASSWORD" in message
    assert "hunter2" not in message
    assert "not a study database" in refusal("sweep.optuna.storage=mysql://db.example/optuna")


def test_a_search_plans_its_models_with_the_overrides_that_apply_to_each() -> None:
    plan = plan_sweep([*SEARCH, "model.tfidf_max_features=50", "model.alpha=0.01"])
    assert plan.variants == () and plan.search is not None
    search = plan.search
    assert list(search.models) == list(MODEL_SCHEMAS)
    assert {cfg.model.tfidf_max_features for cfg in search.models.values()} == {50}
    assert search.models["torch_lasso"].model.alpha == 0.01  # type: ignore[union-attr]
    assert search.parallelism == 2  # one per Dask worker
    trial = search.trial_config("random_forest", {"n_estimators": 150, "max_depth": None})
    assert (trial.model.n_estimators, trial.model.max_depth) == (150, None)  # type: ignore[union-attr]
    assert trial.model.tfidf_max_features == 50
    assert label("random_forest", {"max_depth": None, "max_features": 0.123456}) == (
        "model=random_forest model.max_depth=null model.max_features=0.1235"
    )


def test_a_search_name_is_stable_and_follows_the_data_and_the_space() -> None:
    search = plan_sweep(SEARCH).search
    assert search is not None
    name = search.study_name(["sha256:aa", "sha256:bb"])
    assert name.startswith("search-") and name == search.study_name(["sha256:aa", "sha256:bb"])
    assert name != search.study_name(["sha256:aa", "sha256:cc"])
    narrower = plan_sweep([*SEARCH, "sweep.optuna.space.torch_lasso.alpha.high=0.001"]).search
    assert narrower is not None and narrower.study_name(["sha256:aa", "sha256:bb"]) != name


def test_a_search_that_cannot_run_is_refused_before_any_work() -> None:
    with pytest.raises(ConfigError, match=re.escape("draws its trials from sweep.optuna.space")):
        plan_sweep(SEARCH, [["model=random_forest"]])
    with pytest.raises(ConfigError, match=re.escape("a search trains the models of")):
        plan_sweep([*SEARCH, "model=random_forest"])
    with pytest.raises(ConfigError, match=re.escape("unknown key 'model.alpah'")):
        plan_sweep([*SEARCH, "model.alpah=0.1"])
    with pytest.raises(ConfigError, match="needs distributions to draw from"):
        plan_sweep(["sweep.search=optuna"])
    with pytest.raises(ConfigError, match=re.escape("sweep.optuna.storage")):
        plan_sweep([*SEARCH, "tracking.uri=http://127.0.0.1:5000"])
