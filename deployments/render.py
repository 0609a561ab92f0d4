"""Write prefect.yaml from conf/deployments.yaml: `python -m deployments.render [--check]`.

prefect.yaml defines the same deployments as `python -m deployments.serve`, for a process work
pool: `prefect deploy --all` registers them, `prefect worker start --pool <pool>` runs them.
`--check` writes nothing and exits 1 when prefect.yaml is not what conf/ says.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from importlib.metadata import version
from pathlib import Path
from typing import Any

import yaml

from deployments.spec import (
    FLOW_FILE_ENTRYPOINT,
    PROJECT_ROOT,
    DeploymentsFileError,
    DeploymentSpec,
    load_deployments,
)

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
    return {
        "name": spec.name,
        "description": spec.description,
        "entrypoint": FLOW_FILE_ENTRYPOINT,
        "tags": spec.tags,
        "parameters": spec.parameters,
        "schedules": [{"cron": spec.cron, "timezone": spec.timezone, "active": True}],
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
    parser = argparse.ArgumentParser(prog="python -m deployments.render", description=__doc__)
    parser.add_argument("--check", action="store_true", help="exit 1 if prefect.yaml is stale")
    parser.add_argument("--output", type=Path, default=PREFECT_YAML)
    args = parser.parse_args(argv)
    try:
        text = render(load_deployments())
    except DeploymentsFileError as error:
        sys.stderr.write(f"error: {error}\n")
        return 2
    current = args.output.read_text() if args.output.exists() else ""
    if args.check:
        if current != text:
            sys.stderr.write(f"{args.output} is stale: run python -m deployments.render\n")
            return 1
        return 0
    if current != text:
        args.output.write_text(text)
        sys.stdout.write(f"wrote {args.output}\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
