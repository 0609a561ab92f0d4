"""Write prefect.yaml from conf/deployments.yaml: `python -m deployments.render [--check]`.

prefect.yaml defines the same deployments as `python -m deployments.serve` (flows, schedules,
event triggers, parameters), for a process work pool: `prefect deploy --all` registers them (and
their triggers as automations), `prefect worker start --pool <pool>` runs them.
`--check` writes nothing and exits 1 when prefect.yaml is not what conf/ says.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from importlib.metadata import version
from typing import Any

import yaml

from deployments.spec import (
    PROJECT_ROOT,
    DeploymentsFileError,
    DeploymentSpec,
    load_deployments,
)
from steps.common.generated_file import generated_file_main

PREFECT_YAML = PROJECT_ROOT / "prefect.yaml"
_HEADER = """\
# Generated from conf/deployments.yaml by `python -m deployments.render`; edit that file instead.
# Deploy from the project root (the worker runs the flows there):
#   prefect work-pool create local-process --type process
#   prefect deploy --all
#   prefect worker start --pool local-process
# No pull section: prefect deploy records the directory it ran in as the flows' working directory.
"""


def deployment_entry(spec: DeploymentSpec) -> dict[str, Any]:
    """One deployment as `prefect deploy` reads it: no cron is an empty `schedules:` (left out,
    an interactive `prefect deploy` would ask for one), no trigger an empty `triggers:`."""
    schedules = (
        []
        if spec.cron is None
        else [{"cron": spec.cron, "timezone": spec.timezone, "active": True}]
    )
    return {
        "name": spec.name,
        "description": spec.description,
        "entrypoint": spec.deployable.file_entrypoint,
        "tags": spec.tags,
        "parameters": spec.parameters,
        "schedules": schedules,
        "triggers": spec.trigger_definitions(),
        "concurrency_limit": {
            "limit": spec.concurrency_limit,
            "collision_strategy": spec.collision_strategy,
        },
        "work_pool": {"name": spec.work_pool, "work_queue_name": "default", "job_variables": {}},
    }


def render(specs: Sequence[DeploymentSpec]) -> str:
    document = {
        "name": "nyc-price-pipeline",
        "prefect-version": version("prefect"),
        "build": None,
        "push": None,
        "deployments": [deployment_entry(spec) for spec in specs],
    }
    return _HEADER + yaml.safe_dump(document, sort_keys=False, width=100)


def main(argv: Sequence[str] | None = None) -> int:
    return generated_file_main(
        argv,
        prog="python -m deployments.render",
        description=__doc__,
        output=PREFECT_YAML,
        render=lambda: render(load_deployments()),
        input_errors=(DeploymentsFileError,),
    )


if __name__ == "__main__":
    sys.exit(main())
