"""A sweep's variants: Hydra's multirun syntax and conf/sweep/ lists, expanded and checked."""

from __future__ import annotations

import pytest

from orchestration.config import ConfigError, load_config
from orchestration.sweep_plan import plan_sweep, split_multirun

# The issue's own example: alpha is a setting of torch_lasso, not of random_forest.
ISSUE_EXAMPLE = ["model=torch_lasso,random_forest", "model.alpha=0.01,0.001"]


def test_multirun_splits_shared_overrides_from_swept_ones() -> None:
    shared, variants = split_multirun(
        ["--multirun", "data.demo_rows=3000", "main.steps=all", *ISSUE_EXAMPLE]
    )
    assert shared == ["data.demo_rows=3000", "main.steps=all"]
    assert variants == [
        ["model=torch_lasso", "model.alpha=0.01"],
        ["model=torch_lasso", "model.alpha=0.001"],
        ["model=random_forest", "model.alpha=0.01"],
        ["model=random_forest", "model.alpha=0.001"],
    ]


def test_a_step_list_is_not_a_sweep() -> None:
    shared, variants = split_multirun(["-m", "main.steps=train,evaluate,promote"])
    assert shared == ["main.steps=[train,evaluate,promote]"]
    assert variants == [[]]


def test_range_and_choice_are_discrete_sweeps() -> None:
    _, variants = split_multirun(["model.max_iter=range(100,400,100)", "model.tol=choice(1e-4)"])
    assert [v[0] for v in variants] == [
        "model.max_iter=100",
        "model.max_iter=200",
        "model.max_iter=300",
    ]


def test_a_continuous_range_is_refused() -> None:
    with pytest.raises(ConfigError, match="continuous range"):
        split_multirun(["model.alpha=interval(0.001,0.1)"])


def test_a_model_setting_applies_only_to_the_models_that_have_it() -> None:
    shared, variants = split_multirun(ISSUE_EXAMPLE)
    plan = plan_sweep(shared, variants)
    assert [(v.cfg.model.name, v.label) for v in plan.variants] == [
        ("torch_lasso", "model=torch_lasso model.alpha=0.01"),
        ("torch_lasso", "model=torch_lasso model.alpha=0.001"),
        ("random_forest", "model=random_forest"),
    ]
    forest = plan.variants[2]
    assert forest.not_applicable == ("model.alpha=0.01",)
    # The second random forest combination is the same model: trained once.
    assert plan.repeats == ("model=random_forest",)
    assert [getattr(v.cfg.model, "alpha", None) for v in plan.variants] == [0.01, 0.001, None]


def test_a_model_key_no_swept_model_has_is_refused() -> None:
    with pytest.raises(ConfigError, match=r"unknown key 'model\.alpah'.*torch_lasso"):
        plan_sweep([], [["model=torch_lasso", "model.alpah=0.1"]])


def test_a_variant_may_not_change_what_the_variants_share() -> None:
    _, variants = split_multirun(["data.demo_rows=1000,2000"])
    with pytest.raises(ConfigError, match=r"changes data\.demo_rows.*outside the sweep"):
        plan_sweep([], variants)


def test_a_bad_value_names_its_variant() -> None:
    with pytest.raises(ConfigError, match=r"sweep variant 'model\.alpha=-1'.*model\.alpha"):
        plan_sweep([], [["model.alpha=0.01"], ["model.alpha=-1"]])


def test_an_unknown_model_is_refused_with_the_options() -> None:
    with pytest.raises(ConfigError, match="model=xgb is not an option"):
        plan_sweep([], [["model=xgb"]])


def test_shared_model_settings_reach_every_variant_that_has_them() -> None:
    plan = plan_sweep(
        ["model.tfidf_max_features=50", "data.demo_rows=3000"],
        [["model=torch_lasso"], ["model=random_forest"]],
    )
    assert [v.cfg.model.tfidf_max_features for v in plan.variants] == [50, 50]
    assert plan.base.data.demo_rows == 3000
    assert all(v.cfg.data.demo_rows == 3000 for v in plan.variants)


def test_a_variant_overrides_a_shared_setting_of_the_same_key() -> None:
    plan = plan_sweep(["model=random_forest"], [["model=torch_lasso"], []])
    assert [v.cfg.model.name for v in plan.variants] == ["torch_lasso", "random_forest"]


def test_the_configured_variants_are_the_default() -> None:
    plan = plan_sweep([])
    assert [v.cfg.model.name for v in plan.variants] == [
        "torch_lasso",
        "torch_lasso",
        "random_forest",
        "hist_gradient_boosting",
    ]
    assert plan.variants[0].name == "variant-1-torch_lasso"
    assert plan.selection_metric == "val_mae"
    assert plan.minimize


def test_another_sweep_is_chosen_by_its_group_option() -> None:
    plan = plan_sweep(["sweep=lasso_alpha"])
    assert sorted(v.cfg.model.alpha for v in plan.variants) == [0.0001, 0.0003, 0.001, 0.003]  # type: ignore[union-attr]


def test_a_configured_variant_may_list_values_itself() -> None:
    plan = plan_sweep([], [["model=torch_lasso", "model.alpha=0.1,0.2"], ["model=random_forest"]])
    assert len(plan.variants) == 3


def test_the_selection_metric_follows_the_promotion_metric() -> None:
    plan = plan_sweep(
        ["promotion.metric=test_r2", "promotion.direction=maximize"], [["model.alpha=0.1"]]
    )
    assert plan.selection_metric == "val_r2"
    assert not plan.minimize


def test_too_many_variants_is_refused_before_composing_them() -> None:
    _, variants = split_multirun(["model.alpha=0.1,0.2,0.3", "model.max_iter=10,20,30"])
    with pytest.raises(ConfigError, match=r"9 combinations, more than 4.*sweep\.max_variants"):
        plan_sweep(["sweep.max_variants=4"], variants)


def test_a_sweep_must_train_and_evaluate() -> None:
    with pytest.raises(ConfigError, match="add train,evaluate"):
        plan_sweep(["main.steps=get_data,basic_cleaning"], [["model.alpha=0.1"]])


def test_no_variants_is_refused() -> None:
    with pytest.raises(ConfigError, match="no variants"):
        plan_sweep([], [])


def test_a_list_among_the_shared_overrides_is_refused() -> None:
    with pytest.raises(ConfigError, match="lists several values"):
        plan_sweep(["model.alpha=0.1,0.2"], [["model=torch_lasso"]])


def test_the_dask_settings_are_validated() -> None:
    with pytest.raises(ConfigError, match=r"sweep\.dask\.address.*tcp://HOST:PORT"):
        load_config(["sweep.dask.address=10.0.0.5"])
    with pytest.raises(ConfigError, match=r"sweep\.dask\.n_workers"):
        load_config(["sweep.dask.n_workers=0"])
    assert load_config(["sweep.dask.address=tcp://10.0.0.5:8786"]).sweep.dask.address
