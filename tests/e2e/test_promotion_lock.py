"""The promotion lock between real OS processes on one SQLite store, without any training.

A holder in another process that is SIGKILLed loses the lock one lease later; a live holder
keeps it past a waiter's timeout, and the waiter's message names it (pid, run, since when).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import mlflow
import pytest

from steps.registry.promotion_lock import PromotionLock, PromotionLockTimeout
from tests.e2e.conftest import Workspace

NAME = "lock_test"
LEASE_S = 2.0
# Takes the lock in its own process, says so, then holds it (beating) or dies on SIGKILL.
_HOLDER = """
import os, signal, sys, time
import mlflow
from steps.registry.promotion_lock import PromotionLock
client = mlflow.MlflowClient()
run = client.create_run(client.get_experiment_by_name("lock").experiment_id).info.run_id
lock = PromotionLock(sys.argv[1], run, timeout_s=60, lease_s=float(sys.argv[2]))
lock.acquire()
print("held", lock.ticket, run, flush=True)
if sys.argv[3] == "die":
    os.kill(os.getpid(), signal.SIGKILL)
time.sleep(120)
"""


@pytest.fixture
def store(workspace: Workspace) -> Iterator[Workspace]:
    mlflow.set_tracking_uri(workspace.tracking_uri)
    (workspace.root / "mlruns").mkdir(exist_ok=True)
    workspace.client().create_experiment("lock")
    yield workspace


def _holder(store: Workspace, fate: str) -> tuple[subprocess.Popen[str], str]:
    process = subprocess.Popen(
        [sys.executable, "-c", _HOLDER, NAME, str(LEASE_S), fate],
        cwd=Path(__file__).resolve().parents[2],
        env=os.environ | {"MLFLOW_TRACKING_URI": store.tracking_uri},
        stdout=subprocess.PIPE,
        text=True,
    )
    assert process.stdout is not None
    line = process.stdout.readline()
    assert line.startswith("held"), f"the holder did not take the lock: {line!r}"
    return process, line.split()[2]


def _own_run(store: Workspace) -> str:
    client = store.client()
    experiment = client.get_experiment_by_name("lock")
    assert experiment is not None
    return client.create_run(experiment.experiment_id).info.run_id


def test_a_sigkilled_holder_loses_the_lock_one_lease_later(store: Workspace) -> None:
    holder, _ = _holder(store, "die")
    assert holder.wait(timeout=60) == -signal.SIGKILL
    lock = PromotionLock(NAME, _own_run(store), timeout_s=60, lease_s=LEASE_S)
    with lock.held():
        assert LEASE_S <= lock.waited_s < 30
        lock.fence()
        live = store.client().search_model_versions(f"name = '{NAME}.promotion-lock'")
        assert [str(v.version) for v in live] == [lock.ticket] == ["2"]
    assert store.client().search_model_versions(f"name = '{NAME}.promotion-lock'") == []


def test_a_live_holder_keeps_the_lock_and_the_waiter_says_who_holds_it(store: Workspace) -> None:
    holder, holder_run = _holder(store, "hold")
    try:
        # Waiting two leases: a live holder beats on, so a lease alone never lets it be reclaimed.
        lock = PromotionLock(NAME, _own_run(store), timeout_s=2 * LEASE_S, lease_s=LEASE_S)
        with pytest.raises(PromotionLockTimeout) as refused:
            lock.acquire()
        lock.release()
    finally:
        holder.kill()
        holder.wait(timeout=30)
    message = str(refused.value)
    assert f"pid {holder.pid} on host" in message
    assert f"MLflow run {holder_run}" in message
    assert "holding it since 20" in message
    assert "raise promotion.lock_timeout_s" in message
    live = store.client().search_model_versions(f"name = '{NAME}.promotion-lock'")
    assert [str(v.version) for v in live] == ["1"]  # the waiter took its own ticket back
