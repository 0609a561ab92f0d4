"""The warm-fork MLflow project backend: same outputs, exit codes, timeouts, crash survival."""

from __future__ import annotations

import json
import os
import signal
import textwrap
import time
from pathlib import Path
from typing import Any

import mlflow
import psutil
import pytest
from mlflow.projects.utils import MLFLOW_LOCAL_BACKEND_RUN_ID_CONFIG

from tasks.run_entry_point import PROJECT_ROOT, interpreter_on_path, run_entry_point
from tasks.step_failure import StepFailed
from tests.e2e.conftest import Workspace
from warm_backend import client
from warm_backend.backend import STEP_ENVIRONMENT_CONFIG, WarmSubmittedRun

PROBE_MLPROJECT = """
name: warm_probe
entry_points:
  probe:
    parameters:
      code: {type: string, default: "0"}
      sleep: {type: string, default: "0"}
      out: {type: string, default: ""}
    command: "python -m warm_probe --code {code} --sleep {sleep} --out {out}"
  crash:
    command: "python -m warm_probe_crash"
  shell:
    command: "echo from-shell && exit 4"
  threads:
    parameters:
      out: {type: string, default: ""}
    command: "python -m warm_threads --out {out}"
"""

THREADS_PROBE = """
import argparse, json, os
import torch
from threadpoolctl import threadpool_info
parser = argparse.ArgumentParser()
parser.add_argument("--out")
args = parser.parse_args()
with open(args.out, "w") as handle:
    json.dump({
        "torch": torch.get_num_threads(),
        "pools": sorted({pool["num_threads"] for pool in threadpool_info()}),
        "omp": os.environ.get("OMP_NUM_THREADS"),
        "loky": os.environ.get("LOKY_MAX_CPU_COUNT"),
    }, handle)
"""

PROBE = """
import argparse, json, os, sys, time
parser = argparse.ArgumentParser()
parser.add_argument("--code", type=int, default=0)
parser.add_argument("--sleep", type=float, default=0)
parser.add_argument("--out", default="")
args = parser.parse_args()
if args.out:
    with open(args.out, "w") as handle:
        json.dump({
            "name": __name__, "argv": sys.argv[1:], "cwd": os.getcwd(), "pid": os.getpid(),
            "run_id": os.environ.get("MLFLOW_RUN_ID"), "probe": os.environ.get("WARM_PROBE"),
            "pandas_preloaded": "pandas" in sys.modules,
        }, handle)
time.sleep(args.sleep)
sys.exit(args.code)
"""


@pytest.fixture
def probe_project(workspace: Workspace) -> Path:
    project = workspace.root / "probe_project"
    project.mkdir()
    (project / "MLproject").write_text(PROBE_MLPROJECT)
    (project / "warm_probe.py").write_text(textwrap.dedent(PROBE))
    (project / "warm_probe_crash.py").write_text("raise RuntimeError('boom')\n")
    (project / "warm_threads.py").write_text(textwrap.dedent(THREADS_PROBE))
    interpreter_on_path()  # `python` in MLproject commands is this interpreter, as in the flow
    return project


def _experiment(workspace: Workspace) -> str:
    mlflow.set_tracking_uri(workspace.tracking_uri)
    client_ = workspace.client()
    found = client_.get_experiment_by_name("warm")
    return found.experiment_id if found else client_.create_experiment("warm")


def _start(
    workspace: Workspace,
    uri: Path,
    entry_point: str,
    backend: str = "warm-fork",
    step_environment: dict[str, str] | None = None,
    **params: Any,
) -> Any:
    experiment_id = _experiment(workspace)
    run_id = workspace.client().create_run(experiment_id).info.run_id
    return mlflow.projects.run(
        uri=str(uri),
        entry_point=entry_point,
        parameters={key: str(value) for key, value in params.items()},
        experiment_id=experiment_id,
        run_id=run_id,
        env_manager="local",
        synchronous=False,
        backend=backend,
        backend_config={
            MLFLOW_LOCAL_BACKEND_RUN_ID_CONFIG: run_id,
            STEP_ENVIRONMENT_CONFIG: step_environment or {},
        },
    )


def test_a_step_gives_the_same_outputs_as_on_the_local_backend(workspace: Workspace) -> None:
    interpreter_on_path()
    figures = {}
    for backend in ("warm-fork", "local"):
        submitted = _start(workspace, PROJECT_ROOT, "get_data", backend, demo_rows=600)
        assert submitted.command_proc.wait(timeout=300) == 0
        run = workspace.client().get_run(submitted.run_id)
        assert run.info.status == "FINISHED"
        assert run.data.tags["output.raw_data"].startswith(f"runs:/{submitted.run_id}/")
        assert run.data.tags["mlflow.project.backend"] == backend
        figures[backend] = (run.data.metrics["rows_out"], run.data.tags["data.input_sha256"])
        if backend == "warm-fork":
            assert isinstance(submitted, WarmSubmittedRun)
            assert submitted.forked
    assert figures["warm-fork"] == figures["local"]


def test_the_child_gets_the_request_environment_cwd_and_argv(
    workspace: Workspace, probe_project: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("WARM_PROBE", "set-after-the-server-started")
    out = workspace.root / "probe.json"
    submitted = _start(workspace, probe_project, "probe", out=out)
    assert submitted.forked
    assert submitted.wait()
    seen = json.loads(out.read_text())
    assert seen["name"] == "__main__"
    assert seen["argv"] == ["--code", "0", "--sleep", "0", "--out", str(out)]
    assert seen["cwd"] == str(probe_project)
    assert seen["run_id"] == submitted.run_id
    assert seen["probe"] == "set-after-the-server-started"
    assert seen["pid"] == submitted.command_proc.pid
    assert seen["pandas_preloaded"]  # forked from the warm server, not a fresh interpreter


def test_a_step_environment_limits_the_preloaded_libraries_of_that_step_alone(
    workspace: Workspace, probe_project: Path
) -> None:
    # A sweep's thread budget: the libraries were imported in the server, before the request.
    budget = {"OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "LOKY_MAX_CPU_COUNT": "1"}
    limited, default = workspace.root / "limited.json", workspace.root / "default.json"
    for out, environment in ((limited, budget), (default, None)):
        submitted = _start(
            workspace, probe_project, "threads", step_environment=environment, out=out
        )
        assert submitted.forked
        assert submitted.wait()
    seen = json.loads(limited.read_text())
    assert seen == {"torch": 1, "pools": [1], "omp": "1", "loky": "1"}
    # The next step without a budget keeps the libraries' own default (all cores).
    unlimited = json.loads(default.read_text())
    assert unlimited["omp"] is None
    if len(os.sched_getaffinity(0)) > 1:
        assert unlimited["torch"] > 1


@pytest.mark.parametrize(
    ("entry_point", "params", "code"),
    [
        ("probe", {"code": 3}, 3),
        ("probe", {"code": 75}, 75),
        ("crash", {}, 1),
        ("shell", {}, 4),
    ],
)
def test_exit_codes_propagate(
    workspace: Workspace, probe_project: Path, entry_point: str, params: dict[str, Any], code: int
) -> None:
    submitted = _start(workspace, probe_project, entry_point, **params)
    assert submitted.forked == (entry_point != "shell")  # shell syntax runs through bash
    assert submitted.command_proc.wait(timeout=60) == code
    assert submitted.get_status() == "FAILED"
    assert not submitted.wait()


def test_the_server_survives_a_child_sigkill_and_restarts_when_killed(
    workspace: Workspace, probe_project: Path
) -> None:
    submitted = _start(workspace, probe_project, "probe", sleep=60)
    process = submitted.command_proc
    server_pid = client.ping()["pong"]
    assert psutil.Process(process.pid).ppid() == server_pid
    os.kill(process.pid, signal.SIGKILL)
    assert process.wait(timeout=10) == -signal.SIGKILL
    assert client.ping()["pong"] == server_pid  # the server lives on
    again = _start(workspace, probe_project, "probe")
    assert again.command_proc.wait(timeout=60) == 0

    os.kill(server_pid, signal.SIGKILL)  # the server itself dies: a new one takes over
    psutil.Process(server_pid).wait(10) if psutil.pid_exists(server_pid) else None
    after = _start(workspace, probe_project, "probe", code=5)
    assert after.forked
    assert after.command_proc.wait(timeout=300) == 5
    assert client.ping()["pong"] != server_pid


def test_cancel_stops_the_forked_child(workspace: Workspace, probe_project: Path) -> None:
    submitted = _start(workspace, probe_project, "probe", sleep=60)
    pid = submitted.command_proc.pid
    submitted.cancel()
    assert submitted.command_proc.returncode == -signal.SIGTERM
    assert not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE


@pytest.mark.filterwarnings("ignore:Logger 'prefect.task_runs' attempted to send logs")
def test_a_timed_out_step_is_stopped_by_the_task(workspace: Workspace) -> None:
    experiment_id = _experiment(workspace)
    started = time.monotonic()
    with pytest.raises(StepFailed, match="timed out") as failure:
        run_entry_point(
            "get_data",
            {"source": "demo", "demo_rows": 5_000_000},
            ["raw_data"],
            experiment_id,
            timeout_s=3.0,
            backend="warm-fork",
        )
    assert time.monotonic() - started < 60
    assert failure.value.transient
    run = workspace.client().get_run(failure.value.run_id)
    assert run.info.status == "FAILED"
    assert run.data.tags["mlflow.project.backend"] == "warm-fork"
    deadline = time.monotonic() + 10
    while client.ping()["children"] and time.monotonic() < deadline:
        time.sleep(0.1)
    assert client.ping()["children"] == 0  # the forked child was killed and reaped
