"""An event sent to the real Prefect server runs the deployment whose trigger matches it, with
the event's object as the run's parameters; an event no trigger matches runs nothing."""

from __future__ import annotations

import time
from pathlib import Path
from uuid import uuid4

from prefect.client.schemas.objects import FlowRun

from deployments.spec import load_deployments
from orchestration.events import TRIGGER_PARAMETERS, ListingsObject, arrival, drift, send
from tests.services.conftest import (
    PrefectServer,
    Served,
    read_deployment_runs,
    read_deployment_triggers,
    read_served_deployments,
    wait_for,
    wait_for_final_states,
)

# Deployments with triggers run a flow that takes the event's object (retrain_on_new_data).
TRIGGERED = [spec for spec in load_deployments() if spec.triggers]


def test_an_arrival_runs_the_triggered_deployment_with_the_events_object(
    prefect_server: PrefectServer, served: Served, tmp_path: Path
) -> None:
    assert TRIGGERED, "conf/deployments.yaml has no deployment with triggers"
    spec = TRIGGERED[0]
    client = prefect_server.client()
    [deployment] = wait_for(
        lambda: [d for d in read_served_deployments(client) if d.name == spec.name],
        120,
        f"deployments.serve to register {spec.full_name}",
    )
    # Its triggers are created after it: an event sent before them would start nothing.
    wait_for(
        lambda: len(read_deployment_triggers(client, deployment)) == len(spec.triggers),
        60,
        f"the automations of {spec.full_name}'s triggers",
    )
    # The files need not exist: what counts is which runs the events start, with what.
    new = ListingsObject(str(tmp_path / "arrived.csv"), f"fingerprint-{uuid4()}", size=10)
    unpriced = ListingsObject(str(tmp_path / "to-score.csv"), f"fp-{uuid4()}", has_price=False)

    def started() -> list[FlowRun]:
        """This test's runs (other tests may send events of their own)."""
        ours = {new.source, unpriced.source}
        runs = read_deployment_runs(client, deployment.id)
        return [run for run in runs if run.parameters.get("source") in ours]

    # Drift on data without prices matches no trigger; the arrival after it matches one.
    send([drift(unpriced, {"reason": "test"}), arrival(new, "upload")])
    wait_for(started, 120, f"the server's automation to run {spec.full_name}")
    time.sleep(10)  # time for a wrongly matched drift event to start a run too
    [flow_run] = started()
    expected = {"source": new.source, "fingerprint": new.fingerprint, "origin": "upload"}
    assert set(TRIGGER_PARAMETERS) == set(expected)
    assert {key: flow_run.parameters.get(key) for key in expected} == expected
    # The deployment's own parameters stay (the trigger adds the event's).
    assert flow_run.parameters.get("overrides") == spec.parameters["overrides"]
    wait_for_final_states(client, [flow_run.id], 600, served.process)
