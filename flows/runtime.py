"""Process set-up every flow entry shares: `.env`, telemetry, tracking and W&B settings."""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence
from pathlib import Path

from flows.config import ConfigError, PipelineConfig, load_config
from tasks.tracking_store import default_tracking_uri, use_tracking_uri


def prepare_process() -> None:
    """Process-wide defaults for a command-line start: `.env`, and no telemetry phoning home."""
    from dotenv import load_dotenv

    load_dotenv(Path.cwd() / ".env", override=False)
    for key, value in {
        "DO_NOT_TRACK": "true",
        "MLFLOW_DISABLE_TELEMETRY": "true",
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "WANDB_SILENT": "true",
    }.items():
        os.environ.setdefault(key, value)


def start_command(overrides: Sequence[str]) -> bool:
    """The common start of every command: process defaults, then the configuration checked
    before any work. False (with the reason on stderr) when the configuration is refused."""
    prepare_process()
    try:
        load_config(overrides)
    except ConfigError as error:
        sys.stderr.write(f"error: {error}\n")
        return False
    return True


def configure_services(cfg: PipelineConfig, start_dir: Path, group: str) -> str:
    """Tracking and W&B settings for this process and the entry points it starts."""
    if cfg.main.backend == "warm-fork" and cfg.main.env_manager == "local":
        from warm_backend.client import prestart

        prestart()  # it imports while the flow sets up the store; ready by the first step
    uri = use_tracking_uri(cfg.tracking.uri or default_tracking_uri(start_dir))
    os.environ["WANDB_MODE"] = cfg.wandb.mode
    os.environ["WANDB_PROJECT"] = cfg.wandb.project
    os.environ["WANDB_RUN_GROUP"] = cfg.wandb.group or group
    os.environ.setdefault("WANDB_DIR", str(start_dir))
    # The flow prints a failed step's message once, at the end (flows/cli.py): the entry point
    # need not log it a second time (steps/common/entrypoint.py).
    os.environ["STEP_ERRORS_REPORTED_BY_CALLER"] = "1"
    return uri


# What an entry point's process needs to reach the stores, set by configure_services. Never a
# credential: those stay in each machine's own environment or .env.
SERVICE_VARIABLES = (
    "MLFLOW_TRACKING_URI",
    "WANDB_MODE",
    "WANDB_PROJECT",
    "WANDB_RUN_GROUP",
    "STEP_ERRORS_REPORTED_BY_CALLER",
)


def service_environment() -> dict[str, str]:
    """The store settings configure_services chose, for tasks that run in other processes
    (a Dask worker, on this machine or another one)."""
    return {name: os.environ[name] for name in SERVICE_VARIABLES if name in os.environ}
