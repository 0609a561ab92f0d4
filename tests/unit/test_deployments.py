"""Deployments as code: conf/deployments.yaml, prefect.yaml and deployments.serve agree, every
entrypoint resolves to its deployment's flow and every deployment's parameters validate.
(The event triggers: test_deployment_triggers.py.)"""

from __future__ import annotations

import asyncio
import itertools
from datetime import datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
import yaml
from prefect.client.schemas.objects import ConcurrencyLimitStrategy
from prefect.client.schemas.schedules import CronSchedule
from prefect.flows import load_flow_from_entrypoint
from prefect.server.schemas.schedules import CronSchedule as ServerCronSchedule

from deployments.render import PREFECT_YAML, render
from deployments.serve import load_flow, runner_deployment
from deployments.spec import (
    DEPLOYABLE_FLOWS,
    PROJECT_ROOT,
    DeploymentsFileError,
    load_deployments,
)
from orchestration.config import load_config

SPECS = load_deployments()
NAMES = [spec.name for spec in SPECS]
TRAIN_SPECS = [spec for spec in SPECS if spec.flow == "train_pipeline"]
SCHEDULED = [spec for spec in SPECS if spec.cron is not None]


def _prefect_yaml() -> dict[str, dict[str, Any]]:
    document = yaml.safe_load(PREFECT_YAML.read_text())
    return {entry["name"]: entry for entry in document["deployments"]}


def test_conf_defines_a_nightly_and_per_model_weekly_deployments() -> None:
    assert "nightly-retrain" in NAMES
    weekly = [spec for spec in TRAIN_SPECS if spec.name.startswith("weekly-retrain-")]
    assert len(weekly) >= 2
    # Each weekly deployment names its model as the typed parameter, not as an override.
    models = [spec.form.model for spec in weekly if spec.form is not None]
    assert [spec.parameters["model"] for spec in weekly] == models
    assert len(set(models)) == len(weekly)
    assert not any(o.startswith("model=") for spec in weekly for o in spec.overrides)


def test_conf_deploys_the_new_data_flows() -> None:
    by_name = {spec.name: spec for spec in SPECS}
    retrain = by_name["retrain-on-new-data"]
    assert (retrain.flow, retrain.cron) == ("retrain_on_new_data", None)
    assert {trigger.event for trigger in retrain.triggers} == {
        "listings.object.arrived",
        "listings.drift.detected",
    }
    # A second object waits for the first one's training; it is never dropped.
    assert (retrain.collision_strategy, retrain.concurrency_limit) == ("ENQUEUE", 1)
    watch = by_name["watch-sources"]
    assert (watch.flow, watch.cron, watch.collision_strategy) == (
        "watch_sources",
        "*/5 * * * *",
        "CANCEL_NEW",
    )
    score = by_name["nightly-score"]
    assert (score.flow, score.parameters) == ("score", {"overrides": []})
    assert score.cron is not None and not score.triggers


def test_prefect_yaml_is_rendered_from_conf() -> None:
    assert PREFECT_YAML.read_text() == render(SPECS), "run: python -m deployments.render"


def test_prefect_yaml_and_serve_define_the_same_deployments() -> None:
    entries = _prefect_yaml()
    assert list(entries) == NAMES
    for spec in SPECS:
        entry = entries[spec.name]
        served = runner_deployment(spec)
        assert entry["parameters"] == served.parameters == spec.parameters
        assert spec.parameters["overrides"] == spec.overrides
        limit = entry["concurrency_limit"]
        assert limit["limit"] == served.concurrency_limit == spec.concurrency_limit
        assert served.concurrency_options is not None
        strategy = served.concurrency_options.collision_strategy
        assert limit["collision_strategy"] == strategy.value == spec.collision_strategy
        schedules = [(s["cron"], s["timezone"]) for s in entry["schedules"]]
        served_schedules = []
        for served_schedule in served.schedules or []:
            assert isinstance(served_schedule.schedule, CronSchedule)
            served_schedules.append(
                (served_schedule.schedule.cron, served_schedule.schedule.timezone)
            )
        expected = [] if spec.cron is None else [(spec.cron, spec.timezone)]
        assert schedules == served_schedules == expected
        assert len(entry["triggers"]) == len(served.triggers) == len(spec.triggers)


@pytest.mark.parametrize("spec", SPECS, ids=NAMES)
def test_prefect_yaml_entrypoint_resolves_from_the_project_root(
    spec: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(PROJECT_ROOT)
    entrypoint = _prefect_yaml()[spec.name]["entrypoint"]
    assert entrypoint == DEPLOYABLE_FLOWS[spec.flow].file_entrypoint
    assert load_flow_from_entrypoint(entrypoint).name == spec.flow


@pytest.mark.parametrize("spec", SPECS, ids=NAMES)
def test_served_entrypoint_resolves_from_anywhere(
    spec: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    deployment = runner_deployment(spec)
    assert deployment.entrypoint == DEPLOYABLE_FLOWS[spec.flow].module_entrypoint
    assert load_flow_from_entrypoint(deployment.entrypoint).name == spec.flow


@pytest.mark.parametrize("spec", SPECS, ids=NAMES)
def test_parameters_validate_against_the_flow_and_the_config(spec: Any) -> None:
    flow = load_flow(spec.deployable)
    # A triggered run gets the rest from its event (test_deployment_triggers.py).
    event_filled = {key: "x" for key in spec.deployable.trigger_parameters}
    validated = flow.validate_parameters(spec.parameters | event_filled)
    given = {k: v for k, v in validated.items() if v is not None and k not in event_filled}
    assert given == spec.parameters
    cfg = load_config(spec.config_overrides)
    typed_model = spec.form.model if spec.form is not None else None
    assert cfg.model.name == (typed_model or "torch_lasso")


@pytest.mark.parametrize("spec", SCHEDULED, ids=[spec.name for spec in SCHEDULED])
def test_schedule_is_a_cron_in_its_timezone(spec: Any) -> None:
    """The server's own expansion of the schedule lands on the cron's local time."""
    schedule = ServerCronSchedule(cron=spec.cron, timezone=spec.timezone)
    start = datetime(2026, 3, 1, tzinfo=ZoneInfo("UTC"))
    dates = asyncio.run(schedule.get_dates(n=3, start=start))
    local = [date.astimezone(ZoneInfo(spec.timezone)) for date in dates]
    minute, hour = spec.cron.split()[:2]
    if hour != "*":
        assert all(date.hour == int(hour) for date in local)
    if minute.startswith("*/"):
        step = int(minute.removeprefix("*/"))
        assert [(b - a).total_seconds() for a, b in itertools.pairwise(dates)] == [step * 60.0] * 2
    else:
        assert all(date.minute == int(minute) for date in local)


def test_collision_strategy_names_are_prefects() -> None:
    assert {spec.collision_strategy for spec in SPECS} <= {
        s.value for s in ConcurrencyLimitStrategy
    }


def _write(tmp_path: Path, deployment: dict[str, Any]) -> Path:
    path = tmp_path / "deployments.yaml"
    path.write_text(yaml.safe_dump({"deployments": [deployment]}))
    return path


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"overrides": ["model=xgb"]}, "model=xgb is not an option; allowed:"),
        ({"overrides": ["model.depth=3"]}, "unknown key 'model.depth'"),
        ({"cron": "0 25 * * *"}, "cron"),
        ({"timezone": "Mars/Olympus"}, "unknown timezone 'Mars/Olympus'"),
        ({"name": "Nightly Retrain"}, "name"),
        ({"parameters": {"model": "xgb"}}, "parameters.model"),
        ({"parameters": {"hyperparameters": {"torch_lasso": {"alpha": 0}}}}, "greater than 0"),
        ({"parameters": {"steps": ["train", "deploy"]}}, "parameters.steps"),
        ({"parameters": {"depth": 3}}, "parameters.depth"),
        ({"parameters": {"data_source": "https://u:pw@h/x.csv"}}, "carries credentials"),
        ({"flow": "train"}, "unknown flow 'train'; deployable flows: train_pipeline,"),
        ({"flow": "score", "parameters": {"model": "random_forest"}}, "`parameters:` is train_"),
        ({"flow": "score", "models": ["random_forest"]}, "`models:` is train_pipeline's only"),
        ({"flow": "score", "overrides": ["model=xgb"]}, "nightly: invalid override: model=xgb"),
        ({"collision_strategy": "QUEUE"}, "collision_strategy"),
        ({"concurrency_limit": 0}, "concurrency_limit"),
        ({"timezone": "Mars/Olympus", "cron": None}, "unknown timezone 'Mars/Olympus'"),
    ],
)
def test_bad_deployment_is_refused_with_a_clear_error(
    change: dict[str, Any], message: str, tmp_path: Path
) -> None:
    deployment = {"name": "nightly", "cron": "0 2 * * *", "overrides": []} | change
    with pytest.raises(DeploymentsFileError) as error:
        load_deployments(_write(tmp_path, deployment))
    assert message in str(error.value)


def test_a_deployment_overrides_the_default_collision_strategy_and_limit(tmp_path: Path) -> None:
    path = tmp_path / "deployments.yaml"
    path.write_text(
        yaml.safe_dump(
            {
                "defaults": {"collision_strategy": "CANCEL_NEW", "concurrency_limit": 1},
                "deployments": [
                    {"name": "queued", "cron": "0 2 * * *", "collision_strategy": "ENQUEUE"},
                    {"name": "wide", "cron": "0 3 * * *", "concurrency_limit": 3},
                ],
            }
        )
    )
    specs = {spec.name: spec for spec in load_deployments(path)}
    assert (specs["queued"].collision_strategy, specs["queued"].concurrency_limit) == (
        "ENQUEUE",
        1,
    )
    assert (specs["wide"].collision_strategy, specs["wide"].concurrency_limit) == ("CANCEL_NEW", 3)
    served = runner_deployment(specs["queued"])
    assert served.concurrency_options is not None
    assert served.concurrency_options.collision_strategy == ConcurrencyLimitStrategy.ENQUEUE
    entry = yaml.safe_load(render(list(specs.values())))["deployments"][1]
    assert entry["concurrency_limit"] == {"limit": 3, "collision_strategy": "CANCEL_NEW"}


def test_a_deployment_without_cron_has_no_schedule(tmp_path: Path) -> None:
    [spec] = load_deployments(_write(tmp_path, {"name": "by-hand", "flow": "score"}))
    assert spec.cron is None and spec.parameters == {"overrides": []}
    assert runner_deployment(spec).schedules == []
    [entry] = yaml.safe_load(render([spec]))["deployments"]
    # Empty, not left out: an interactive `prefect deploy` would ask for a schedule.
    assert entry["schedules"] == [] and entry["triggers"] == []
    assert entry["entrypoint"] == "flows/score.py:score"


def test_models_list_expands_to_one_deployment_per_model(tmp_path: Path) -> None:
    path = _write(
        tmp_path,
        {"name": "weekly", "cron": "0 5 * * 0", "models": ["random_forest"], "overrides": ["x"]},
    )
    [spec] = load_deployments(path, validate=False)
    assert spec.name == "weekly-random-forest"
    assert spec.parameters == {"model": "random_forest", "overrides": ["x"]}
    assert spec.config_overrides == ["model=random_forest", "x"]
    assert spec.timezone == "UTC" and spec.collision_strategy == "CANCEL_NEW"


def test_typed_parameters_and_overrides_together(tmp_path: Path) -> None:
    """A deployment gives typed parameters (the Custom run form's) and keeps `overrides:`."""
    path = _write(
        tmp_path,
        {
            "name": "weekly",
            "cron": "0 5 * * 0",
            "models": ["random_forest"],
            "parameters": {"hyperparameters": {"random_forest": {"n_estimators": 50}}},
            "overrides": ["data.demo_rows=2000"],
        },
    )
    [spec] = load_deployments(path)
    assert spec.parameters == {
        "model": "random_forest",
        "hyperparameters": {"random_forest": {"n_estimators": 50}},
        "overrides": ["data.demo_rows=2000"],
    }
    cfg = load_config(spec.config_overrides)
    model = cfg.model.model_dump()
    assert (model["name"], model["n_estimators"], cfg.data.demo_rows) == ("random_forest", 50, 2000)


def test_a_model_given_twice_is_refused(tmp_path: Path) -> None:
    path = _write(
        tmp_path,
        {
            "name": "weekly",
            "cron": "0 5 * * 0",
            "models": ["random_forest"],
            "parameters": {"model": "torch_lasso"},
        },
    )
    with pytest.raises(DeploymentsFileError, match="not both"):
        load_deployments(path)
