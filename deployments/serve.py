"""Serve the project's deployments (conf/deployments.yaml) from this process.

    PREFECT_API_URL=http://127.0.0.1:4200/api python -m deployments.serve [--limit N]

Registers every deployment with its flow, cron schedule (if any), event triggers (if any),
timezone, parameters and concurrency limit on the Prefect server, then runs their scheduled and
triggered runs as subprocesses until stopped (Ctrl-C / SIGTERM). A deployment's event triggers
become automations of the server, which run the deployment when a matching event arrives.
Schedules stay active when it stops (no pause on shutdown), so a restarted server process picks
them up again.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from prefect import serve
from prefect.client.schemas.objects import ConcurrencyLimitConfig, ConcurrencyLimitStrategy
from prefect.client.schemas.schedules import CronSchedule
from prefect.deployments.runner import EntrypointType, RunnerDeployment
from prefect.events import DeploymentEventTrigger
from prefect.flows import Flow

from deployments.spec import DeployableFlow, DeploymentsFileError, DeploymentSpec, load_deployments
from orchestration.runtime import prepare_process


def load_flow(deployable: DeployableFlow) -> Flow[..., object]:
    """The flow object, imported only now: a deployment's flow is known here by its path."""
    flow = getattr(importlib.import_module(deployable.module), deployable.name)
    if not isinstance(flow, Flow):
        raise TypeError(f"{deployable.module_entrypoint} is not a Prefect flow")
    return flow


def event_triggers(spec: DeploymentSpec) -> list[DeploymentEventTrigger]:
    """The deployment's triggers, built from the same definitions as prefect.yaml's."""
    return [DeploymentEventTrigger.model_validate(d) for d in spec.trigger_definitions()]


def runner_deployment(spec: DeploymentSpec) -> RunnerDeployment:
    """The deployment `spec` describes, for `prefect.serve`."""
    schedules = [] if spec.cron is None else [CronSchedule(cron=spec.cron, timezone=spec.timezone)]
    deployment = load_flow(spec.deployable).to_deployment(
        name=spec.name,
        description=spec.description,
        schedules=schedules,
        triggers=event_triggers(spec),  # type: ignore[arg-type]
        parameters=spec.parameters,
        tags=spec.tags,
        concurrency_limit=ConcurrencyLimitConfig(
            limit=spec.concurrency_limit,
            collision_strategy=ConcurrencyLimitStrategy(spec.collision_strategy),
        ),
        # Importable from any working directory (the project is installed in the venv).
        entrypoint_type=EntrypointType.MODULE_PATH,
    )
    assert isinstance(deployment, RunnerDeployment)  # the sync call, outside an event loop
    return deployment


def describe(spec: DeploymentSpec) -> str:
    """One startup line: the deployment, when it runs, and on which events."""
    when = [f"'{spec.cron}' {spec.timezone}"] if spec.cron else []
    for trigger in spec.triggers:
        labels = "".join(f" {label}={value}" for label, value in trigger.match.items())
        when.append(f"on {trigger.event}{labels}")
    runs = "; ".join(when) or "by hand only (no schedule, no trigger)"
    beyond = "queued" if spec.collision_strategy == "ENQUEUE" else "cancelled"
    return (
        f"serving {spec.full_name}: {runs} "
        f"(at most {spec.concurrency_limit} at once, more are {beyond})"
    )


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m deployments.serve", description=__doc__)
    parser.add_argument(
        "--limit", type=int, default=None, help="most flow runs at once in this process"
    )
    args = parser.parse_args(argv)
    prepare_process()
    try:
        specs = load_deployments()
    except DeploymentsFileError as error:
        sys.stderr.write(f"error: {error}\n")
        return 2
    deployments = [runner_deployment(spec) for spec in specs]
    for spec in specs:
        sys.stdout.write(describe(spec) + "\n")
    sys.stdout.flush()
    serve(*deployments, pause_on_shutdown=False, limit=args.limit)
    return 0


if __name__ == "__main__":
    sys.exit(main())
