"""Users of an authenticated tracking server: the pipeline's own, and read-only ones.

    python -m deployments.tracking_users pipeline USER [--model NAME] [--url URL]
    python -m deployments.tracking_users reader USER [--model NAME] [--url URL]

Run as the server's admin, whose name and password are read from MLFLOW_AUTH_ADMIN_USERNAME
(default admin) and MLFLOW_AUTH_ADMIN_PASSWORD in the environment or .env (the same settings
`make mlflow-server` starts with). The new user's password is the first line of stdin (a prompt
on a terminal), never an argument: `ps` shows arguments to every local user.

- `pipeline USER`: the user pipelines run as (MLFLOW_TRACKING_USERNAME/_PASSWORD on the machines
  that train and promote). The registered model (main.registered_model unless --model) and its
  promotion lock (`NAME.promotion-lock`, whose versions are lock tickets) are created by the admin
  when missing, so no other user can claim either name first, and USER gets MANAGE on both: it
  registers versions, moves @champion and @challenger, and takes and releases the lock.
- `reader USER`: READ on the registered model: it loads `models:/NAME@champion` and reads runs,
  but any attempt to move an alias or register a version is refused (403).

An existing user keeps its name and gets the new password and the permission again, so running
it twice is harmless. Exit codes: 0 done; 2 bad input (no admin password, a password shorter
than MLflow's 12 characters); 1 the server refused (wrong admin credentials, not an
authenticated server); 69 the server cannot be reached.
"""

from __future__ import annotations

import argparse
import getpass
import logging
import os
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TextIO

import requests

from orchestration.config import ConfigError, load_config
from orchestration.runtime import prepare_process
from steps.contract import is_tracking_server

logger = logging.getLogger(__name__)

EXIT_REFUSED = 1
EXIT_BAD_INPUT = 2
EXIT_UNAVAILABLE = 69
MIN_PASSWORD_LENGTH = 12  # MLflow's own minimum (mlflow.utils.validation._validate_password)
LOCK_SUFFIX = ".promotion-lock"
REQUEST_TIMEOUT_S = 30
ROLES = {"pipeline": "MANAGE", "reader": "READ"}

_API = "/api/2.0/mlflow"
_CREATE_USER = f"{_API}/users/create"
_GET_USER = f"{_API}/users/get"
_UPDATE_PASSWORD = f"{_API}/users/update-password"
_GET_MODEL = f"{_API}/registered-models/get"
_CREATE_MODEL = f"{_API}/registered-models/create"
_GRANT = "/api/3.0/mlflow/users/permissions/grant"
_REVOKE = "/api/3.0/mlflow/users/permissions/revoke"


class Refused(RuntimeError):
    """The server answered no; the message says what to check."""


class Unreachable(RuntimeError):
    """No answer from the server."""


@dataclass(frozen=True)
class Grant:
    """What one command sets up: a user, a permission, the registered models it applies to."""

    username: str
    permission: str
    models: tuple[str, ...]


def plan_grant(role: str, username: str, model: str) -> Grant:
    """The models a role's permission covers: the pipeline also owns the promotion lock."""
    models = (model, model + LOCK_SUFFIX) if role == "pipeline" else (model,)
    return Grant(username=username, permission=ROLES[role], models=models)


def admin_credentials(env: Mapping[str, str]) -> tuple[str, str]:
    password = env.get("MLFLOW_AUTH_ADMIN_PASSWORD", "")
    if not password:
        raise ConfigError(
            "MLFLOW_AUTH_ADMIN_PASSWORD is not set: put the server admin's password in the "
            "environment or .env (and MLFLOW_AUTH_ADMIN_USERNAME when it is not admin)"
        )
    return env.get("MLFLOW_AUTH_ADMIN_USERNAME", "").strip() or "admin", password


def read_new_password(stream: TextIO, username: str) -> str:
    """The new user's password: a prompt on a terminal, else the first line of `stream`."""
    if stream.isatty():
        password = getpass.getpass(f"password for {username}: ")
    else:
        password = stream.readline().rstrip("\r\n")
    if len(password) < MIN_PASSWORD_LENGTH:
        raise ConfigError(
            f"the password for {username} must have at least {MIN_PASSWORD_LENGTH} characters "
            "(MLflow's minimum); give it on stdin, e.g. printf '%s\\n' \"$PASSWORD\" | python -m "
            "deployments.tracking_users ..."
        )
    return password


def default_url(env: Mapping[str, str], port: int) -> str:
    uri = env.get("MLFLOW_TRACKING_URI", "")
    return uri if is_tracking_server(uri) else f"http://127.0.0.1:{port}"


class AdminSession:
    """Requests to the server's REST API as its admin (basic auth over `requests`)."""

    def __init__(self, url: str, username: str, password: str) -> None:
        self.url = url.rstrip("/")
        self._session = requests.Session()
        self._session.auth = (username, password)

    def call(self, method: str, path: str, **kwargs: Any) -> requests.Response:
        try:
            response = self._session.request(
                method, self.url + path, timeout=REQUEST_TIMEOUT_S, **kwargs
            )
        except requests.RequestException as error:
            raise Unreachable(
                f"no answer from {self.url} ({type(error).__name__}): check the server runs "
                "there (make mlflow-server) or pass --url"
            ) from None
        if response.status_code == 401:
            raise Refused(
                f"{self.url} refused the admin's credentials: check MLFLOW_AUTH_ADMIN_USERNAME "
                "and MLFLOW_AUTH_ADMIN_PASSWORD are the ones the server was first started with"
            )
        return response

    def user_exists(self, username: str) -> bool:
        response = self.call("GET", _GET_USER, params={"username": username})
        if response.status_code == 200:
            return True
        if response.status_code == 404 and "RESOURCE_DOES_NOT_EXIST" in response.text:
            return False
        if response.status_code == 404:
            raise Refused(
                f"{self.url} has no user API: start it with MLFLOW_AUTH_ADMIN_PASSWORD set "
                "(make mlflow-server runs MLflow's basic-auth app then)"
            )
        raise Refused(_refusal("reading user " + username, response))

    def set_user(self, username: str, password: str) -> str:
        """Create the user, or give an existing one the new password; what was done."""
        if self.user_exists(username):
            payload = {"username": username, "password": password}
            _expect(self.call("PATCH", _UPDATE_PASSWORD, json=payload), "updating " + username)
            return "password updated"
        payload = {"username": username, "password": password}
        _expect(self.call("POST", _CREATE_USER, json=payload), "creating " + username)
        return "created"

    def claim_model(self, name: str) -> None:
        """The registered model exists, created by the admin when it did not."""
        if self.call("GET", _GET_MODEL, params={"name": name}).status_code == 200:
            return
        response = self.call("POST", _CREATE_MODEL, json={"name": name})
        if response.status_code != 200 and "RESOURCE_ALREADY_EXISTS" not in response.text:
            raise Refused(_refusal("creating registered model " + name, response))

    def grant(self, username: str, model: str, permission: str) -> None:
        """`permission` on `model` for `username`, replacing any earlier grant there."""
        target = {"username": username, "resource_type": "registered_model", "resource_id": model}
        self.call("POST", _REVOKE, json=target)  # none yet is fine: the grant below decides
        response = self.call("POST", _GRANT, json=target | {"permission": permission})
        _expect(response, f"granting {permission} on {model} to {username}")


def _refusal(what: str, response: requests.Response) -> str:
    try:
        message = str(response.json().get("message", "")) or response.text
    except ValueError:
        message = response.text
    return f"{what}: HTTP {response.status_code}: {' '.join(message.split())[:300]}"


def _expect(response: requests.Response, what: str) -> None:
    if response.status_code != 200:
        raise Refused(_refusal(what, response))


def apply(session: AdminSession, grant: Grant, password: str) -> str:
    done = session.set_user(grant.username, password)
    for model in grant.models:
        session.claim_model(model)
        session.grant(grant.username, model, grant.permission)
    return done


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m deployments.tracking_users",
        description="Create the pipeline's user or a read-only user on the tracking server "
        "(the new password on stdin; the admin's from MLFLOW_AUTH_ADMIN_PASSWORD).",
    )
    parser.add_argument("role", choices=sorted(ROLES), help="pipeline: MANAGE; reader: READ")
    parser.add_argument("username")
    parser.add_argument("--model", help="registered model (default: main.registered_model)")
    parser.add_argument("--url", help="server URL (default: MLFLOW_TRACKING_URI or local port)")
    return parser


def main(argv: Sequence[str] | None = None, stdin: TextIO | None = None) -> int:
    args = _parser().parse_args(argv)
    prepare_process()
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    try:
        cfg = load_config([])
        admin, admin_password = admin_credentials(os.environ)
        password = read_new_password(stdin or sys.stdin, args.username)
    except ConfigError as error:
        sys.stderr.write(f"error: {error}\n")
        return EXIT_BAD_INPUT
    grant = plan_grant(args.role, args.username, args.model or cfg.main.registered_model)
    url = args.url or default_url(os.environ, cfg.tracking.server.port)
    try:
        done = apply(AdminSession(url, admin, admin_password), grant, password)
    except Refused as error:
        sys.stderr.write(f"error: {error}\n")
        return EXIT_REFUSED
    except Unreachable as error:
        sys.stderr.write(f"error: {error}\n")
        return EXIT_UNAVAILABLE
    logger.info(
        "user %s %s on %s: %s on %s",
        grant.username,
        done,
        url,
        grant.permission,
        ", ".join(grant.models),
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
