"""A real, throwaway PostgreSQL server on a free loopback port, for the tracking-server test.

Debian's `postgresql` package provides the binaries (installed with apt-get when missing and
this is root; else the test skips and says why). The cluster lives in a temporary directory
under /tmp, listens on 127.0.0.1 only, asks every TCP client for a password (SCRAM), and is
removed afterwards. As root, initdb and postgres refuse to run, so they run as the `postgres`
user: its directories are made with mkdtemp under /tmp (pytest's own are mode 700 for root,
where postgres could not enter) and handed over to it.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import secrets
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
import pytest
from psycopg import sql

from tests.loopback import free_port
from tests.services.conftest import Process, start_process

INSTALL_TIMEOUT_S = 900.0
START_TIMEOUT_S = 60.0
SUPERUSER = "postgres"
_VERSIONED_BINS = "/usr/lib/postgresql/*/bin"


def _version(bin_dir: Path) -> tuple[int, ...]:
    name = bin_dir.parent.name
    return tuple(int(part) for part in name.split(".") if part.isdigit())


def find_bin_dir() -> Path | None:
    """The newest Debian PostgreSQL with initdb and postgres, else one on PATH."""
    candidates = sorted(
        (path for path in Path("/").glob(_VERSIONED_BINS.lstrip("/")) if path.is_dir()),
        key=_version,
        reverse=True,
    )
    for bin_dir in candidates:
        if all(os.access(bin_dir / tool, os.X_OK) for tool in ("initdb", "postgres")):
            return bin_dir
    initdb, postgres = shutil.which("initdb"), shutil.which("postgres")
    if initdb and postgres and Path(initdb).parent == Path(postgres).parent:
        return Path(initdb).parent
    return None


def install_postgres(log_path: Path) -> str | None:
    """Install Debian's postgresql package (as root); None when done, else why not."""
    if os.geteuid() != 0:
        return (
            "PostgreSQL is not installed and installing it needs root (apt-get install postgresql)"
        )
    if shutil.which("apt-get") is None:
        return "PostgreSQL is not installed and this machine has no apt-get to install it"
    script = (
        "apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql"
    )
    with log_path.open("wb") as log:
        try:
            done = subprocess.run(
                ["bash", "-c", script],
                stdout=log,
                stderr=subprocess.STDOUT,
                timeout=INSTALL_TIMEOUT_S,
                check=False,
            )
        except subprocess.TimeoutExpired:
            return (
                f"apt-get install postgresql took over {INSTALL_TIMEOUT_S:.0f} s (see {log_path})"
            )
    if done.returncode != 0:
        return (
            f"apt-get install postgresql failed with exit code {done.returncode} (see {log_path})"
        )
    return None


@dataclass
class PostgresServer:
    """A running cluster: its superuser's password and a way to add databases."""

    host: str
    port: int
    password: str
    process: Process
    bin_dir: Path

    def connect(
        self, dbname: str = "postgres", user: str = SUPERUSER, password: str = ""
    ) -> psycopg.Connection[Any]:
        """A connection over TCP (the superuser's by default), in autocommit mode."""
        return psycopg.connect(
            host=self.host,
            port=self.port,
            user=user,
            password=password or self.password,
            dbname=dbname,
            connect_timeout=3,
            autocommit=True,
        )

    def create_database(self, name: str, owner: str, password: str) -> str:
        """A login role owning a new database; its SQLAlchemy URI (with the password)."""
        with self.connect() as connection:
            connection.execute(
                sql.SQL("CREATE ROLE {} LOGIN PASSWORD {}").format(
                    sql.Identifier(owner), sql.Literal(password)
                )
            )
            connection.execute(
                sql.SQL("CREATE DATABASE {} OWNER {}").format(
                    sql.Identifier(name), sql.Identifier(owner)
                )
            )
        return f"postgresql://{owner}:{password}@{self.host}:{self.port}/{name}"


def _as_postgres_user() -> tuple[list[str], int | None, int | None]:
    """The command prefix and owner ids: root hands over to `postgres`, anyone else runs it."""
    if os.geteuid() != 0:
        return [], None, None
    runuser = shutil.which("runuser")
    if runuser is None:
        pytest.skip("running PostgreSQL as root needs runuser (util-linux) to become postgres")
    try:
        account = pwd.getpwnam(SUPERUSER)
    except KeyError:
        pytest.skip("PostgreSQL refuses to run as root and this machine has no postgres user")
    return [runuser, "-u", SUPERUSER, "--"], account.pw_uid, account.pw_gid


def _accepts_connections(server: PostgresServer) -> bool:
    try:
        server.connect().close()
    except psycopg.OperationalError:
        return False
    return True


@contextlib.contextmanager
def running_postgres(log_dir: Path) -> Iterator[PostgresServer]:
    """initdb, start, wait until it accepts connections; stop and remove it all afterwards."""
    bin_dir = find_bin_dir()
    if bin_dir is None:
        reason = install_postgres(log_dir / "apt-get-postgresql.log")
        bin_dir = find_bin_dir()
        if reason or bin_dir is None:
            pytest.skip(reason or "apt-get installed postgresql but no initdb/postgres was found")
    prefix, uid, gid = _as_postgres_user()
    root = Path(tempfile.mkdtemp(prefix="services-postgres-", dir="/tmp"))
    try:
        data, sockets, pwfile = root / "data", root / "sockets", root / "pwfile"
        sockets.mkdir()
        password = secrets.token_urlsafe(18)
        pwfile.write_text(password + "\n")
        pwfile.chmod(0o600)
        if uid is not None and gid is not None:
            for path in (root, sockets, pwfile):
                os.chown(path, uid, gid)
        initdb = subprocess.run(
            [
                *prefix,
                str(bin_dir / "initdb"),
                "-D",
                str(data),
                "-U",
                SUPERUSER,
                f"--pwfile={pwfile}",
                "--auth=scram-sha-256",
                "--encoding=UTF8",
                "--locale=C",
                "--no-sync",
            ],
            cwd=root,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        if initdb.returncode != 0:
            pytest.fail(f"initdb failed ({initdb.returncode}):\n{initdb.stdout}\n{initdb.stderr}")
        port = free_port()
        command = [
            *prefix,
            str(bin_dir / "postgres"),
            "-D",
            str(data),
            "-p",
            str(port),
            "-k",
            str(sockets),
            "-c",
            "listen_addresses=127.0.0.1",
            "-c",
            "fsync=off",
            "-c",
            "synchronous_commit=off",
        ]
        env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
        process = start_process("postgres", command, env, root, log_dir)
        server = PostgresServer("127.0.0.1", port, password, process, bin_dir)
        try:
            deadline = time.monotonic() + START_TIMEOUT_S
            while not _accepts_connections(server):
                if process.popen.poll() is not None or time.monotonic() > deadline:
                    pytest.fail(f"postgres did not accept connections:\n{process.log_tail()}")
                time.sleep(0.3)
            yield server
        finally:
            # SIGINT is PostgreSQL's fast shutdown: clients are disconnected, not waited for.
            process.stop(signal.SIGINT)
    finally:
        shutil.rmtree(root, ignore_errors=True)
