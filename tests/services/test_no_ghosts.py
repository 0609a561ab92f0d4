"""No ghosts: killed pipelines leave no RUNNING MLflow run and no temporary Prefect server.

Real `python -m flows.train_pipeline` processes on Prefect's temporary local API (no
PREFECT_API_URL; each its own PREFECT_HOME), one SQLite MLflow store, killed from outside while
`train` runs: SIGKILL of the whole process tree, SIGKILL of the flow process alone, SIGTERM.
A pipeline kept alive (its train step stopped with SIGSTOP) while another one starts shows that
a live run is never reaped.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import mlflow
import psutil
import pytest
from mlflow.entities import Run

from steps.contract import FLOW_RUN_TAG, OWNER_PID_TAG, PARENT_RUN_TAG, REAPED_TAG, STEP_TAG
from tests.services.conftest import base_env, wait_for

SMALL = ["data.demo_rows=2000", "task.retries=0"]
EXPERIMENT = "nyc_airbnb_price"


@dataclass
class Store:
    root: Path
    uri: str

    def client(self) -> mlflow.MlflowClient:
        return mlflow.MlflowClient(tracking_uri=self.uri)

    def runs(self) -> list[Run]:
        experiment = self.client().get_experiment_by_name(EXPERIMENT)
        if experiment is None:
            return []
        return list(self.client().search_runs([experiment.experiment_id], max_results=1000))

    def env(self, name: str) -> dict[str, str]:
        (self.root / name).mkdir(exist_ok=True)
        return base_env(self.root / name) | {
            "MLFLOW_TRACKING_URI": self.uri,
            "WANDB_MODE": "disabled",
        }


@pytest.fixture
def store(tmp_path: Path) -> Store:
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    mlflow.MlflowClient(tracking_uri=uri).search_experiments(max_results=1)  # schema, once
    return Store(tmp_path, uri)


@contextlib.contextmanager
def pipeline(store: Store, name: str, *overrides: str) -> Iterator[subprocess.Popen[bytes]]:
    """A pipeline process with its output in <name>.log; whatever is left of it is killed."""
    log = (store.root / f"{name}.log").open("wb")
    popen = subprocess.Popen(
        [sys.executable, "-m", "flows.train_pipeline", *SMALL, *overrides],
        cwd=store.root,
        env=store.env(name),
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        yield popen
    finally:
        kill_tree(popen.pid)
        popen.wait()
        log.close()


def kill_tree(pid: int) -> None:
    with contextlib.suppress(psutil.NoSuchProcess):
        root = psutil.Process(pid)
        for process in [root, *root.children(recursive=True)]:
            with contextlib.suppress(psutil.NoSuchProcess):
                process.kill()


def flow_runs(store: Store, flow_pid: int) -> list[Run]:
    """The runs that pipeline process opened: the ones its parent run's flow run id tags."""
    parents = [
        run
        for run in store.runs()
        if run.data.tags.get(STEP_TAG) == "pipeline"
        and run.data.tags.get(OWNER_PID_TAG) == str(flow_pid)
    ]
    if not parents:
        return []
    flow_run_id = parents[0].data.tags.get(FLOW_RUN_TAG)
    return [run for run in store.runs() if run.data.tags.get(FLOW_RUN_TAG) == flow_run_id]


def running_train_pid(store: Store, flow_pid: int) -> int | None:
    """The pid of the train entry point once its process has taken its run over."""
    for run in flow_runs(store, flow_pid):
        owner = run.data.tags.get(OWNER_PID_TAG)
        if (
            run.data.tags.get(STEP_TAG) == "train"
            and run.info.status == "RUNNING"
            and owner
            and owner != str(flow_pid)
        ):
            return int(owner)
    return None


def wait_for_train(store: Store, popen: subprocess.Popen[bytes]) -> int:
    def started() -> int | None:
        assert popen.poll() is None, f"pipeline exited early ({popen.returncode})"
        return running_train_pid(store, popen.pid)

    return int(wait_for(started, 300, "the train step to start", interval_s=0.2))


def temporary_server(flow_pid: int) -> psutil.Process:
    for child in psutil.Process(flow_pid).children(recursive=True):
        with contextlib.suppress(psutil.Error):
            if "uvicorn" in " ".join(child.cmdline()):
                return child
    raise AssertionError(f"no temporary Prefect server under pid {flow_pid}")


def gone(process: psutil.Process) -> bool:
    """Exited (a zombie not yet reaped by its new parent counts as exited)."""
    try:
        return not process.is_running() or process.status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def statuses(runs: list[Run]) -> dict[str, str]:
    return {run.data.tags.get(STEP_TAG, "?"): run.info.status for run in runs}


def run_to_end(store: Store, name: str, *overrides: str) -> int:
    with pipeline(store, name, *overrides) as popen:
        code = popen.wait(timeout=600)
    return code


def test_killed_pipelines_are_reaped_and_a_live_one_is_not(store: Store) -> None:
    # 1. SIGKILL of the whole process tree (flow, warm-fork server, train, temporary API).
    with pipeline(store, "tree-killed") as tree:
        wait_for_train(store, tree)
        kill_tree(tree.pid)
        tree.wait()
    ghosts_of_tree = [r for r in flow_runs(store, tree.pid) if r.info.status == "RUNNING"]
    assert {r.data.tags[STEP_TAG] for r in ghosts_of_tree} >= {"pipeline", "train"}

    # 2. SIGKILL of the flow process alone: its temporary API server goes with it.
    with pipeline(store, "flow-killed") as alone:
        wait_for_train(store, alone)
        server = temporary_server(alone.pid)
        os.kill(alone.pid, signal.SIGKILL)
        alone.wait()
        started = time.monotonic()
        wait_for(lambda: gone(server), 30, "the temporary server to stop", 0.2)
        server_stop_s = time.monotonic() - started
    sys.stderr.write(f"temporary server gone {server_stop_s:.1f} s after the flow's SIGKILL\n")
    parent_of_alone = [
        r for r in flow_runs(store, alone.pid) if r.data.tags[STEP_TAG] == "pipeline"
    ]
    assert parent_of_alone[0].info.status == "RUNNING"

    # 3. A live pipeline (its train step paused) while the next pipeline starts.
    with pipeline(store, "live") as live:
        train_pid = wait_for_train(store, live)
        os.kill(train_pid, signal.SIGSTOP)
        try:
            assert run_to_end(store, "reaper", "main.steps=get_data") == 0, (
                store.root / "reaper.log"
            ).read_text()[-3000:]
            live_runs = statuses(flow_runs(store, live.pid))
            assert live_runs["pipeline"] == "RUNNING" and live_runs["train"] == "RUNNING"
        finally:
            os.kill(train_pid, signal.SIGCONT)
        assert live.wait(timeout=600) == 0, (store.root / "live.log").read_text()[-3000:]
    assert set(statuses(flow_runs(store, live.pid)).values()) == {"FINISHED"}

    # The killed pipelines' runs were marked KILLED, with the reason; none is left RUNNING.
    for run_id in [r.info.run_id for r in ghosts_of_tree] + [parent_of_alone[0].info.run_id]:
        run = store.client().get_run(run_id)
        assert run.info.status == "KILLED", (run.data.tags.get(STEP_TAG), run.info.status)
        assert (
            "no longer running" in run.data.tags[REAPED_TAG]
            or "parent run" in (run.data.tags[REAPED_TAG])
        )
    assert [r for r in store.runs() if r.info.status == "RUNNING"] == []


def test_sigterm_stops_the_pipeline_and_ends_its_runs(store: Store) -> None:
    with pipeline(store, "terminated") as popen:
        wait_for_train(store, popen)
        os.kill(popen.pid, signal.SIGTERM)
        code = popen.wait(timeout=120)
        log = (store.root / "terminated.log").read_text()
        assert code == 143, log[-3000:]
    runs = statuses(flow_runs(store, popen.pid))
    assert runs["pipeline"] == "FAILED", runs
    assert runs["train"] == "KILLED", runs
    assert not any(status == "RUNNING" for status in runs.values())
    assert "Traceback" not in log, log[-3000:]
    children = [r for r in flow_runs(store, popen.pid) if r.data.tags.get(PARENT_RUN_TAG)]
    assert children


def test_a_watchdog_stops_its_process_when_the_owner_is_killed(tmp_path: Path) -> None:
    """processes/lifeline.py on its own: the owner starts a process and its watchdog, then dies by
    SIGKILL (no atexit, no finally); the watched process goes within seconds."""
    owner_code = (
        "import subprocess, sys, time\n"
        "from processes.lifeline import watch\n"
        "child = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(600)'])\n"
        "watch(child.pid)\n"
        "print(child.pid, flush=True)\n"
        "time.sleep(600)\n"
    )
    owner = subprocess.Popen(
        [sys.executable, "-c", owner_code],
        cwd=Path(__file__).resolve().parents[2],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert owner.stdout is not None
    watched = psutil.Process(int(owner.stdout.readline()))
    try:
        assert watched.is_running()
        owner.kill()
        owner.wait()
        wait_for(lambda: gone(watched), 30, "the watched process to stop", 0.2)
    finally:
        kill_tree(watched.pid)
