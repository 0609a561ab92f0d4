"""Shared servers that let no one in without a login, for real, on loopback.

`python -m deployments.tracking_server` with MLFLOW_AUTH_ADMIN_PASSWORD in its `.env` (MLflow's
basic-auth app) and `prefect server start` with PREFECT_SERVER_API_AUTH_STRING. The admin creates
the pipeline's user and a read-only one with `python -m deployments.tracking_users` (passwords
on stdin); the whole pipeline, promotion included, then runs as the pipeline's user through both
servers from an empty working directory. Afterwards: requests without credentials, with wrong
ones and as the read-only user are refused when they try to move @champion or write to the
registry, which reads back unchanged as the admin; the read-only user loads
models:/NAME@champion. Every password and the auth string are searched for in the argv of every
process sampled while all this ran, in every log, and in the MLflow and Prefect databases, the
served artifacts and the pipeline's working directory (W&B offline runs included).
"""

from __future__ import annotations

import contextlib
import os
import secrets
import signal
import stat
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import mlflow
import psutil
import pytest
import requests
from mlflow.exceptions import MlflowException
from mlflow.pyfunc import PyFuncModel

from tests.loopback import free_port
from tests.mlflow_uris import pointed_at
from tests.services.conftest import (
    SMALL_RUN,
    Process,
    base_env,
    group_command_lines,
    start_process,
    wait_until_healthy,
)

MODEL = "housing_price"
LOCK_MODEL = f"{MODEL}.promotion-lock"
PIPELINE_TIMEOUT_S = 600.0
USERS_TIMEOUT_S = 120.0


@dataclass(frozen=True)
class Secrets:
    admin: str = field(default_factory=lambda: "adm-" + secrets.token_urlsafe(18))
    pipeline: str = field(default_factory=lambda: "pipe-" + secrets.token_urlsafe(18))
    reader: str = field(default_factory=lambda: "read-" + secrets.token_urlsafe(18))
    prefect: str = field(default_factory=lambda: "ops:" + secrets.token_urlsafe(18))
    flask_key: str = field(default_factory=lambda: "key-" + secrets.token_urlsafe(18))

    def all(self) -> dict[str, str]:
        return {
            "admin password": self.admin,
            "pipeline password": self.pipeline,
            "reader password": self.reader,
            "prefect auth string": self.prefect,
            "flask secret key": self.flask_key,
        }


class ArgvSampler:
    """Every process's command line, sampled every 0.2 s from a thread while the test runs:
    what `ps` shows any local user."""

    def __init__(self) -> None:
        self.lines: set[str] = set()
        self.samples = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            for proc in psutil.process_iter(["cmdline"]):
                with contextlib.suppress(psutil.Error):
                    self.lines.add(" ".join(proc.info["cmdline"] or []))
            self.samples += 1
            self._stop.wait(0.25)

    def __enter__(self) -> ArgvSampler:
        self._thread.start()
        return self

    def stop(self) -> None:
        """No more samples (so `lines` may be read); safe to call again."""
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=30)

    def __exit__(self, *_exc: object) -> None:
        self.stop()


@dataclass
class Deployment:
    root: Path
    mlflow_url: str
    prefect_api: str
    secrets: Secrets
    mlflow_server: Process
    prefect_server: Process
    sampler: ArgvSampler
    pipeline_code: int | None = None
    pipeline_log: str = ""
    pipeline_workdir: Path = Path()
    pipeline_seconds: float = 0.0
    users_output: str = ""
    auth_config: Path | None = None
    auth_config_mode: int = 0
    auth_config_text: str = ""
    mlflow_exit: int | None = None
    left_running: list[str] = field(default_factory=list)


@contextlib.contextmanager
def as_user(username: str | None, password: str | None) -> Iterator[None]:
    """MLflow's client in this process authenticates as `username` (none: anonymous)."""
    names = ("MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD")
    saved = {name: os.environ.get(name) for name in names}
    for name, value in zip(names, (username, password), strict=True):
        if value is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = value
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def _client(url: str) -> mlflow.MlflowClient:
    return mlflow.MlflowClient(tracking_uri=url, registry_uri=url)


def _load_champion(url: str) -> PyFuncModel:
    """models:/NAME@champion from the server at `url`, as a consumer of the registry loads it."""
    with pointed_at(url):
        return mlflow.pyfunc.load_model(f"models:/{MODEL}@champion")


def _start_mlflow(root: Path, keys: Secrets) -> tuple[Process, str]:
    """The tracking server as `make mlflow-server` starts it, its secrets in `.env` alone."""
    root.mkdir(parents=True)
    (root / ".env").write_text(
        f"MLFLOW_AUTH_ADMIN_PASSWORD={keys.admin}\nMLFLOW_FLASK_SERVER_SECRET_KEY={keys.flask_key}\n"
    )
    port = free_port()
    env = base_env(root) | {"MLFLOW_HOST": "127.0.0.1", "MLFLOW_PORT": str(port)}
    command = [sys.executable, "-m", "deployments.tracking_server", "tracking.server.workers=1"]
    process = start_process("mlflow-server", command, env, root, root)
    url = f"http://127.0.0.1:{port}"
    wait_until_healthy(process, url, "the authenticated tracking server")
    return process, url


def _start_prefect(root: Path, keys: Secrets) -> tuple[Process, str]:
    """`prefect server start` as `make server` runs it, the auth string in its `.env`."""
    root.mkdir(parents=True)
    (root / ".env").write_text(f"PREFECT_SERVER_API_AUTH_STRING={keys.prefect}\n")
    port = free_port()
    api = f"http://127.0.0.1:{port}/api"
    env = base_env(root) | {
        "PREFECT_UI_API_URL": api,
        "PREFECT_API_DATABASE_CONNECTION_URL": f"sqlite+aiosqlite:///{root / 'prefect.db'}",
        "PREFECT_SERVER_UI_SHOW_PROMOTIONAL_CONTENT": "false",
    }
    prefect = str(Path(sys.executable).with_name("prefect"))
    command = [prefect, "server", "start", "--host", "127.0.0.1", "--port", str(port)]
    process = start_process("prefect-server", command, env, root, root)
    wait_until_healthy(process, api, "the authenticated prefect server")
    return process, api


def _create_user(admin_dir: Path, url: str, role: str, username: str, password: str) -> str:
    """`python -m deployments.tracking_users ROLE USER` from the admin's folder (its `.env` has
    the admin password), the new password on stdin."""
    result = subprocess.run(
        [sys.executable, "-m", "deployments.tracking_users", role, username, "--url", url],
        input=password + "\n",
        env=base_env(admin_dir),
        cwd=admin_dir,
        capture_output=True,
        text=True,
        timeout=USERS_TIMEOUT_S,
        check=False,
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    return output


def _run_pipeline(deployment: Deployment) -> None:
    """The whole pipeline as the pipeline's user, its credentials in its own `.env`."""
    workdir = deployment.root / "pipeline"
    workdir.mkdir()
    keys = deployment.secrets
    (workdir / ".env").write_text(
        f"MLFLOW_TRACKING_USERNAME=pipeline\nMLFLOW_TRACKING_PASSWORD={keys.pipeline}\n"
        f"PREFECT_API_AUTH_STRING={keys.prefect}\n"
    )
    env = base_env(workdir) | {
        "MLFLOW_TRACKING_URI": deployment.mlflow_url,
        "PREFECT_API_URL": deployment.prefect_api,
        "WANDB_MODE": "offline",
    }
    command = [sys.executable, "-m", "flows.train_pipeline", *SMALL_RUN]
    process = start_process("pipeline", command, env, workdir, deployment.root)
    started = time.monotonic()
    try:
        deployment.pipeline_code = process.popen.wait(timeout=PIPELINE_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        deployment.pipeline_code = None
    deployment.pipeline_seconds = time.monotonic() - started
    deployment.pipeline_log = process.log_tail(400_000)
    deployment.pipeline_workdir = workdir
    process.stop()


def _auth_config_of(server: Process) -> Path | None:
    """MLFLOW_AUTH_CONFIG_PATH as the running mlflow server sees it."""
    for proc in psutil.Process(server.popen.pid).children(recursive=True):
        with contextlib.suppress(psutil.Error):
            value = proc.environ().get("MLFLOW_AUTH_CONFIG_PATH")
            if value:
                return Path(value)
    return None


def _stop_mlflow(deployment: Deployment) -> None:
    """SIGTERM to the wrapper alone, as a supervisor sends it; once (the last test stops it to
    see what it leaves behind, the fixture's teardown when a test before it failed)."""
    process = deployment.mlflow_server
    if deployment.mlflow_exit is not None or process.log_file.closed:
        return
    process.popen.send_signal(signal.SIGTERM)
    try:
        deployment.mlflow_exit = process.popen.wait(timeout=60)
        deployment.left_running = group_command_lines(process.popen.pid)
    finally:
        process.stop()


@pytest.fixture(scope="module")
def deployment(services_home: Path) -> Iterator[Deployment]:
    root = services_home / "authenticated"
    keys = Secrets()
    with ArgvSampler() as sampler:
        mlflow_server, mlflow_url = _start_mlflow(root / "mlflow-server", keys)
        try:
            prefect_server, prefect_api = _start_prefect(root / "prefect-server", keys)
        except BaseException:
            mlflow_server.stop()
            raise
        deployment = Deployment(
            root, mlflow_url, prefect_api, keys, mlflow_server, prefect_server, sampler
        )
        try:
            admin_dir = root / "mlflow-server"
            deployment.users_output = _create_user(
                admin_dir, mlflow_url, "pipeline", "pipeline", keys.pipeline
            ) + _create_user(admin_dir, mlflow_url, "reader", "reader", keys.reader)
            config = _auth_config_of(mlflow_server)
            if config is not None and config.exists():
                deployment.auth_config = config
                deployment.auth_config_mode = stat.S_IMODE(config.stat().st_mode)
                deployment.auth_config_text = config.read_text()
            _run_pipeline(deployment)
            yield deployment
        finally:
            _stop_mlflow(deployment)
            prefect_server.stop()


def test_the_authenticated_pipeline_runs_end_to_end_through_both_servers(
    deployment: Deployment,
) -> None:
    assert deployment.pipeline_code == 0, deployment.pipeline_log[-20000:]
    with as_user("admin", deployment.secrets.admin):
        champion = _client(deployment.mlflow_url).get_model_version_by_alias(MODEL, "champion")
    assert str(champion.version) == "1"
    # The flow run is in the Prefect server, completed; only its auth string reads it.
    response = requests.post(
        f"{deployment.prefect_api}/flow_runs/filter",
        json={"limit": 10, "offset": 0, "sort": "START_TIME_DESC"},
        auth=tuple(deployment.secrets.prefect.split(":", 1)),  # type: ignore[arg-type]
        timeout=30,
    )
    assert response.status_code == 200, response.text
    states = [run["state_type"] for run in response.json()]
    assert "COMPLETED" in states, states


def test_without_credentials_both_servers_refuse_and_the_registry_is_unchanged(
    deployment: Deployment,
) -> None:
    url = deployment.mlflow_url
    with as_user("admin", deployment.secrets.admin):
        before = _client(url).get_registered_model(MODEL)
    alias = {"name": MODEL, "alias": "champion", "version": "1"}
    attempts = {
        "no credentials": None,
        "a wrong password": ("pipeline", "not-the-password-at-all"),
        "an unknown user": ("intruder", deployment.secrets.pipeline),
    }
    for what, auth in attempts.items():
        moved = requests.post(
            f"{url}/api/2.0/mlflow/registered-models/alias", json=alias, auth=auth, timeout=30
        )
        assert moved.status_code == 401, (what, moved.status_code, moved.text)
        deleted = requests.delete(
            f"{url}/api/2.0/mlflow/registered-models/alias",
            params={"name": MODEL, "alias": "champion"},
            auth=auth,
            timeout=30,
        )
        assert deleted.status_code == 401, (what, deleted.status_code)
        read = requests.get(
            f"{url}/api/2.0/mlflow/registered-models/get",
            params={"name": MODEL},
            auth=auth,
            timeout=30,
        )
        assert read.status_code == 401, (what, read.status_code)
    for headers in ({}, {"Authorization": "Basic d3Jvbmc6d3Jvbmc="}):
        flows = requests.post(
            f"{deployment.prefect_api}/flows/filter", json={}, headers=headers, timeout=30
        )
        assert flows.status_code == 401, (headers, flows.status_code)
    with as_user("admin", deployment.secrets.admin):
        after = _client(url).get_registered_model(MODEL)
    assert after.aliases == before.aliases
    assert after.tags == before.tags
    assert after.last_updated_timestamp == before.last_updated_timestamp


def test_a_read_only_user_loads_the_champion_but_cannot_move_it_or_write(
    deployment: Deployment,
) -> None:
    url = deployment.mlflow_url
    with as_user("admin", deployment.secrets.admin):
        admin = _client(url)
        before = admin.get_registered_model(MODEL)
        versions_before = admin.search_model_versions(f"name = '{MODEL}'")
        champion = admin.get_model_version_by_alias(MODEL, "champion")
    writes = {
        "move @champion": lambda c: c.set_registered_model_alias(MODEL, "champion", "1"),
        "drop @champion": lambda c: c.delete_registered_model_alias(MODEL, "champion"),
        "set @challenger": lambda c: c.set_registered_model_alias(MODEL, "challenger", "1"),
        "tag the model": lambda c: c.set_registered_model_tag(MODEL, "history.999", "{}"),
        "register a version": lambda c: c.create_model_version(
            MODEL, champion.source, run_id=champion.run_id
        ),
        "delete the model": lambda c: c.delete_registered_model(MODEL),
        "take the promotion lock": lambda c: c.create_model_version(LOCK_MODEL, champion.source),
    }
    with as_user("reader", deployment.secrets.reader):
        reader = _client(url)
        for what, write in writes.items():
            with pytest.raises(MlflowException) as refused:
                write(reader)
            assert refused.value.error_code == "PERMISSION_DENIED", (what, refused.value)
        model = _load_champion(url)
    assert model.metadata.run_id == champion.run_id
    with as_user("admin", deployment.secrets.admin):
        after = admin.get_registered_model(MODEL)
        versions_after = admin.search_model_versions(f"name = '{MODEL}'")
    assert after.aliases == before.aliases
    assert after.tags == before.tags
    assert sorted(v.version for v in versions_after) == sorted(v.version for v in versions_before)


def test_the_pipelines_user_may_move_the_alias_and_owns_the_promotion_lock(
    deployment: Deployment,
) -> None:
    url = deployment.mlflow_url
    with as_user("pipeline", deployment.secrets.pipeline):
        client = _client(url)
        client.set_registered_model_alias(MODEL, "auth-check", "1")
        assert str(client.get_model_version_by_alias(MODEL, "auth-check").version) == "1"
        client.delete_registered_model_alias(MODEL, "auth-check")
        client.set_registered_model_tag(LOCK_MODEL, "auth-check", "1")
        client.delete_registered_model_tag(LOCK_MODEL, "auth-check")
    assert "MANAGE on housing_price, housing_price.promotion-lock" in deployment.users_output
    assert "READ on housing_price" in deployment.users_output


def test_no_secret_in_any_argv_log_or_store(deployment: Deployment) -> None:
    """Last in this file: it stops the tracking server, to see what its stop leaves behind."""
    assert deployment.pipeline_code == 0, deployment.pipeline_log[-20000:]
    _stop_mlflow(deployment)
    sampler = deployment.sampler
    sampler.stop()
    assert sampler.samples >= 10, sampler.samples
    # The sampler saw the servers and the pipeline's step processes.
    seen = "\n".join(sampler.lines)
    assert "--app-name basic-auth" in seen
    assert "prefect server start" in seen
    assert "flows.train_pipeline" in seen
    logs = {path: path.read_text(errors="replace") for path in deployment.root.rglob("*.log")}
    logs[Path("tracking_users output")] = deployment.users_output
    assert len(logs) >= 4, sorted(logs)
    stores = [
        path
        for path in deployment.root.rglob("*")
        if path.is_file() and path.name != ".env" and not path.name.endswith(".log")
    ]
    assert any(path.name == "mlflow.db" for path in stores)
    assert any(path.name == "basic_auth.db" for path in stores)
    assert any(path.name == "prefect.db" for path in stores)
    assert any("wandb" in path.parts for path in stores), "no W&B offline run to search"
    for what, secret in deployment.secrets.all().items():
        in_argv = [line for line in sampler.lines if secret in line]
        assert not in_argv, f"the {what} in a command line: {in_argv}"
        for path, text in logs.items():
            assert secret not in text, f"the {what} in {path}"
        encoded = secret.encode()
        for path in stores:
            assert encoded not in path.read_bytes(), f"the {what} in {path}"
    # The auth app's settings: private, holding no password, gone once the server stopped.
    assert deployment.auth_config is not None
    assert deployment.auth_config_mode == 0o600
    assert deployment.secrets.admin not in deployment.auth_config_text
    assert "basic_auth.db" in deployment.auth_config_text
    assert not deployment.auth_config.exists()
    assert deployment.mlflow_exit == 0, deployment.mlflow_server.log_tail()
    assert not deployment.left_running, deployment.left_running
