"""A real Prefect server on a free loopback port, and the deployments served against it.

Everything lives in one temporary directory per session (server database, PREFECT_HOME, MLflow
SQLite store, W&B offline runs); every process started here runs in its own process group and
is stopped with it at the end.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any
from uuid import UUID

import psutil
import pytest
from prefect.client.orchestration import SyncPrefectClient, get_client
from prefect.client.schemas.objects import Artifact, FlowRun
from prefect.client.schemas.responses import DeploymentResponse
from prefect.client.schemas.schedules import CronSchedule
from prefect.client.schemas.sorting import DeploymentSort
from prefect.events.actions import RunDeployment
from prefect.events.schemas.automations import Automation, EventTrigger
from prefect.events.schemas.events import ResourceSpecification
from prefect.settings import PREFECT_API_URL, temporary_settings

from deployments.spec import PROJECT_ROOT, DeploymentSpec, load_deployments
from tests.loopback import free_port, healthy
from tests.oss_server import OssServer

PREFECT_CLI = Path(sys.executable).with_name("prefect")
SERVER_START_TIMEOUT_S = 180.0
# A small pipeline: data_check needs >= 500 clean rows.
SMALL_RUN = ["data.demo_rows=2000", "task.retries=0"]


@dataclass
class Process:
    """A process started in its own group, with its output in a log file."""

    name: str
    popen: subprocess.Popen[bytes]
    log_path: Path
    log_file: IO[bytes]

    def log_tail(self, chars: int = 4000) -> str:
        self.log_file.flush()
        return self.log_path.read_text(errors="replace")[-chars:]

    def stop(self, first: signal.Signals = signal.SIGTERM, grace_s: float = 30.0) -> int | None:
        """Signal the whole group, wait, then kill what is left; the exit code of the leader."""
        for sig, wait_s in ((first, grace_s), (signal.SIGKILL, 10.0)):
            if self.popen.poll() is not None:
                break
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.popen.pid, sig)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.popen.wait(timeout=wait_s)
        # Children left behind by the leader (flow run subprocesses) go with the group.
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.popen.pid, signal.SIGKILL)
        self.log_file.close()
        return self.popen.returncode


def start_process(
    name: str, command: list[str], env: Mapping[str, str], cwd: Path, log_dir: Path
) -> Process:
    log_path = log_dir / f"{name}.log"
    log_file = log_path.open("ab")
    popen = subprocess.Popen(
        command,
        env=dict(env),
        cwd=cwd,
        stdout=log_file,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    return Process(name, popen, log_path, log_file)


def base_env(home: Path) -> dict[str, str]:
    """This environment without any Prefect API or store settings, telemetry off."""
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("PREFECT_", "MLFLOW_", "WANDB_"))
    }
    env |= {
        "PREFECT_HOME": str(home / "prefect-home"),
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "DO_NOT_TRACK": "true",
        "MLFLOW_DISABLE_TELEMETRY": "true",
        # A temporary API on a fresh PREFECT_HOME migrates its database first: slow on a busy
        # machine, beyond Prefect's default 20 s.
        "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "180",
        "PATH": os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")]),
    }
    return env


@dataclass
class PrefectServer:
    api_url: str
    ui_url: str
    home: Path
    process: Process

    def client(self) -> SyncPrefectClient:
        return get_client(sync_client=True)

    def client_env(self) -> dict[str, str]:
        return base_env(self.home) | {"PREFECT_API_URL": self.api_url}


def group_command_lines(group: int) -> list[str]:
    """Command lines of the live processes in a process group (zombies left out): what is still
    running of a server, and what `ps` would show of its arguments."""
    lines = []
    for proc in psutil.process_iter(["pid", "cmdline", "status"]):
        try:
            if os.getpgid(proc.pid) == group and proc.info["status"] != psutil.STATUS_ZOMBIE:
                lines.append(" ".join(proc.info["cmdline"] or []))
        except (ProcessLookupError, psutil.Error):
            continue
    return lines


def wait_until_healthy(
    process: Process, url: str, what: str, timeout_s: float = SERVER_START_TIMEOUT_S
) -> None:
    """Wait for `url`/health to answer; on a timeout or an early exit, stop the process and fail
    with its log."""
    deadline = time.monotonic() + timeout_s
    while not healthy(url):
        if process.popen.poll() is not None or time.monotonic() > deadline:
            tail = process.log_tail()
            process.stop()
            pytest.fail(f"{what} did not answer {url}/health:\n{tail}")
        time.sleep(0.5)


def start_server(home: Path) -> PrefectServer:
    if not PREFECT_CLI.exists():
        pytest.skip(f"the prefect command is not installed beside {sys.executable}")
    home.mkdir(parents=True, exist_ok=True)
    port = free_port()
    api_url = f"http://127.0.0.1:{port}/api"
    env = base_env(home) | {
        # The UI's pages call this address (else the default port, 4200).
        "PREFECT_UI_API_URL": api_url,
        "PREFECT_API_DATABASE_CONNECTION_URL": f"sqlite+aiosqlite:///{home / 'prefect.db'}",
        "PREFECT_SERVER_UI_SHOW_PROMOTIONAL_CONTENT": "false",
    }
    command = [str(PREFECT_CLI), "server", "start", "--host", "127.0.0.1", "--port", str(port)]
    process = start_process("prefect-server", command, env, home, home)
    wait_until_healthy(process, api_url, "prefect server")
    return PrefectServer(api_url, f"http://127.0.0.1:{port}", home, process)


@pytest.fixture(scope="session")
def services_home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("services")


@pytest.fixture(scope="session")
def prefect_server(services_home: Path) -> Iterator[PrefectServer]:
    """`prefect server start` on a free loopback port; this process's client talks to it."""
    server = start_server(services_home / "server")
    try:
        with temporary_settings({PREFECT_API_URL: server.api_url}):
            yield server
    finally:
        code = server.process.stop(signal.SIGTERM)
        assert code is not None, "prefect server did not stop"


@dataclass
class Served:
    process: Process
    workdir: Path
    tracking_uri: str
    # While this file exists, the train entry point fails with a transient error (STEP_FAILPOINT).
    train_fault: Path
    # The loopback OSS server its runs read oss:// sources from, and the OSS_* that reach it.
    oss: OssServer
    oss_env: dict[str, str]


LISTINGS_BUCKET = "listings"
_OSS_KEY_ID, _OSS_KEY_SECRET = "LTAIservedKeySECRET0xA1", "servedSecretSECRET0xB2"


@pytest.fixture(scope="session")
def listings_oss() -> Iterator[tuple[OssServer, dict[str, str]]]:
    """A loopback OSS server with a `listings` bucket, and the OSS_* variables that reach it."""
    with OssServer(_OSS_KEY_ID, _OSS_KEY_SECRET, buckets=(LISTINGS_BUCKET,)) as server:
        yield (
            server,
            {
                "OSS_ACCESS_KEY_ID": _OSS_KEY_ID,
                "OSS_ACCESS_KEY_SECRET": _OSS_KEY_SECRET,
                "OSS_ENDPOINT": server.endpoint,
            },
        )


@pytest.fixture(scope="session")
def served(
    prefect_server: PrefectServer,
    services_home: Path,
    listings_oss: tuple[OssServer, dict[str, str]],
) -> Iterator[Served]:
    """`python -m deployments.serve` against the server, MLflow in a temporary SQLite store,
    OSS on loopback."""
    workdir = services_home / "served"
    workdir.mkdir()
    tracking_uri = f"sqlite:///{workdir / 'mlflow.db'}"
    train_fault = workdir / "train-fault"
    oss, oss_env = listings_oss
    env = (
        prefect_server.client_env()
        | oss_env
        | {
            "STEP_FAILPOINT": f"train@{train_fault}",
            "MLFLOW_TRACKING_URI": tracking_uri,
            "WANDB_MODE": "offline",
            "WANDB_DIR": str(workdir),
            # Pick triggered runs up quickly (default: every 10 s).
            "PREFECT_RUNNER_POLL_FREQUENCY": "2",
        }
    )
    # Create the store's schema once: runs started together on a fresh SQLite store would race
    # to migrate it ("duplicate column name").
    import mlflow

    mlflow.MlflowClient(tracking_uri=tracking_uri).search_experiments(max_results=1)
    command = [sys.executable, "-m", "deployments.serve"]
    process = start_process("serve", command, env, workdir, prefect_server.home)
    try:
        yield Served(process, workdir, tracking_uri, train_fault, oss, oss_env)
    finally:
        # Ctrl-C, as a person stops it; the schedules must stay active afterwards.
        code = process.stop(signal.SIGINT)
        assert code is not None, "deployments.serve did not stop"


def wait_for(
    predicate: Callable[[], Any], timeout_s: float, what: str, interval_s: float = 1.0
) -> Any:
    deadline = time.monotonic() + timeout_s
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s:.0f} s waiting for {what}")
        time.sleep(interval_s)


def wait_for_final_states(
    client: SyncPrefectClient, ids: list[UUID], timeout_s: float, logs: Process
) -> dict[UUID, FlowRun]:
    """Poll until every flow run is in a final state; the serve log on timeout."""
    runs: dict[UUID, FlowRun] = {}

    def done() -> bool:
        for flow_run_id in ids:
            runs[flow_run_id] = client.read_flow_run(flow_run_id)
        return all(run.state is not None and run.state.is_final() for run in runs.values())

    try:
        wait_for(done, timeout_s, f"flow runs {ids} to finish", interval_s=2.0)
    except AssertionError as error:
        states = {str(k): (v.state.name if v.state else None) for k, v in runs.items()}
        raise AssertionError(f"{error}; states {states}\n{logs.log_tail()}") from None
    return runs


@dataclass
class DeploymentRuns:
    """One run of each deployment, triggered through the API and finished."""

    runs: dict[str, FlowRun]  # deployment name -> its finished flow run
    seconds: float


def train_specs() -> list[DeploymentSpec]:
    """The deployments of train_pipeline (the others run other flows, on other parameters)."""
    return [spec for spec in load_deployments() if spec.flow == "train_pipeline"]


@pytest.fixture(scope="session")
def deployment_runs(prefect_server: PrefectServer, served: Served) -> DeploymentRuns:
    """Trigger every train_pipeline deployment once (with its own overrides, on small data) and
    wait, once every deployment is registered."""
    client = prefect_server.client()
    wait_for(
        lambda: len(read_served_deployments(client)) == len(load_deployments()),
        120,
        "deployments.serve to register every deployment",
    )
    started = time.monotonic()
    triggered: dict[str, UUID] = {}
    for spec in train_specs():
        parameters = {"overrides": [*spec.overrides, *SMALL_RUN]}
        triggered[spec.name] = trigger(spec.name, parameters).id
    finished = wait_for_final_states(client, list(triggered.values()), 1500, served.process)
    runs = {name: finished[flow_run_id] for name, flow_run_id in triggered.items()}
    return DeploymentRuns(runs, time.monotonic() - started)


def trigger(deployment: str, parameters: dict[str, Any], flow: str = "train_pipeline") -> FlowRun:
    """A run of <flow>/<deployment> through the API, as the UI's Run button does."""
    from prefect.deployments import run_deployment

    flow_run = run_deployment(f"{flow}/{deployment}", parameters=parameters, timeout=0)
    assert isinstance(flow_run, FlowRun)
    return flow_run


def read_deployment_runs(client: SyncPrefectClient, deployment_id: UUID) -> list[FlowRun]:
    """The deployment's flow runs, newest first (through the HTTP API: the client's filters
    send nulls this server version answers 422 to)."""
    response = client.request(
        "POST",
        "/flow_runs/filter",
        json={
            "deployments": {"id": {"any_": [str(deployment_id)]}},
            "sort": "EXPECTED_START_TIME_DESC",
            "limit": 50,
            "offset": 0,
        },
    )
    return [FlowRun.model_validate(item) for item in response.json()]


def read_deployment_triggers(
    client: SyncPrefectClient, deployment: DeploymentResponse
) -> list[dict[str, Any]]:
    """The deployment's event triggers as the server holds them (each one an automation that
    runs the deployment), in the shape of `DeploymentSpec.trigger_definitions()`, by name."""
    automations: list[Automation] = client.read_resource_related_automations(
        f"prefect.deployment.{deployment.id}"
    )
    definitions = []
    for automation in sorted(automations, key=lambda a: a.name):
        trigger = automation.trigger
        assert isinstance(trigger, EventTrigger), automation
        [action] = automation.actions
        assert isinstance(action, RunDeployment), action
        assert (action.source, action.deployment_id) == ("selected", deployment.id)
        definitions.append(
            {
                "type": trigger.type,
                "name": automation.name,
                "description": automation.description,
                "enabled": automation.enabled,
                "match": ResourceSpecification.model_validate(trigger.match).model_dump(),
                "expect": sorted(trigger.expect),
                "posture": trigger.posture.value,
                "threshold": trigger.threshold,
                "within": trigger.within.total_seconds(),
                "parameters": action.parameters,
            }
        )
    return definitions


def check_registered(
    client: SyncPrefectClient, deployment: DeploymentResponse, spec: DeploymentSpec
) -> None:
    """The deployment on the server is what conf/deployments.yaml says: its parameters, its
    schedule or none, its concurrency limit and collision strategy, and its event triggers."""
    assert deployment.parameters == spec.parameters
    assert not deployment.paused
    schedules = []
    for schedule in deployment.schedules:
        assert schedule.active
        assert isinstance(schedule.schedule, CronSchedule)
        schedules.append((schedule.schedule.cron, schedule.schedule.timezone))
    assert schedules == ([] if spec.cron is None else [(spec.cron, spec.timezone)])
    assert deployment.global_concurrency_limit is not None
    assert deployment.global_concurrency_limit.limit == spec.concurrency_limit
    assert deployment.concurrency_options is not None
    strategy = deployment.concurrency_options.collision_strategy
    assert strategy.value == spec.collision_strategy
    expected = sorted(spec.trigger_definitions(), key=lambda d: str(d["name"]))
    assert read_deployment_triggers(client, deployment) == expected


def read_run_artifacts(client: SyncPrefectClient, flow_run_id: UUID) -> dict[str, Artifact]:
    """The flow run's artifacts by key.

    Through the HTTP API: with this server version the client's read_artifacts sends
    `flow_runs: null` (422) or, with empty run filters, matches nothing.
    """
    response = client.request(
        "POST",
        "/artifacts/filter",
        json={
            "artifacts": {"flow_run_id": {"any_": [str(flow_run_id)]}},
            "sort": "CREATED_DESC",
            "limit": 50,
            "offset": 0,
        },
    )
    artifacts = [Artifact.model_validate(item) for item in response.json()]
    return {str(artifact.key): artifact for artifact in artifacts if artifact.key}


def read_served_deployments(client: SyncPrefectClient) -> list[DeploymentResponse]:
    # limit and sort are explicit: left unset, this server version answers 422.
    return client.read_deployments(limit=200, sort=DeploymentSort.NAME_ASC)


def output_dir(tmp_path: Path) -> Path:
    """Where a test keeps what a person may want to look at (SERVICES_OUTPUT_DIR, else tmp)."""
    configured = os.environ.get("SERVICES_OUTPUT_DIR")
    path = Path(configured) if configured else tmp_path
    path.mkdir(parents=True, exist_ok=True)
    return path


__all__ = ["PROJECT_ROOT", "SMALL_RUN"]
