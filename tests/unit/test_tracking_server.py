"""The shared tracking server's start: its command, environment, defaults and refusals.

The command and environment are checked as built; the refusals run for real (a closed loopback
port stands for a PostgreSQL that is down, a temporary SQLite file for a fresh backend).
"""

from __future__ import annotations

import configparser
import logging
import os
import socket
import stat
import subprocess
import sys
from pathlib import Path

import mlflow
import pytest

from deployments import tracking_server
from deployments.tracking_server import (
    EXIT_BACKEND_UNAVAILABLE,
    EXIT_BAD_CONFIG,
    ServerPlan,
    check_backend,
    prepare_schema,
    resolve_plan,
    server_command,
    server_environment,
)
from orchestration.config import ConfigError, load_config

PROJECT_ROOT = Path(__file__).resolve().parents[2]
SECRET = "s3cret-pw"
PG_URI = f"postgresql://ml:{SECRET}@db.internal:5432/mlflow"
_SETTINGS = (
    "MLFLOW_HOST",
    "MLFLOW_PORT",
    "MLFLOW_BACKEND_STORE_URI",
    "MLFLOW_ARTIFACTS_DESTINATION",
    "MLFLOW_ALLOWED_HOSTS",
    "MLFLOW_AUTH_ADMIN_PASSWORD",
    "MLFLOW_AUTH_ADMIN_USERNAME",
    "MLFLOW_FLASK_SERVER_SECRET_KEY",
    "MLFLOW_AUTH_CONFIG_PATH",
)


@pytest.fixture(autouse=True)
def _no_server_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in _SETTINGS:
        monkeypatch.delenv(name, raising=False)


def _plan(work_dir: Path, *overrides: str) -> ServerPlan:
    return resolve_plan(load_config(list(overrides)).tracking.server, work_dir)


def _closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def test_defaults_are_sqlite_and_served_artifacts_under_mlruns_server_on_loopback(
    tmp_path: Path,
) -> None:
    plan = _plan(tmp_path)
    assert plan.backend_store_uri == f"sqlite:///{tmp_path.resolve()}/mlruns/server/mlflow.db"
    assert plan.artifacts_destination == str(tmp_path / "mlruns" / "server" / "artifacts")
    assert (plan.host, plan.port, plan.workers, plan.allowed_hosts) == ("127.0.0.1", 5000, 2, None)
    assert plan.url == "http://127.0.0.1:5000"


def test_the_environment_chooses_host_port_backend_artifacts_and_allowed_hosts(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MLFLOW_HOST", "10.0.0.5")
    monkeypatch.setenv("MLFLOW_PORT", "5123")
    monkeypatch.setenv("MLFLOW_BACKEND_STORE_URI", PG_URI)
    monkeypatch.setenv("MLFLOW_ARTIFACTS_DESTINATION", "s3://bucket/mlflow")
    monkeypatch.setenv("MLFLOW_ALLOWED_HOSTS", "mlflow.example.org")
    plan = _plan(tmp_path)
    assert plan == ServerPlan(
        PG_URI, "s3://bucket/mlflow", "10.0.0.5", 5123, 2, "mlflow.example.org"
    )
    assert plan.url == "http://10.0.0.5:5123"
    assert plan.shown_backend == "postgresql://ml:***@db.internal:5432/mlflow"


def test_a_relative_artifacts_folder_is_taken_from_the_working_directory(tmp_path: Path) -> None:
    plan = _plan(tmp_path, "tracking.server.artifacts_destination=shared/artifacts")
    assert plan.artifacts_destination == str((tmp_path / "shared" / "artifacts").resolve())


def test_the_command_serves_artifacts_and_never_carries_the_backend_or_its_password(
    tmp_path: Path,
) -> None:
    plan = _plan(tmp_path, f"tracking.server.backend_store_uri={PG_URI}")
    command = server_command(plan)
    assert command[:4] == [sys.executable, "-m", "mlflow", "server"]
    assert "--serve-artifacts" in command
    assert command[command.index("--artifacts-destination") + 1] == plan.artifacts_destination
    assert command[command.index("--host") + 1] == "127.0.0.1"
    assert command[command.index("--port") + 1] == "5000"
    assert command[command.index("--workers") + 1] == "2"
    assert "--allowed-hosts" not in command
    assert not any(SECRET in part or "postgresql" in part for part in command)
    assert "--backend-store-uri" not in command
    # mlflow server's --backend-store-uri option reads this variable.
    assert server_environment(plan, {})["MLFLOW_BACKEND_STORE_URI"] == PG_URI


def test_allowed_hosts_are_passed_when_set(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # A comma-separated override needs quotes (Hydra reads a bare one as a sweep).
    command = server_command(_plan(tmp_path, "tracking.server.allowed_hosts='a.example,10.1.*'"))
    assert command[command.index("--allowed-hosts") + 1] == "a.example,10.1.*"
    monkeypatch.setenv("MLFLOW_ALLOWED_HOSTS", "mlflow.example.org,10.0.0.5:5000")
    command = server_command(_plan(tmp_path))
    assert command[command.index("--allowed-hosts") + 1] == "mlflow.example.org,10.0.0.5:5000"


def test_the_environment_turns_telemetry_and_the_job_runner_off_unless_told(
    tmp_path: Path,
) -> None:
    plan = _plan(tmp_path)
    env = server_environment(plan, {"PATH": "/bin"})
    assert env["MLFLOW_DISABLE_TELEMETRY"] == env["DO_NOT_TRACK"] == "true"
    assert env["MLFLOW_SERVER_ENABLE_JOB_EXECUTION"] == "false"
    assert env["PATH"] == "/bin"
    told = server_environment(plan, {"MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "true"})
    assert told["MLFLOW_SERVER_ENABLE_JOB_EXECUTION"] == "true"


def test_settings_that_would_bypass_served_artifacts_are_dropped_with_a_warning(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    base = {"MLFLOW_DEFAULT_ARTIFACT_ROOT": "/elsewhere", "MLFLOW_BACKEND_STORE_URI": "sqlite://"}
    with caplog.at_level(logging.WARNING, logger=tracking_server.__name__):
        env = server_environment(_plan(tmp_path), base)
    assert "MLFLOW_DEFAULT_ARTIFACT_ROOT" not in env
    assert env["MLFLOW_BACKEND_STORE_URI"].endswith("/mlruns/server/mlflow.db")
    assert "MLFLOW_DEFAULT_ARTIFACT_ROOT is ignored" in caplog.text


def test_a_server_on_every_interface_tells_clients_this_machines_name(tmp_path: Path) -> None:
    plan = _plan(tmp_path, "tracking.server.host=0.0.0.0", "tracking.server.port=5001")
    assert plan.url == f"http://{socket.gethostname()}:5001"
    assert _plan(tmp_path, "tracking.server.host=::1").url == "http://[::1]:5000"


def test_a_backend_of_another_kind_exits_2_naming_the_key_without_the_password(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    # What main's process set-up would leave in this process's environment, restored after.
    monkeypatch.setenv("WANDB_SILENT", "true")
    monkeypatch.setenv("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    monkeypatch.setenv("MLFLOW_BACKEND_STORE_URI", f"mysql://ml:{SECRET}@127.0.0.1/mlflow")
    assert tracking_server.main([]) == EXIT_BAD_CONFIG
    err = capsys.readouterr().err
    assert err.count("\n") == 1, err
    assert err.startswith("error: invalid configuration: tracking.server.backend_store_uri")
    assert "mysql://127.0.0.1/mlflow" in err  # the URI, its credentials left out
    assert SECRET not in err


def test_an_unreachable_postgresql_exits_69_in_one_line_without_traceback_or_password(
    tmp_path: Path,
) -> None:
    port = _closed_port()
    uri = f"postgresql://ml:{SECRET}@127.0.0.1:{port}/mlflow"
    env = os.environ | {"MLFLOW_BACKEND_STORE_URI": uri, "MLFLOW_PORT": str(_closed_port())}
    done = subprocess.run(
        [sys.executable, "-m", "deployments.tracking_server"],
        cwd=tmp_path,
        env=env | {"PYTHONPATH": str(PROJECT_ROOT)},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == EXIT_BACKEND_UNAVAILABLE, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    [line] = lines
    assert line.startswith(
        f"error: cannot connect to backend postgresql://ml:***@127.0.0.1:{port}/"
    )
    assert "Connection refused" in line
    assert "check PostgreSQL runs" in line
    assert "Traceback" not in done.stderr + done.stdout
    assert SECRET not in done.stderr + done.stdout
    assert not (tmp_path / "mlruns").exists()


def test_a_memory_sqlite_backend_is_refused() -> None:
    with pytest.raises(ConfigError, match="not a database file"):
        check_backend("sqlite://")


def test_a_fresh_sqlite_backend_gets_its_schema_once_and_opens_as_a_store(tmp_path: Path) -> None:
    uri = f"sqlite:///{tmp_path / 'new' / 'mlflow.db'}"
    check_backend(uri)
    assert prepare_schema(uri) == "schema created"
    assert prepare_schema(uri) == "schema up to date"
    client = mlflow.MlflowClient(tracking_uri=uri, registry_uri=uri)
    assert [e.name for e in client.search_experiments()] == ["Default"]
    assert client.search_registered_models() == []


def test_an_older_schema_is_upgraded_before_the_server_starts(tmp_path: Path) -> None:
    from alembic import command
    from mlflow.store.db import utils as db_utils

    uri = f"sqlite:///{tmp_path / 'old.db'}"
    prepare_schema(uri)
    engine = db_utils.create_sqlalchemy_engine(uri)
    config = db_utils._get_alembic_config(uri)
    with engine.begin() as connection:  # what a store of the previous MLflow release looks like
        config.attributes["connection"] = connection
        command.downgrade(config, "-1")
    older = db_utils._get_schema_version(engine)
    engine.dispose()
    assert prepare_schema(uri) == f"schema upgraded from {older}"
    assert prepare_schema(uri) == "schema up to date"


def test_make_mlflow_server_runs_this_module_with_the_overrides() -> None:
    makefile = (PROJECT_ROOT / "Makefile").read_text()
    assert "\nmlflow-server: install\n\t$(PY) -m deployments.tracking_server $(ARGS)\n" in makefile
    phony = [line for line in makefile.splitlines() if line.startswith(".PHONY:")]
    assert any("mlflow-server" in line.split() for line in phony)


def test_an_artifacts_destination_with_credentials_is_refused_without_showing_them(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("WANDB_SILENT", "true")
    monkeypatch.setenv("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    destination = "tracking.server.artifacts_destination=oss://AKID:s3cr3t@bucket/mlflow"
    assert tracking_server.main([destination]) == 2
    err = capsys.readouterr().err
    assert "takes no credentials" in err and "OSS_ACCESS_KEY_SECRET" in err
    assert "s3cr3t" not in err


# -- authentication: MLflow's basic-auth app, and no unauthenticated server beyond loopback ----

ADMIN_PASSWORD = "adm1n-Passw0rd-long"


@pytest.mark.parametrize("host", ["0.0.0.0", "::", "10.0.0.5", "mlflow.example.org"])
def test_a_server_others_can_reach_is_refused_without_auth_before_touching_the_backend(
    host: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("WANDB_SILENT", "true")
    monkeypatch.setenv("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    monkeypatch.setenv("MLFLOW_HOST", host)
    assert tracking_server.main([]) == EXIT_BAD_CONFIG
    err = capsys.readouterr().err
    assert err.count("\n") == 1, err
    assert f"refusing to listen on {host} without authentication" in err
    assert "MLFLOW_AUTH_ADMIN_PASSWORD" in err and "127.0.0.1" in err and "docs/auth.md" in err
    assert not (tmp_path / "mlruns").exists()


@pytest.mark.parametrize(
    ("host", "loopback"),
    [
        ("127.0.0.1", True),
        ("127.0.0.2", True),
        ("::1", True),
        ("[::1]", True),
        ("localhost", True),
        ("0.0.0.0", False),
        ("::", False),
        ("192.168.1.4", False),
        ("localhost.example.org", False),
    ],
)
def test_only_loopback_addresses_count_as_loopback(host: str, loopback: bool) -> None:
    assert tracking_server.is_loopback(host) is loopback


def test_with_the_admin_password_the_server_may_listen_everywhere_and_runs_basic_auth(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MLFLOW_AUTH_ADMIN_PASSWORD", ADMIN_PASSWORD)
    plan = _plan(tmp_path, "tracking.server.host=0.0.0.0")
    tracking_server.refuse_unauthenticated_exposure(plan)  # no error
    assert plan.auth == tracking_server.AuthPlan(
        admin_username="admin",
        database_uri=f"sqlite:///{tmp_path.resolve()}/mlruns/server/basic_auth.db",
    )
    command = server_command(plan)
    assert command[command.index("--app-name") + 1] == "basic-auth"
    assert not any(ADMIN_PASSWORD in part for part in command)
    config = tmp_path / "auth.ini"
    env = server_environment(plan, dict(os.environ), config)
    assert env["MLFLOW_AUTH_CONFIG_PATH"] == str(config)
    assert env["MLFLOW_AUTH_ADMIN_USERNAME"] == "admin"
    assert env["MLFLOW_AUTH_ADMIN_PASSWORD"] == ADMIN_PASSWORD  # where MLflow reads it
    assert len(env["MLFLOW_FLASK_SERVER_SECRET_KEY"]) == 64  # a fresh one, none was set


def test_without_the_password_there_is_no_auth_app_and_no_stray_auth_settings(
    tmp_path: Path,
) -> None:
    plan = _plan(tmp_path)
    assert plan.auth is None
    assert "--app-name" not in server_command(plan)
    env = server_environment(plan, {"MLFLOW_AUTH_CONFIG_PATH": "/elsewhere.ini"})
    assert "MLFLOW_AUTH_CONFIG_PATH" not in env


def test_the_admin_name_and_secret_key_are_taken_as_set_and_a_short_password_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("MLFLOW_AUTH_ADMIN_PASSWORD", ADMIN_PASSWORD)
    monkeypatch.setenv("MLFLOW_AUTH_ADMIN_USERNAME", "root-of-ml")
    monkeypatch.setenv("MLFLOW_FLASK_SERVER_SECRET_KEY", "kept-key")
    plan = _plan(tmp_path)
    assert plan.auth is not None and plan.auth.admin_username == "root-of-ml"
    env = server_environment(plan, dict(os.environ), tmp_path / "auth.ini")
    assert env["MLFLOW_FLASK_SERVER_SECRET_KEY"] == "kept-key"
    assert env["MLFLOW_AUTH_ADMIN_USERNAME"] == "root-of-ml"
    monkeypatch.setenv("MLFLOW_AUTH_ADMIN_PASSWORD", "short-pw")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("WANDB_SILENT", "true")
    monkeypatch.setenv("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    assert tracking_server.main([]) == EXIT_BAD_CONFIG
    err = capsys.readouterr().err
    assert "shorter than 12 characters" in err and "short-pw" not in err


def test_the_password_is_read_from_dotenv(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / ".env").write_text(f"MLFLOW_AUTH_ADMIN_PASSWORD={ADMIN_PASSWORD}\n")
    monkeypatch.chdir(tmp_path)
    # Registered with monkeypatch so that what .env sets is undone after the test.
    monkeypatch.setenv("MLFLOW_AUTH_ADMIN_PASSWORD", "")
    monkeypatch.delenv("MLFLOW_AUTH_ADMIN_PASSWORD")
    tracking_server.prepare_process()
    plan = _plan(tmp_path, "tracking.server.host=0.0.0.0")
    assert plan.auth is not None
    tracking_server.refuse_unauthenticated_exposure(plan)


def test_the_user_database_of_a_postgresql_backend_is_the_same_database() -> None:
    assert tracking_server.auth_database_uri(PG_URI) == PG_URI


def test_the_auth_settings_file_is_private_holds_no_password_and_reads_back_as_written() -> None:
    database = "postgresql://ml:p%40ss%25word@db.internal:5432/mlflow"  # URL-encoded '@', '%'
    auth = tracking_server.AuthPlan(admin_username="admin", database_uri=database)
    with tracking_server.auth_config_file(auth) as path:
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
        assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
        assert PROJECT_ROOT not in path.parents
        # As mlflow.server.auth.config.read_auth_config reads it (a plain ConfigParser, whose
        # interpolation would fail on a single '%'); importing that module takes seconds.
        parser = configparser.ConfigParser()
        parser.read(path)
        text = path.read_text()
    section = parser["mlflow"]
    assert section["database_uri"] == database
    assert section["admin_username"] == "admin"
    assert section["default_permission"] == "READ"
    assert "admin_password" not in section  # MLflow reads it from MLFLOW_AUTH_ADMIN_PASSWORD
    assert "p%40ss" not in text.replace("%%", "")  # every '%' escaped
    assert not path.exists() and not path.parent.exists()
