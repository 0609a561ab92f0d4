"""Which process owns an MLflow run, and reaping the RUNNING runs whose owner is gone.

A run killed with its process (SIGKILL, the OOM killer, a lost machine) would otherwise stay
RUNNING forever. Every run the pipeline opens is tagged with its owner: host, pid and the
process's start time (a pid can be reused; the pair cannot). The flow process owns the parent
run and each step run until the entry point's process takes it over (steps/common/tracking.py
writes the same tags). At pipeline start, `reap_ghosts` marks KILLED every RUNNING run of the
experiment whose owner on this host is no longer running, and every RUNNING child without an
owner of its own whose parent run is over. A run owned by another host cannot be judged from
here and is left as it is (its own host's next pipeline start reaps it).
"""

from __future__ import annotations

import logging
import socket
from dataclasses import dataclass

import mlflow
from mlflow.entities import Run, RunStatus
from mlflow.exceptions import MlflowException

from processes.lifeline import same_process
from steps.common.tracking import owner_tags
from steps.contract import (
    OWNER_HOST_TAG,
    OWNER_PID_TAG,
    OWNER_STARTED_TAG,
    PARENT_RUN_TAG,
    REAPED_TAG,
)

__all__ = ["owner_tags", "reap_ghosts"]

logger = logging.getLogger(__name__)

_PAGE = 1000


@dataclass(frozen=True)
class Verdict:
    """Whether a RUNNING run's owner is known to be gone, and why (for the run's tag)."""

    dead: bool
    reason: str


def judge_owner(tags: dict[str, str], host: str) -> Verdict | None:
    """Dead or alive by the run's owner tags; None when the run has no owner recorded."""
    owner_host = tags.get(OWNER_HOST_TAG)
    if not owner_host or OWNER_PID_TAG not in tags:
        return None
    owner = f"pid {tags[OWNER_PID_TAG]} on {owner_host}"
    if owner_host != host:
        return Verdict(False, f"owned by {owner}, which cannot be checked from {host}")
    try:
        pid, started = int(tags[OWNER_PID_TAG]), float(tags.get(OWNER_STARTED_TAG, "nan"))
    except ValueError:
        return Verdict(False, f"owner tags of {owner} unreadable")
    if same_process(pid, started) is not None:
        return Verdict(False, f"{owner} is still running")
    return Verdict(True, f"its owner ({owner}) is no longer running")


def _running_runs(client: mlflow.MlflowClient, experiment_id: str) -> list[Run]:
    runs: list[Run] = []
    token = None
    while True:
        page = client.search_runs(
            [experiment_id],
            filter_string="attributes.status = 'RUNNING'",
            max_results=_PAGE,
            page_token=token,
        )
        runs.extend(page)
        token = page.token
        if not token:
            return runs


def reap_ghosts(experiment_id: str) -> list[str]:
    """Mark KILLED the RUNNING runs of the experiment whose owner is gone; their ids."""
    client = mlflow.MlflowClient()
    host = socket.gethostname()
    running = {run.info.run_id: run for run in _running_runs(client, experiment_id)}
    verdicts: dict[str, Verdict | None] = {
        run_id: judge_owner(dict(run.data.tags), host) for run_id, run in running.items()
    }
    for run_id, verdict in list(verdicts.items()):
        if verdict is None:  # no owner of its own: it lives and dies with its parent run
            verdicts[run_id] = _judge_by_parent(client, running[run_id], verdicts)
    reaped = []
    for run_id, verdict in verdicts.items():
        if verdict is None or not verdict.dead:
            continue
        client.set_tag(run_id, REAPED_TAG, f"marked KILLED at pipeline start: {verdict.reason}")
        client.set_terminated(run_id, RunStatus.to_string(RunStatus.KILLED))
        logger.warning("run %s was left RUNNING; %s: marked KILLED", run_id, verdict.reason)
        reaped.append(run_id)
    return reaped


def _judge_by_parent(
    client: mlflow.MlflowClient, run: Run, verdicts: dict[str, Verdict | None]
) -> Verdict | None:
    parent_id = run.data.tags.get(PARENT_RUN_TAG)
    if not parent_id:
        return None  # nothing to judge it by: someone else's run, left alone
    if parent_id in verdicts:
        parent = verdicts[parent_id]
        if parent is not None and parent.dead:
            return Verdict(True, f"its parent run {parent_id} was reaped ({parent.reason})")
        return None
    try:
        status = client.get_run(parent_id).info.status
    except MlflowException:
        return None
    if RunStatus.is_terminated(RunStatus.from_string(status)):
        return Verdict(True, f"its parent run {parent_id} ended {status}")
    return None
