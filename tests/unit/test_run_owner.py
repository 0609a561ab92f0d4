"""Telling a run's live owner from a dead one: host, pid and start time."""

from __future__ import annotations

import os
import socket
import subprocess
import sys

import psutil

from processes import run_owner
from processes.run_owner import judge_owner, owner_tags
from steps.common import tracking

HOST = socket.gethostname()


def test_entry_points_and_tasks_write_the_same_owner_tags() -> None:
    assert tracking.owner_tags().keys() == owner_tags().keys()
    assert (tracking.OWNER_HOST_TAG, tracking.OWNER_PID_TAG, tracking.OWNER_STARTED_TAG) == (
        run_owner.OWNER_HOST_TAG,
        run_owner.OWNER_PID_TAG,
        run_owner.OWNER_STARTED_TAG,
    )


def test_this_live_process_is_not_judged_dead() -> None:
    verdict = judge_owner(owner_tags(), HOST)
    assert verdict is not None and not verdict.dead, verdict


def test_an_exited_process_is_dead() -> None:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    tags = {
        run_owner.OWNER_HOST_TAG: HOST,
        run_owner.OWNER_PID_TAG: str(child.pid),
        run_owner.OWNER_STARTED_TAG: repr(psutil.Process(child.pid).create_time()),
    }
    child.wait()
    verdict = judge_owner(tags, HOST)
    assert verdict is not None and verdict.dead
    assert f"pid {child.pid}" in verdict.reason


def test_a_reused_pid_is_not_the_owner() -> None:
    # This process's pid with another start time: the owner was an earlier process.
    tags = owner_tags() | {run_owner.OWNER_STARTED_TAG: repr(psutil.Process().create_time() - 60)}
    verdict = judge_owner(tags, HOST)
    assert verdict is not None and verdict.dead


def test_a_run_owned_by_another_host_is_left_alone() -> None:
    tags = owner_tags() | {run_owner.OWNER_HOST_TAG: "elsewhere", run_owner.OWNER_PID_TAG: "1"}
    verdict = judge_owner(tags, HOST)
    assert verdict is not None and not verdict.dead
    assert "cannot be checked" in verdict.reason


def test_a_run_without_owner_tags_has_no_verdict() -> None:
    assert judge_owner({"mlflow.runName": "x"}, HOST) is None
    assert judge_owner({run_owner.OWNER_PID_TAG: str(os.getpid())}, HOST) is None
