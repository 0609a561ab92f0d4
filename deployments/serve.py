"""Serve the pipeline's deployments (conf/deployments.yaml) from this process.

    PREFECT_API_URL=http://127.0.0.1:4200/api python -m deployments.serve [--limit N]

Registers every deployment with its cron schedule, timezone, parameters and concurrency limit
on the Prefect server, then runs their scheduled and triggered runs as subprocesses until
stopped (Ctrl-C / SIGTERM). Schedules stay active when it stops (no pause on shutdown), so a
restarted server process picks them up again.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from prefect import serve
from prefect.client.schemas.objects import ConcurrencyLimitConfig, ConcurrencyLimitStrategy
from prefect.client.schemas.schedules import CronSchedule
from prefect.deployments.runner import EntrypointType, RunnerDeployment

from deployments.spec import DeploymentsFileError, DeploymentSpec, load_deployments
from flows.train_pipeline import train_pipeline
from orchestration.runtime import prepare_process


def runner_deployment(spec: DeploymentSpec) -> RunnerDeployment:
    """The deployment `spec` describes, for `prefect.serve`."""
    deployment = train_pipeline.to_deployment(
        name=spec.name,
        description=spec.description,
        schedules=[CronSchedule(cron=spec.cron, timezone=spec.timezone)],
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
    for spec in specs:
        sys.stdout.write(f"serving train_pipeline/{spec.name}: '{spec.cron}' {spec.timezone}\n")
    sys.stdout.flush()
    serve(*[runner_deployment(spec) for spec in specs], pause_on_shutdown=False, limit=args.limit)
    return 0


if __name__ == "__main__":
    sys.exit(main())
