"""Deployments as code: conf/deployments.yaml, prefect.yaml and deployments.serve agree, every
entrypoint resolves to the pipeline flow and every deployment's parameters validate."""

from __future__ import annotations

import asyncio
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
from deployments.serve import runner_deployment
from deployments.spec import (
    FLOW_MODULE_ENTRYPOINT,
    PROJECT_ROOT,
    DeploymentsFileError,
    load_deployments,
)
from flows.train_pipeline import train_pipeline
from orchestration.config import load_config

SPECS = load_deployments()
NAMES = [spec.name for spec in SPECS]


def _prefect_yaml() -> dict[str, dict[str, Any]]:
    document = yaml.safe_load(PREFECT_YAML.read_text())
    return {entry["name"]: entry for entry in document["deployments"]}


def test_conf_defines_a_nightly_and_per_model_weekly_deployments() -> None:
    assert "nightly-retrain" in NAMES
    weekly = [spec for spec in SPECS if spec.name.startswith("weekly-retrain-")]
    assert len(weekly) >= 2
    # Each weekly deployment names its model as the typed parameter, not as an override.
    assert all(spec.parameters["model"] == spec.form.model for spec in weekly)
    assert len({spec.form.model for spec in weekly}) == len(weekly)
    assert not any(o.startswith("model=") for spec in weekly for o in spec.overrides)


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
        assert entry["concurrency_limit"]["limit"] == served.concurrency_limit == 1
        assert served.concurrency_options is not None
        strategy = served.concurrency_options.collision_strategy
        assert entry["concurrency_limit"]["collision_strategy"] == strategy.value == "CANCEL_NEW"
        [schedule] = entry["schedules"]
        [served_schedule] = served.schedules or []
        assert isinstance(served_schedule.schedule, CronSchedule)
        assert (schedule["cron"], schedule["timezone"]) == (
            served_schedule.schedule.cron,
            served_schedule.schedule.timezone,
        )


@pytest.mark.parametrize("name", NAMES)
def test_prefect_yaml_entrypoint_resolves_from_the_project_root(
    name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(PROJECT_ROOT)
    entrypoint = _prefect_yaml()[name]["entrypoint"]
    assert load_flow_from_entrypoint(entrypoint).name == train_pipeline.name


@pytest.mark.parametrize("spec", SPECS, ids=NAMES)
def test_served_entrypoint_resolves_from_anywhere(
    spec: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    deployment = runner_deployment(spec)
    assert deployment.entrypoint == FLOW_MODULE_ENTRYPOINT
    assert load_flow_from_entrypoint(deployment.entrypoint).name == train_pipeline.name


@pytest.mark.parametrize("spec", SPECS, ids=NAMES)
def test_parameters_validate_against_the_flow_and_the_config(spec: Any) -> None:
    validated = train_pipeline.validate_parameters(spec.parameters)
    assert {k: v for k, v in validated.items() if v is not None} == spec.parameters
    cfg = load_config(spec.config_overrides)
    assert cfg.model.name == (spec.form.model or "torch_lasso")


@pytest.mark.parametrize("spec", SPECS, ids=NAMES)
def test_schedule_is_a_cron_in_its_timezone(spec: Any) -> None:
    """The server's own expansion of the schedule lands on the cron's local time."""
    schedule = ServerCronSchedule(cron=spec.cron, timezone=spec.timezone)
    start = datetime(2026, 3, 1, tzinfo=ZoneInfo("UTC"))
    dates = asyncio.run(schedule.get_dates(n=3, start=start))
    local = dates[0].astimezone(ZoneInfo(spec.timezone))
    hour = int(spec.cron.split()[1])
    assert local.hour == hour and local.minute == int(spec.cron.split()[0])


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
    ],
)
def test_bad_deployment_is_refused_with_a_clear_error(
    change: dict[str, Any], message: str, tmp_path: Path
) -> None:
    deployment = {"name": "nightly", "cron": "0 2 * * *", "overrides": []} | change
    with pytest.raises(DeploymentsFileError) as error:
        load_deployments(_write(tmp_path, deployment))
    assert message in str(error.value)


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
