"""The MLflow project backend `warm-fork`: the local backend's command, forked from a warm server.

Registered in pyproject.toml under the `mlflow.project_backend` entry-point group, so
`mlflow.projects.run(uri, entry_point, backend="warm-fork", env_manager="local", ...)` drives it.
The entry point's command is built exactly as the local backend builds it (MLproject, parameter
substitution and quoting, MLFLOW_RUN_ID / MLFLOW_TRACKING_URI / MLFLOW_EXPERIMENT_ID). A command
of the form `python -m module args...`, whose `python` is this interpreter, is forked from the
warm server; anything else (shell syntax, another interpreter) runs through `bash -c` as the
local backend runs it, and other environment managers or docker projects go to the local
backend itself. The run id travels in `backend_config` under the local backend's key
(`mlflow.projects.run` fills it in only for backend="local").
"""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
import sys
from typing import Any

import mlflow
from mlflow.projects.backend.abstract_backend import AbstractBackend
from mlflow.projects.backend.local import LocalBackend, _env_type_to_env_manager
from mlflow.projects.submitted_run import LocalSubmittedRun
from mlflow.projects.utils import (
    MLFLOW_LOCAL_BACKEND_RUN_ID_CONFIG,
    PROJECT_ENV_MANAGER,
    PROJECT_STORAGE_DIR,
    fetch_and_validate_project,
    get_entry_point_command,
    get_or_create_run,
    get_run_env_vars,
    load_project,
)
from mlflow.utils.databricks_utils import get_databricks_env_vars

from warm_backend.client import WarmForkUnavailable, WarmProcess, submit
from warm_backend.protocol import parse_module_command, same_interpreter

logger = logging.getLogger(__name__)

BACKEND_NAME = "warm-fork"
# backend_config key: variables for the entry point's process alone, on top of this process's
# environment (a sweep's per-step thread budget: OMP_NUM_THREADS and the like).
STEP_ENVIRONMENT_CONFIG = "step_environment"


class WarmSubmittedRun(LocalSubmittedRun):
    """A run of the warm backend: `command_proc` is a `WarmProcess` (forked by the server) or a
    `subprocess.Popen` (the shell fallback); both have pid, poll(), wait(timeout), terminate().
    wait(), get_status() and cancel() are the local backend's (the child leads its own process
    group, so cancel() stops the whole group)."""

    @property
    def forked(self) -> bool:
        return isinstance(self.command_proc, WarmProcess)


class WarmForkBackend(AbstractBackend):
    def run(
        self,
        project_uri: str,
        entry_point: str,
        params: dict[str, Any],
        version: str | None,
        backend_config: dict[str, Any],
        tracking_uri: str,
        experiment_id: str,
    ) -> LocalSubmittedRun:
        work_dir = fetch_and_validate_project(project_uri, version, entry_point, params)
        project = load_project(work_dir)
        env_manager = backend_config.get(PROJECT_ENV_MANAGER)
        if env_manager is None:
            env_manager = _env_type_to_env_manager(project.env_type)
        if env_manager != "local" or project.docker_env:
            logger.info("warm-fork: env_manager=%s runs on the local backend", env_manager)
            return LocalBackend().run(
                project_uri,
                entry_point,
                params,
                version,
                backend_config,
                tracking_uri,
                experiment_id,
            )
        active_run = get_or_create_run(
            backend_config.get(MLFLOW_LOCAL_BACKEND_RUN_ID_CONFIG),
            project_uri,
            experiment_id,
            work_dir,
            version,
            entry_point,
            params,
        )
        run_id = active_run.info.run_id
        command = " ".join(
            get_entry_point_command(
                project, entry_point, params, backend_config.get(PROJECT_STORAGE_DIR)
            )
        )
        env = os.environ.copy()
        env.update(get_run_env_vars(run_id, experiment_id))
        env.update(get_databricks_env_vars(tracking_uri=mlflow.get_tracking_uri()))
        env.update(backend_config.get(STEP_ENVIRONMENT_CONFIG) or {})
        logger.info("=== Running command '%s' in run with ID '%s' (warm-fork) ===", command, run_id)
        return WarmSubmittedRun(run_id, start_command(command, work_dir, env))


def start_command(command: str, work_dir: str, env: dict[str, str]) -> Any:
    """Fork `command` from the warm server when it is `python -m ...` of this interpreter;
    otherwise (or when the server cannot take it) run it through bash like the local backend."""
    parsed = parse_module_command(command)
    if parsed is not None:
        program = shutil.which(parsed.python, path=env.get("PATH"))
        if same_interpreter(program, sys.executable):
            try:
                return submit(parsed.module, parsed.args, env, work_dir)
            except (OSError, WarmForkUnavailable) as error:
                logger.warning("warm-fork unavailable (%s); running through a shell", error)
        else:
            logger.info("warm-fork: %r is not this interpreter; running through a shell", program)
    return subprocess.Popen(["bash", "-c", command], close_fds=True, cwd=work_dir, env=env)
