"""The one Prefect task that runs an MLflow entry point as a retryable unit.

Each attempt creates a fresh child run under the pipeline's parent run, hands it to
`mlflow.projects.run`, waits with a deadline that really stops the step (its whole process tree
is terminated), and returns a `StepResult` read back from the finished run.
"""

from __future__ import annotations

import dataclasses
import os
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import mlflow
import psutil
from mlflow.entities import Param, RunStatus, SourceType
from mlflow.projects.utils import MLFLOW_LOCAL_BACKEND_RUN_ID_CONFIG, get_git_commit
from mlflow.utils.mlflow_tags import (
    MLFLOW_GIT_COMMIT,
    MLFLOW_PROJECT_ENTRY_POINT,
    MLFLOW_SOURCE_NAME,
    MLFLOW_SOURCE_TYPE,
)
from prefect import get_run_logger, task
from prefect.context import TaskRunContext
from prefect.states import Completed, State

from processes.lifeline import terminate_family
from processes.run_owner import owner_tags
from steps.common.url_secrets import for_the_record
from steps.contract import (
    ATTEMPT_TAG,
    CACHE_TAG,
    ERROR_KIND_TAG,
    ERROR_MESSAGE_TAG,
    FLOW_RUN_TAG,
    PARENT_RUN_TAG,
    PERMANENT,
    STEP_TAG,
    TASK_RUN_TAG,
    TRANSIENT,
    is_unavailable_store,
    normalize,
)
from tasks.step_cache import find_cached_run, vouch_tag
from tasks.step_failure import StepFailed, is_transient, retry_if_transient
from tasks.step_result import StepResult
from tasks.tracking_store import outputs_of, result_of, use_environment
from warm_backend.backend import STEP_ENVIRONMENT_CONFIG

PROJECT_ROOT = Path(__file__).resolve().parents[1]


def interpreter_on_path() -> None:
    """Make `python` in MLproject commands this interpreter, even in an unactivated venv."""
    bin_dir = str(Path(sys.executable).parent)
    path = os.environ.get("PATH", "")
    if path.split(os.pathsep)[0] != bin_dir:
        os.environ["PATH"] = os.pathsep.join([bin_dir, path]) if path else bin_dir


def terminate_tree(pid: int) -> None:
    """SIGTERM a step's process and all its descendants, then SIGKILL whatever is left."""
    try:
        root = psutil.Process(pid)
    except psutil.NoSuchProcess:
        return
    terminate_family(root)


def _step_tags(step: str, parent_run_id: str | None, flow_run_id: str | None) -> dict[str, str]:
    """What `mlflow run` would tag the run with, plus the pipeline's lineage."""
    tags = {
        STEP_TAG: step,
        MLFLOW_SOURCE_NAME: str(PROJECT_ROOT),
        MLFLOW_SOURCE_TYPE: SourceType.to_string(SourceType.PROJECT),
        MLFLOW_PROJECT_ENTRY_POINT: step,
    }
    commit = get_git_commit(str(PROJECT_ROOT))
    if commit:
        tags[MLFLOW_GIT_COMMIT] = commit
    if parent_run_id:
        tags[PARENT_RUN_TAG] = parent_run_id
    if flow_run_id:
        tags[FLOW_RUN_TAG] = flow_run_id
    context = TaskRunContext.get()
    if context is not None:
        tags[TASK_RUN_TAG] = str(context.task_run.id)
        tags[ATTEMPT_TAG] = str(context.task_run.run_count)
    return tags


def cache_hit(result: StepResult) -> Any:
    """The final state of a step whose finished MLflow run stood in for it: Completed, named
    "Cached" as Prefect's own cache hits are, so the Prefect UI tells a step that ran from one
    that was reused (e.g. the upstream steps of a flow run retried from the UI).

    A task returning a State ends in that state; futures resolve to its data (the StepResult),
    a direct call of the task returns the State itself (`step_result` unwraps it). Typed Any
    for the task's declared StepResult."""
    return Completed(
        name="Cached", message=f"reused finished MLflow run {result.run_id}", data=result
    )


def step_result(outcome: StepResult | State[Any]) -> StepResult:
    """What a direct call of run_entry_point handed back, as a StepResult."""
    value = outcome.result() if isinstance(outcome, State) else outcome
    assert isinstance(value, StepResult)
    return value


@task(
    name="run-entry-point",
    task_run_name="{step}",
    retry_condition_fn=retry_if_transient,
    persist_result=False,
)
def run_entry_point(
    step: str,
    parameters: Mapping[str, Any],
    expected_outputs: Sequence[str],
    experiment_id: str,
    parent_run_id: str | None = None,
    flow_run_id: str | None = None,
    env_manager: str = "local",
    timeout_s: float = 1800.0,
    cache_key: str | None = None,
    backend: str = "local",
    environment: Mapping[str, str] | None = None,
    step_environment: Mapping[str, str] | None = None,
) -> StepResult:
    """Run entry point `step` of the project's MLproject and return what it produced.

    With `cache_key`, a finished run with the same key stands for the step (see step_cache.py)
    and the task run ends Completed named "Cached" (see `cache_hit`).
    `environment` carries the flow's store settings (tracking URI, W&B) to a task that runs in
    another process, such as a Dask worker; `step_environment` holds variables for the entry
    point's process alone (a sweep's thread budget per step; applied by the warm-fork backend).
    """
    if environment:
        use_environment(environment)
    if cache_key:
        cached = find_cached_run(experiment_id, cache_key, step, expected_outputs)
        if cached is not None:
            get_run_logger().info(
                "%s: cache hit, reusing finished run %s (same parameters, inputs and code)",
                step,
                cached.info.run_id,
            )
            return cache_hit(result_of(cached, step, cached=True))
    try:
        return _run(
            step,
            parameters,
            expected_outputs,
            experiment_id,
            parent_run_id,
            flow_run_id,
            env_manager,
            timeout_s,
            cache_key,
            backend,
            step_environment or {},
        )
    except StepFailed:
        raise
    except Exception as error:
        if is_unavailable_store(error):
            raise StepFailed(
                step, "", None, True, f"the tracking store is unavailable ({type(error).__name__})"
            ) from error
        raise


def _run(
    step: str,
    parameters: Mapping[str, Any],
    expected_outputs: Sequence[str],
    experiment_id: str,
    parent_run_id: str | None,
    flow_run_id: str | None,
    env_manager: str,
    timeout_s: float,
    cache_key: str | None,
    backend: str = "local",
    step_environment: Mapping[str, str] | None = None,
) -> StepResult:
    logger = get_run_logger()
    interpreter_on_path()
    client = mlflow.MlflowClient()
    tags = _step_tags(step, parent_run_id, flow_run_id)
    tags.update(owner_tags())  # until the entry point's own process takes the run over
    if cache_key:
        tags[CACHE_TAG] = cache_key
    child = client.create_run(experiment_id, run_name=step, tags=tags)
    run_id = child.info.run_id
    normalized = normalize(parameters)
    # mlflow.projects logs parameters only for runs it creates itself.
    recorded = for_the_record(normalized)
    client.log_batch(run_id, params=[Param(key, value) for key, value in recorded.items()])
    started = time.monotonic()
    logger.info("%s: MLflow run %s", step, run_id)
    submitted = mlflow.projects.run(
        uri=str(PROJECT_ROOT),
        entry_point=step,
        parameters=normalized,
        experiment_id=experiment_id,
        run_id=run_id,
        env_manager=env_manager,
        synchronous=False,
        # "local" or "warm-fork" (warm_backend); mlflow passes run_id on only to "local".
        backend=backend,
        backend_config={
            MLFLOW_LOCAL_BACKEND_RUN_ID_CONFIG: run_id,
            STEP_ENVIRONMENT_CONFIG: dict(step_environment or {}),
        },
    )
    process = submitted.command_proc
    try:
        exit_code: int | None = process.wait(timeout=timeout_s)
        timed_out = False
    except subprocess.TimeoutExpired:
        terminate_tree(process.pid)
        exit_code = process.wait()
        timed_out = True
    except BaseException:  # interrupted or cancelled: leave no orphan behind
        terminate_tree(process.pid)
        client.set_terminated(run_id, RunStatus.to_string(RunStatus.KILLED))
        raise
    wall = time.monotonic() - started

    run = client.get_run(run_id)
    if exit_code == 0 and not timed_out:
        if not RunStatus.is_terminated(RunStatus.from_string(run.info.status)):
            client.set_terminated(run_id, "FINISHED")
        finished = client.get_run(run_id)
        missing = sorted(set(expected_outputs) - set(outputs_of(finished)))
        if missing:
            client.set_terminated(run_id, "FAILED")
            raise StepFailed(step, run_id, exit_code, False, f"did not publish outputs {missing}")
        if cache_key and parent_run_id:
            # The parent vouches for its child: a run elsewhere that merely claims the key is
            # never reused (tasks/step_cache.py).
            client.set_tag(parent_run_id, vouch_tag(run_id), cache_key)
        logger.info("%s finished in %.1f s", step, wall)
        return dataclasses.replace(result_of(finished, step), wall_seconds=wall)

    client.set_terminated(run_id, "FAILED")
    if timed_out:
        message = f"timed out after {timeout_s:.0f} s and was stopped"
        client.set_tag(run_id, ERROR_KIND_TAG, TRANSIENT)
        client.set_tag(run_id, ERROR_MESSAGE_TAG, message)
        raise StepFailed(step, run_id, exit_code, True, message)
    kind = run.data.tags.get(ERROR_KIND_TAG)
    message = run.data.tags.get(ERROR_MESSAGE_TAG) or (
        "the step's process died without reporting an error (killed by a signal or the OOM killer?)"
    )
    if kind is None:
        client.set_tag(
            run_id, ERROR_KIND_TAG, TRANSIENT if is_transient(exit_code, None) else PERMANENT
        )
        client.set_tag(run_id, ERROR_MESSAGE_TAG, message)
    raise StepFailed(step, run_id, exit_code, is_transient(exit_code, kind), message)
