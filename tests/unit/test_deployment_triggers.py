"""Deployments run on the pipeline's events: conf/deployments.yaml's `triggers:` become the same
Prefect event triggers in deployments.serve and prefect.yaml, the Prefect server's own matching
picks the events they are meant for, and its template engine fills the flow's parameters in
from the event."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from uuid import uuid4

import pytest
import yaml
from prefect.events import DeploymentEventTrigger, DeploymentTriggerTypes
from prefect.server.events.schemas.automations import AutomationCore as ServerAutomation
from prefect.server.events.schemas.automations import EventTrigger as ServerEventTrigger
from prefect.server.events.schemas.events import ReceivedEvent
from prefect.server.utilities.user_templates import render_user_template
from pydantic import TypeAdapter

from deployments.render import PREFECT_YAML
from deployments.render import main as render_main
from deployments.serve import describe, runner_deployment
from deployments.spec import DeploymentsFileError, DeploymentSpec, load_deployments
from orchestration.events import (
    DATA_ARRIVED,
    DRIFT_DETECTED,
    EVENT_NAMES,
    HAS_PRICE_LABEL,
    TRIGGER_PARAMETERS,
    ListingsEvent,
    ListingsObject,
    arrival,
    drift,
)

SPECS = {spec.name: spec for spec in load_deployments()}
RETRAIN = SPECS["retrain-on-new-data"]


def _write(tmp_path: Path, deployment: dict[str, Any]) -> Path:
    path = tmp_path / "deployments.yaml"
    path.write_text(yaml.safe_dump({"deployments": [deployment]}))
    return path


def _triggered(**change: Any) -> dict[str, Any]:
    return {
        "name": "on-data",
        "flow": "retrain_on_new_data",
        "triggers": [{"event": DATA_ARRIVED}],
    } | change


def _received(event: ListingsEvent) -> ReceivedEvent:
    """The event as the Prefect server holds it once it arrives."""
    return ReceivedEvent.model_validate(
        {
            "id": event.id,
            "event": event.name,
            "resource": event.resource(),
            "payload": event.payload(),
            "occurred": datetime.now(UTC),
        }
    )


def _server_automations(spec: DeploymentSpec) -> list[ServerAutomation]:
    """What deployments.serve creates on the server for the spec's triggers (the client's
    automation, as the server's API validates it)."""
    deployment_id = uuid4()
    automations = []
    for trigger in runner_deployment(spec).triggers:
        trigger.set_deployment_id(deployment_id)
        automation = trigger.as_automation().model_dump(mode="json")
        automations.append(ServerAutomation.model_validate(automation))
    return automations


def _fires(spec: DeploymentSpec, event: ListingsEvent) -> list[str]:
    """The names of the spec's automations that the server's matching fires for `event`."""
    received = _received(event)
    fired = []
    for automation in _server_automations(spec):
        assert isinstance(automation.trigger, ServerEventTrigger)
        if automation.trigger.covers(received):
            fired.append(automation.name)
    return fired


NEW = ListingsObject("oss://bucket/nyc/2026-03.csv", "etag-1", size=1234)
UNPRICED = ListingsObject("oss://bucket/nyc/to-score.csv", "etag-2", has_price=False)


def test_new_data_and_drift_on_priced_data_run_the_retrain_deployment() -> None:
    assert _fires(RETRAIN, arrival(NEW, "upload")) == ["retrain-on-new-data on " + DATA_ARRIVED]
    assert _fires(RETRAIN, arrival(NEW, "watcher")) == ["retrain-on-new-data on " + DATA_ARRIVED]
    assert _fires(RETRAIN, drift(NEW, {"psi": 0.4})) == ["retrain-on-new-data on " + DRIFT_DETECTED]
    # Drift on data without prices cannot be trained on: nothing fires.
    assert _fires(RETRAIN, drift(UNPRICED, {"psi": 0.4})) == []


def test_the_run_gets_the_events_object_as_its_parameters() -> None:
    """The server's template engine renders the trigger's parameters from the event."""
    event = _received(drift(NEW, {"psi": 0.4}))
    for automation in _server_automations(RETRAIN):
        [action] = automation.actions
        templates = getattr(action, "parameters", None)
        assert templates == TRIGGER_PARAMETERS
        rendered = {
            key: asyncio.run(render_user_template(template, {"event": event}))
            for key, template in templates.items()
        }
        assert rendered == {"source": NEW.source, "fingerprint": NEW.fingerprint, "origin": "drift"}


def test_each_event_starts_its_own_run_at_once() -> None:
    for automation in _server_automations(RETRAIN):
        trigger = automation.trigger
        assert isinstance(trigger, ServerEventTrigger)
        assert trigger.immediate and trigger.threshold == 1 and not trigger.for_each
        assert automation.enabled


def test_prefect_yaml_has_the_served_triggers() -> None:
    """prefect deploy reads prefect.yaml's triggers into the triggers deployments.serve builds."""
    entries = {e["name"]: e for e in yaml.safe_load(PREFECT_YAML.read_text())["deployments"]}
    adapter: TypeAdapter[Any] = TypeAdapter(DeploymentTriggerTypes)
    for spec in SPECS.values():
        from_yaml = [adapter.validate_python(t) for t in entries[spec.name]["triggers"]]
        served = runner_deployment(spec).triggers
        assert [t.model_dump(mode="json") for t in from_yaml] == [
            t.model_dump(mode="json") for t in served
        ]
        assert all(isinstance(t, DeploymentEventTrigger) for t in from_yaml)
    assert [t["expect"] for t in entries[RETRAIN.name]["triggers"]] == [
        [DATA_ARRIVED],
        [DRIFT_DETECTED],
    ]


def test_prefect_yaml_check_passes() -> None:
    assert render_main(["--check"]) == 0, "run: python -m deployments.render"


def test_the_startup_line_says_when_each_deployment_runs() -> None:
    line = describe(RETRAIN)
    assert line.startswith("serving retrain_on_new_data/retrain-on-new-data: ")
    assert f"on {DATA_ARRIVED}" in line
    assert f"on {DRIFT_DETECTED} {HAS_PRICE_LABEL}=true" in line
    assert line.endswith("(at most 1 at once, more are queued)")
    assert "'*/5 * * * *' America/New_York" in describe(SPECS["watch-sources"])


def test_a_cron_and_triggers_together(tmp_path: Path) -> None:
    [spec] = load_deployments(_write(tmp_path, _triggered(cron="0 4 * * *")))
    served = runner_deployment(spec)
    assert len(served.schedules or []) == 1 and len(served.triggers) == 1


def test_an_unquoted_true_label_matches_as_text(tmp_path: Path) -> None:
    trigger = {"event": DRIFT_DETECTED, "match": {HAS_PRICE_LABEL: True}}
    [spec] = load_deployments(_write(tmp_path, _triggered(triggers=[trigger])))
    assert spec.triggers[0].match == {HAS_PRICE_LABEL: "true"}
    assert _fires(spec, drift(NEW, {})) and not _fires(spec, drift(UNPRICED, {}))


def test_two_triggers_on_one_event_get_distinct_automation_names(tmp_path: Path) -> None:
    triggers = [
        {"event": DATA_ARRIVED, "match": {"listings.source": "oss://a/*"}},
        {"event": DATA_ARRIVED, "match": {"listings.source": "oss://b/*"}},
    ]
    [spec] = load_deployments(_write(tmp_path, _triggered(triggers=triggers)))
    names = [automation.name for automation in _server_automations(spec)]
    assert len(set(names)) == 2


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (
            {"triggers": [{"event": "listings.arrived"}]},
            f"unknown event 'listings.arrived'; the pipeline's events are {', '.join(EVENT_NAMES)}",
        ),
        (
            {"triggers": [{"event": DATA_ARRIVED, "match": {"has-price": "true"}}]},
            "label 'has-price' is on no event of the pipeline; match one of",
        ),
        ({"triggers": [{"event": DATA_ARRIVED, "within": 60}]}, "within"),
        (
            {"flow": "score"},
            "deployment on-data (flow score): `triggers:` need a flow that takes an event's "
            "object as parameters (retrain_on_new_data)",
        ),
        ({"flow": "train_pipeline"}, "(flow train_pipeline): `triggers:` need a flow"),
        ({"parameters": {"model": "random_forest"}}, "`parameters:` is train_pipeline's only"),
    ],
)
def test_a_bad_trigger_is_refused_with_a_clear_error(
    change: dict[str, Any], message: str, tmp_path: Path
) -> None:
    with pytest.raises(DeploymentsFileError) as error:
        load_deployments(_write(tmp_path, _triggered(**change)))
    assert message in str(error.value)
