"""The shared MLflow tracking server: a SQL backend and served artifacts behind one URL.

    python -m deployments.tracking_server [hydra overrides...]       (make mlflow-server)

A pipeline's default store is SQLite under its own working directory, which only processes on
that machine can reach. Behind `mlflow server --serve-artifacts`, runs, models, artifacts and
the registry all go over HTTP: every pipeline, promotion and worker, on any machine, needs only
`MLFLOW_TRACKING_URI=http://HOST:PORT`. Settings are `tracking.server.*` in conf/config.yaml
(MLFLOW_HOST, MLFLOW_PORT, MLFLOW_BACKEND_STORE_URI, MLFLOW_ARTIFACTS_DESTINATION,
MLFLOW_ALLOWED_HOSTS); the backend is SQLite at ./mlruns/server/mlflow.db unless it names
PostgreSQL (`postgresql://USER@HOST:5432/DB`, the password from PGPASSWORD or ~/.pgpass).

Before the server starts, this checks the backend answers (a short timeout, one clear line when
it does not) and creates or upgrades its schema once: the server's worker processes must find
it ready rather than each attempt a migration. The backend URI reaches `mlflow server` through
the MLFLOW_BACKEND_STORE_URI environment variable (its own option reads it), never its argv, so
a password in it does not show in `ps`. SIGINT and SIGTERM are passed on to the server.

Authentication (docs/auth.md): with MLFLOW_AUTH_ADMIN_PASSWORD set (environment or .env; with
MLFLOW_AUTH_ADMIN_USERNAME, default admin, and MLFLOW_FLASK_SERVER_SECRET_KEY) the server runs
MLflow's own basic-auth app: every request needs a user, and a user needs permission on a
registered model to move its aliases. Its user database sits beside the backend store: SQLite
basic_auth.db next to a SQLite backend, the same PostgreSQL database otherwise (its own tables).
The password reaches MLflow only through its environment; the auth app's settings file is written
with mode 0600 in a private temporary folder (it names the user database, whose URI may carry a
password) and removed when the server stops. Without a password the server listens only on a
loopback address: on 0.0.0.0 or any other it refuses to start (exit 2), since anyone who reached
it could point @champion at any model.

Exit codes: the server's own when it stops; 2 the configuration is refused (a bad key, value or
backend URI, a non-loopback address without authentication); 69 (EX_UNAVAILABLE) the backend
cannot be reached or prepared (down, wrong credentials, no such database), so a supervisor can
tell "fix the settings" from "try again".
"""

from __future__ import annotations

import ipaddress
import logging
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from urllib.parse import urlsplit

from orchestration.config import ConfigError, TrackingServerConfig, load_config
from orchestration.runtime import prepare_process
from steps.common.url_secrets import hide_password

logger = logging.getLogger(__name__)

EXIT_BAD_CONFIG = 2
EXIT_BACKEND_UNAVAILABLE = 69  # sysexits EX_UNAVAILABLE
CONNECT_TIMEOUT_S = 5
BACKEND_ENV_VAR = "MLFLOW_BACKEND_STORE_URI"
# Settings of mlflow's own options that would undo served artifacts; dropped from its
# environment (with a warning) so every client uploads through the server.
_OVERRIDDEN_ENV = ("MLFLOW_DEFAULT_ARTIFACT_ROOT", "MLFLOW_ARTIFACTS_ONLY")
_SERVER_ENV_DEFAULTS = {
    "DO_NOT_TRACK": "true",
    "MLFLOW_DISABLE_TELEMETRY": "true",
    # The server's job runner (a huey consumer) serves GenAI evaluation jobs this pipeline never
    # submits: one process and one database poller fewer. Set it to true to have them.
    "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false",
}


_WILDCARD_HOSTS = ("0.0.0.0", "::", "[::]")

# MLflow's own variables for its basic-auth app; read from the environment (or .env), never argv.
ADMIN_PASSWORD_ENV = "MLFLOW_AUTH_ADMIN_PASSWORD"
ADMIN_USERNAME_ENV = "MLFLOW_AUTH_ADMIN_USERNAME"
SECRET_KEY_ENV = "MLFLOW_FLASK_SERVER_SECRET_KEY"
AUTH_CONFIG_ENV = "MLFLOW_AUTH_CONFIG_PATH"
DEFAULT_ADMIN_USERNAME = "admin"
AUTH_APP = "basic-auth"
AUTH_DATABASE_FILE = "basic_auth.db"
# What an authenticated user may do where no permission was granted: read (MLflow's default).
# Moving an alias needs EDIT or MANAGE on the registered model (deployments/tracking_users.py).
DEFAULT_PERMISSION = "READ"
MIN_PASSWORD_LENGTH = 12  # mlflow.utils.validation._validate_password


class BackendUnavailable(RuntimeError):
    """The backend store cannot be reached or prepared; the message says what to check."""


@dataclass(frozen=True)
class ServerPlan:
    """Everything `mlflow server` is started with, resolved from the configuration."""

    backend_store_uri: str
    artifacts_destination: str
    host: str
    port: int
    workers: int
    allowed_hosts: str | None = None
    auth: AuthPlan | None = None

    @property
    def listens_everywhere(self) -> bool:
        return self.host in _WILDCARD_HOSTS

    @property
    def url(self) -> str:
        """What clients set as MLFLOW_TRACKING_URI: this machine's name when the server listens
        on every interface, an IPv6 address in brackets."""
        host = socket.gethostname() if self.listens_everywhere else self.host
        host = f"[{host}]" if ":" in host else host
        return f"http://{host}:{self.port}"

    @property
    def shown_backend(self) -> str:
        return hide_password(self.backend_store_uri)

    @property
    def listens_on_loopback(self) -> bool:
        return is_loopback(self.host)


@dataclass(frozen=True)
class AuthPlan:
    """MLflow's basic-auth app: who the admin is and where the users live (no password here:
    it stays in the environment, where MLflow reads it)."""

    admin_username: str
    database_uri: str
    default_permission: str = DEFAULT_PERMISSION


def is_loopback(host: str) -> bool:
    """Whether only this machine can reach `host`: localhost, 127.0.0.0/8 or ::1. A name other
    than localhost may resolve to any interface, so it counts as reachable from elsewhere."""
    name = host.strip().strip("[]").lower()
    if name == "localhost":
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


def auth_database_uri(backend_store_uri: str) -> str:
    """The user database beside the backend store: basic_auth.db in a SQLite backend's folder;
    for PostgreSQL, the same database (MLflow's auth tables and their own alembic_version_auth
    sit apart from the tracking tables), so one backup holds both."""
    if _scheme(backend_store_uri) == "sqlite":
        path = Path(backend_store_uri.split(":///", 1)[1]).expanduser()
        return f"sqlite:///{path.parent / AUTH_DATABASE_FILE}"
    return backend_store_uri


def resolve_auth(backend_store_uri: str, env: Mapping[str, str]) -> AuthPlan | None:
    """Basic auth when MLFLOW_AUTH_ADMIN_PASSWORD is set and not empty; None otherwise."""
    password = env.get(ADMIN_PASSWORD_ENV, "")
    if not password.strip():
        return None
    if len(password) < MIN_PASSWORD_LENGTH:
        raise ConfigError(
            f"{ADMIN_PASSWORD_ENV} is shorter than {MIN_PASSWORD_LENGTH} characters, MLflow's "
            "minimum: set a longer one in the environment or .env"
        )
    username = env.get(ADMIN_USERNAME_ENV, "").strip() or DEFAULT_ADMIN_USERNAME
    return AuthPlan(admin_username=username, database_uri=auth_database_uri(backend_store_uri))


def refuse_unauthenticated_exposure(plan: ServerPlan) -> None:
    """A server others can reach must ask who they are: anyone who reaches one without auth can
    point @champion at any model, and every pipeline then loads it."""
    if plan.auth is None and not plan.listens_on_loopback:
        raise ConfigError(
            f"refusing to listen on {plan.host} without authentication (anyone reaching it could "
            f"move @champion): set {ADMIN_PASSWORD_ENV} and {SECRET_KEY_ENV} in the environment "
            "or .env (docs/auth.md), or listen on 127.0.0.1"
        )


def auth_config_text(auth: AuthPlan) -> str:
    """MLflow's basic_auth.ini for `auth`; `%` doubled, as configparser reads it."""
    lines = {
        "default_permission": auth.default_permission,
        "database_uri": auth.database_uri,
        "admin_username": auth.admin_username,
        "authorization_function": "mlflow.server.auth:authenticate_request_basic_auth",
    }
    body = "".join(f"{key} = {value.replace('%', '%%')}\n" for key, value in lines.items())
    return f"[mlflow]\n{body}"


@contextmanager
def auth_config_file(auth: AuthPlan) -> Iterator[Path]:
    """The auth app's settings in a private folder (0700, file 0600) outside the project, for as
    long as the server runs: the user database's URI may carry a password."""
    folder = Path(tempfile.mkdtemp(prefix="mlflow-auth-"))
    try:
        path = folder / "basic_auth.ini"
        descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(descriptor, "w", encoding="utf-8") as handle:
            handle.write(auth_config_text(auth))
        yield path
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def default_backend_uri(work_dir: Path) -> str:
    """SQLite beside the working directory, apart from a pipeline's own ./mlruns/mlflow.db."""
    return f"sqlite:///{(work_dir / 'mlruns' / 'server' / 'mlflow.db').resolve()}"


def _is_uri(value: str) -> bool:
    """`s3://bucket`, `file:///x` are URIs; `/srv/artifacts` and `C:` style paths are not."""
    return "://" in value or value.startswith("file:")


def resolve_plan(
    server: TrackingServerConfig, work_dir: Path, env: Mapping[str, str] | None = None
) -> ServerPlan:
    """Defaults filled in, local paths made absolute (relative ones from the working directory);
    basic auth when `env` (this process's environment by default) has the admin password."""
    backend = server.backend_store_uri or default_backend_uri(work_dir)
    artifacts = server.artifacts_destination or str(work_dir / "mlruns" / "server" / "artifacts")
    if not _is_uri(artifacts):
        artifacts = str((work_dir / Path(artifacts).expanduser()).resolve())
    return ServerPlan(
        backend_store_uri=backend,
        artifacts_destination=artifacts,
        host=server.host,
        port=server.port,
        workers=server.workers,
        allowed_hosts=server.allowed_hosts or None,
        auth=resolve_auth(backend, env if env is not None else os.environ),
    )


def server_command(plan: ServerPlan) -> list[str]:
    """`mlflow server` of this interpreter; the backend URI is deliberately not in it."""
    command = [
        sys.executable,
        "-m",
        "mlflow",
        "server",
        "--serve-artifacts",
        "--artifacts-destination",
        plan.artifacts_destination,
        "--host",
        plan.host,
        "--port",
        str(plan.port),
        "--workers",
        str(plan.workers),
    ]
    if plan.allowed_hosts:
        command += ["--allowed-hosts", plan.allowed_hosts]
    if plan.auth is not None:
        command += ["--app-name", AUTH_APP]
    return command


def server_environment(
    plan: ServerPlan, base: Mapping[str, str], auth_config: Path | None = None
) -> dict[str, str]:
    """The server's environment: `base`, the backend URI, telemetry and the job runner off; with
    auth, the settings file and the admin's name (the password is already in `base`) and a
    Flask secret key shared by the workers (a fresh one when none is set)."""
    env = dict(_SERVER_ENV_DEFAULTS) | dict(base)
    for name in _OVERRIDDEN_ENV:
        if env.pop(name, None) is not None:
            logger.warning("%s is ignored: artifacts are served by this server", name)
    env[BACKEND_ENV_VAR] = plan.backend_store_uri
    if plan.auth is None:
        for name in (AUTH_CONFIG_ENV, ADMIN_PASSWORD_ENV):
            env.pop(name, None)
        return env
    if auth_config is None:
        raise ValueError("an authenticated server needs its auth settings file")
    env[AUTH_CONFIG_ENV] = str(auth_config)
    env[ADMIN_USERNAME_ENV] = plan.auth.admin_username
    if not env.get(SECRET_KEY_ENV, "").strip():
        logger.warning(
            "%s is not set: a random one for this start (set it in .env to keep it across "
            "restarts and servers)",
            SECRET_KEY_ENV,
        )
        env[SECRET_KEY_ENV] = secrets.token_hex(32)
    return env


def _scheme(uri: str) -> str:
    return uri.split("://", 1)[0].lower() if "://" in uri else ""


def _one_line(error: BaseException) -> str:
    """A driver's message on one line (psycopg's runs over several, with tabs)."""
    text = str(getattr(error, "orig", None) or error)
    return " ".join(text.split()) or type(error).__name__


def _without_secret(text: str, uri: str) -> str:
    password = urlsplit(uri).password
    return text.replace(password, "***") if password else text


def check_backend(uri: str, timeout_s: float = CONNECT_TIMEOUT_S) -> None:
    """Connect once: a backend that is down or refuses us fails here, in one line, not in every
    worker's traceback. SQLite's folder is created; PostgreSQL gets `timeout_s` to answer."""
    import sqlalchemy
    from sqlalchemy.exc import ArgumentError, DBAPIError, NoSuchModuleError
    from sqlalchemy.pool import NullPool

    shown = hide_password(uri)
    scheme = _scheme(uri)
    connect_args: dict[str, object] = {}
    if scheme == "sqlite":
        path = uri.split(":///", 1)[1] if ":///" in uri else ""
        if not path or path == ":memory:":
            raise ConfigError(
                f"backend {shown} is not a database file: use sqlite:////ABSOLUTE/PATH.db"
            )
        try:
            Path(path).expanduser().parent.mkdir(parents=True, exist_ok=True)
        except OSError as error:
            raise BackendUnavailable(
                f"cannot create the folder of SQLite backend {shown}: {error.strerror}"
            ) from None
        hint = "check the path is writable"
    else:
        connect_args["connect_timeout"] = max(1, round(timeout_s))
        hint = (
            "check PostgreSQL runs and listens there, the database exists, and the user's "
            "password (PGPASSWORD or ~/.pgpass)"
        )
    try:
        engine = sqlalchemy.create_engine(uri, poolclass=NullPool, connect_args=connect_args)
    except (ArgumentError, NoSuchModuleError, ValueError) as error:
        raise ConfigError(
            f"backend {shown} is not a database URI SQLAlchemy reads: "
            f"{_without_secret(_one_line(error), uri)}"
        ) from None
    try:
        with engine.connect() as connection:
            connection.execute(sqlalchemy.text("select 1"))
    except DBAPIError as error:
        reason = _without_secret(_one_line(error), uri)
        raise BackendUnavailable(f"cannot connect to backend {shown}: {reason}; {hint}") from None
    finally:
        engine.dispose()


def prepare_schema(uri: str) -> str:
    """Create (empty database) or upgrade (older MLflow) the schema, once, before any worker
    starts; what it did, in words. As SqlAlchemyStore does on a fresh database and
    `mlflow db upgrade` does on an old one (mlflow server itself refuses an old schema)."""
    from mlflow.store.db import utils as db_utils

    engine = db_utils.create_sqlalchemy_engine(uri)
    try:
        found = (
            None if db_utils._is_empty_database(engine) else db_utils._get_schema_version(engine)
        )
        head = db_utils._get_latest_schema_revision()
        complete = db_utils._all_tables_exist(engine)
        if found == head and complete:
            return "schema up to date"
        if found is not None:
            logger.warning(
                "upgrading the MLflow schema of %s from %s to %s", hide_password(uri), found, head
            )
        if complete:
            db_utils._upgrade_db(engine)
        else:  # also creates tables added since `found`, before migrating
            db_utils._initialize_tables(engine)
        db_utils._verify_schema(engine)
        return "schema created" if found is None else f"schema upgraded from {found}"
    finally:
        engine.dispose()


def _prepare_backend(uri: str) -> str:
    """check_backend, then prepare_schema; any failure as BackendUnavailable, password hidden."""
    from sqlalchemy.exc import SQLAlchemyError

    check_backend(uri)
    try:
        return prepare_schema(uri)
    except (SQLAlchemyError, OSError) as error:
        reason = _without_secret(_one_line(error), uri)
        raise BackendUnavailable(
            f"cannot prepare the MLflow schema in {hide_password(uri)}: {reason}; check the "
            "user may create tables there (and take a backup before an upgrade)"
        ) from None
    except Exception as error:  # MlflowException from the schema check, alembic's errors
        reason = _without_secret(_one_line(error), uri)
        raise BackendUnavailable(
            f"cannot prepare the MLflow schema in {hide_password(uri)}: {reason}"
        ) from None


def run_server(plan: ServerPlan, base_env: Mapping[str, str]) -> int:
    """Start `mlflow server` (with its auth settings file while it runs, when authenticated),
    pass SIGINT/SIGTERM on to it, and return its exit code."""
    if plan.auth is None:
        return _run_child(plan, server_environment(plan, base_env))
    with auth_config_file(plan.auth) as auth_config:
        return _run_child(plan, server_environment(plan, base_env, auth_config))


def _run_child(plan: ServerPlan, env: Mapping[str, str]) -> int:
    if not _is_uri(plan.artifacts_destination):
        Path(plan.artifacts_destination).mkdir(parents=True, exist_ok=True)
    child = subprocess.Popen(server_command(plan), env=dict(env))

    def forward(signum: int, _frame: FrameType | None) -> None:
        if child.poll() is None:
            child.send_signal(signum)

    previous = {sig: signal.signal(sig, forward) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        return child.wait()
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def main(argv: Sequence[str] | None = None) -> int:
    overrides = list(sys.argv[1:] if argv is None else argv)
    if any(arg in ("-h", "--help") for arg in overrides):
        sys.stdout.write(__doc__ or "")
        return 0
    prepare_process()
    logging.basicConfig(
        level=logging.INFO, format="%(levelname)s %(name)s: %(message)s", stream=sys.stderr
    )
    for noisy in ("alembic", "mlflow.store.db.utils"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    try:
        plan = resolve_plan(load_config(overrides).tracking.server, Path.cwd())
        refuse_unauthenticated_exposure(plan)
        schema = _prepare_backend(plan.backend_store_uri)
    except ConfigError as error:
        sys.stderr.write(f"error: {error}\n")
        return EXIT_BAD_CONFIG
    except BackendUnavailable as error:
        sys.stderr.write(f"error: {error}\n")
        return EXIT_BACKEND_UNAVAILABLE
    logger.info(
        "MLflow tracking server: backend %s (%s), artifacts %s; clients: MLFLOW_TRACKING_URI=%s",
        plan.shown_backend,
        schema,
        plan.artifacts_destination,
        plan.url,
    )
    if plan.auth is not None:
        logger.info(
            "authentication: MLflow basic-auth, admin user %r, users in %s; clients set "
            "MLFLOW_TRACKING_USERNAME and MLFLOW_TRACKING_PASSWORD",
            plan.auth.admin_username,
            hide_password(plan.auth.database_uri),
        )
    if plan.listens_everywhere and not plan.allowed_hosts:
        logger.warning(
            "listening on every interface, but mlflow answers only Host headers of localhost and "
            "private addresses: set MLFLOW_ALLOWED_HOSTS to the name clients use (%s)",
            socket.gethostname(),
        )
    return run_server(plan, os.environ)


if __name__ == "__main__":
    sys.exit(main())
