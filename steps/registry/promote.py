"""Entry point `promote`: register the best evaluated run once and point the alias at it.

Re-running is safe: a run that already has a version under the registered model reuses it, so
the registry never holds two versions of the same training run.
"""

from __future__ import annotations

import argparse
import logging
import re
import time

import mlflow
from mlflow.entities.model_registry import ModelVersion
from mlflow.exceptions import MlflowException

from steps.common.entrypoint import run_entry_point
from steps.common.errors import ConfigurationError, PreconditionError, TransientError
from steps.common.outputs import publish_output
from steps.common.tracking import step_run

logger = logging.getLogger(__name__)

EVALUATED_RUNS = "tags.`pipeline.step` = 'evaluate' and attributes.status = 'FINISHED'"
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]*$")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="promote", description=__doc__)
    parser.add_argument("--registered_model", required=True)
    parser.add_argument("--alias", required=True)
    parser.add_argument(
        "--filter", required=True, help="MLflow search filter, e.g. metrics.test_r2 > 0.3"
    )
    parser.add_argument("--order_by", required=True, help="e.g. metrics.test_mae ASC")
    parser.add_argument("--ready_timeout_s", type=float, default=300.0)
    return parser


def check_name(kind: str, value: str) -> str:
    if not _NAME.match(value):
        raise ConfigurationError(
            f"{kind} {value!r} must start with a letter or digit and use only letters, digits, "
            "'_', '.' and '-'"
        )
    return value


def best_evaluated_run(
    experiment_id: str, filter_string: str, order_by: str
) -> mlflow.entities.Run:
    """The best finished evaluate run of the experiment that passes the filter."""
    client = mlflow.MlflowClient()
    query = f"{EVALUATED_RUNS} and {filter_string}" if filter_string.strip() else EVALUATED_RUNS
    try:
        runs = client.search_runs([experiment_id], query, order_by=[order_by], max_results=1)
    except MlflowException as error:
        raise ConfigurationError(
            f"promotion.filter {filter_string!r} / promotion.order_by {order_by!r} is not a valid "
            f"MLflow search: {error.message}"
        ) from error
    if not runs:
        raise PreconditionError(
            f"no finished evaluate run in experiment {experiment_id} passes {filter_string!r}; "
            "nothing was registered (train a better model or relax promotion.filter)"
        )
    return runs[0]


def version_of_run(name: str, run_id: str) -> ModelVersion | None:
    """The version already registered for this training run, if any."""
    client = mlflow.MlflowClient()
    try:
        found = client.search_model_versions(f"name = '{name}' and run_id = '{run_id}'")
    except MlflowException:
        return None
    return min(found, key=lambda v: int(v.version)) if found else None


def wait_until_ready(name: str, version: str, timeout_s: float) -> ModelVersion:
    client = mlflow.MlflowClient()
    deadline = time.monotonic() + timeout_s
    while True:
        current = client.get_model_version(name, version)
        if current.status == "READY":
            return current
        if current.status == "FAILED_REGISTRATION":
            raise PreconditionError(
                f"{name} version {version} failed registration ({current.status_message}); "
                "it was not promoted"
            )
        if time.monotonic() > deadline:
            raise TransientError(
                f"{name} version {version} was not READY after {timeout_s:.0f} s "
                f"(status {current.status}); it was not promoted"
            )
        time.sleep(1.0)


def main(args: argparse.Namespace) -> None:
    name = check_name("main.registered_model", args.registered_model)
    alias = check_name("promotion.alias", args.alias)
    with step_run() as run:
        client = mlflow.MlflowClient()
        best = best_evaluated_run(run.info.experiment_id, args.filter, args.order_by)
        model_uri = best.data.tags.get("model_uri")
        if not model_uri:
            raise PreconditionError(f"evaluate run {best.info.run_id} does not name its model")
        training_run = mlflow.models.get_model_info(model_uri).run_id
        existing = version_of_run(name, training_run)
        if existing is None:
            registered = mlflow.register_model(model_uri, name)
            version = registered.version
            logger.info("registered %s as %s version %s", model_uri, name, version)
        else:
            version = existing.version
            logger.info(
                "run %s is already %s version %s; not registering again",
                training_run,
                name,
                version,
            )
        ready = wait_until_ready(name, str(version), args.ready_timeout_s)
        for key, value in best.data.metrics.items():
            client.set_model_version_tag(name, ready.version, key, str(value))
        client.set_model_version_tag(name, ready.version, "evaluate_run_id", best.info.run_id)
        client.set_registered_model_alias(name, alias, ready.version)
        mlflow.set_tags(
            {
                "registry.model_name": name,
                "registry.version": str(ready.version),
                "registry.alias": alias,
                "registry.evaluate_run_id": best.info.run_id,
            }
        )
        mlflow.log_metric("registered_version", int(ready.version))
        publish_output("model_version", f"models:/{name}/{ready.version}")
        logger.info("%s@%s -> version %s", name, alias, ready.version)


if __name__ == "__main__":
    run_entry_point(build_parser(), main)
