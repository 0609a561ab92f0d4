"""Registry operations the promotion steps share: register once, wait, read and move aliases."""

from __future__ import annotations

import logging
import time
from typing import Any

import mlflow
from mlflow.entities.model_registry import ModelVersion
from mlflow.exceptions import MlflowException
from mlflow.utils.mlflow_tags import MLFLOW_GIT_COMMIT

from steps.common.errors import PreconditionError, TransientError
from steps.contract import DATA_SHA_TAG, FLOW_RUN_TAG, PARENT_RUN_TAG

logger = logging.getLogger(__name__)
_RUNS_URI = "runs:/"


def ensure_registered_model(name: str) -> None:
    client = mlflow.MlflowClient()
    try:
        client.get_registered_model(name)
    except MlflowException:
        try:
            client.create_registered_model(name)
        except MlflowException:  # created meanwhile by a concurrent promotion
            client.get_registered_model(name)


def alias_version(name: str, alias: str) -> str | None:
    """The version an alias points at, or None when it points nowhere yet."""
    try:
        return str(mlflow.MlflowClient().get_model_version_by_alias(name, alias).version)
    except MlflowException:
        return None


def version_of_run(name: str, run_id: str) -> ModelVersion | None:
    """The version already registered for this training run, if any (the oldest)."""
    found = mlflow.MlflowClient().search_model_versions(f"name = '{name}' and run_id = '{run_id}'")
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
        time.sleep(0.5)


def upstream_data_sha256(run_id: str, max_depth: int = 8) -> str | None:
    """Follow `runs:/` parameters upstream until the run that read the source data."""
    client = mlflow.MlflowClient()
    frontier = [run_id]
    for _ in range(max_depth):
        upstream = []
        for current in frontier:
            run = client.get_run(current)
            if DATA_SHA_TAG in run.data.tags:
                return run.data.tags[DATA_SHA_TAG]
            upstream += [
                value[len(_RUNS_URI) :].split("/", 1)[0]
                for value in run.data.params.values()
                if value.startswith(_RUNS_URI)
            ]
        if not upstream:
            return None
        frontier = list(dict.fromkeys(upstream))
    return None


def review_tags(training_run_id: str, scores: dict[str, float]) -> dict[str, str]:
    """What a reviewer needs on a version: data, code, orchestration lineage and scores."""
    run = mlflow.MlflowClient().get_run(training_run_id)
    tags: dict[str, Any] = {
        "data_sha256": upstream_data_sha256(training_run_id),
        "git_commit": run.data.tags.get(MLFLOW_GIT_COMMIT),
        "prefect_flow_run_id": run.data.tags.get(FLOW_RUN_TAG),
        "parent_run_id": run.data.tags.get(PARENT_RUN_TAG),
        "training_run_id": training_run_id,
        **{key: f"{value:.6g}" for key, value in scores.items()},
    }
    return {key: str(value) for key, value in tags.items() if value is not None}


def register_once(
    model_uri: str, name: str, training_run_id: str, tags: dict[str, str], ready_timeout_s: float
) -> tuple[ModelVersion, bool]:
    """The training run's version, registering it only if it has none; READY either way."""
    ensure_registered_model(name)
    existing = version_of_run(name, training_run_id)
    if existing is not None:
        logger.info("run %s is already %s version %s", training_run_id, name, existing.version)
        return wait_until_ready(name, str(existing.version), ready_timeout_s), False
    created = mlflow.register_model(model_uri, name, tags=tags, await_registration_for=0)
    logger.info("registered %s as %s version %s", model_uri, name, created.version)
    return wait_until_ready(name, str(created.version), ready_timeout_s), True


def point_alias(name: str, alias: str, version: str, use_stages: bool) -> None:
    """Move an alias (the source of truth) and, for older clients, the Production stage."""
    client = mlflow.MlflowClient()
    client.set_registered_model_alias(name, alias, version)
    if use_stages:
        client.transition_model_version_stage(
            name, version, "Production", archive_existing_versions=True
        )
