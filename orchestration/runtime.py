"""Process set-up every flow entry shares: `.env`, telemetry, the configuration composed once
per command, tracking and W&B settings."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator, Sequence
from contextvars import ContextVar
from pathlib import Path

from orchestration.config import PipelineConfig, load_config
from steps.contract import REPORTED_BY_CALLER_VARIABLE
from tasks.tracking_store import default_tracking_uri, use_tracking_uri

# The configurations a command has composed, by their overrides (see `composing_once`).
_COMPOSED: ContextVar[dict[tuple[str, ...], PipelineConfig] | None] = ContextVar(
    "composed_configs", default=None
)


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


@contextlib.contextmanager
def composing_once() -> Iterator[None]:
    """Within this block (one command: flows/cli.py), the configuration of the same overrides is
    composed and validated once: the command's check before any work, the flow run's name and
    the flow body all get that one validated PipelineConfig (it is frozen). Outside it (a flow
    started by a deployment) each call composes afresh, so a long-lived worker never reuses a
    configuration composed for an earlier run."""
    token = _COMPOSED.set({})
    try:
        yield
    finally:
        _COMPOSED.reset(token)


def compose(overrides: Sequence[str]) -> PipelineConfig:
    """The validated configuration for `overrides` (ConfigError when it cannot run)."""
    composed = _COMPOSED.get()
    if composed is None:
        return load_config(overrides)
    key = tuple(overrides)
    if key not in composed:
        composed[key] = load_config(overrides)
    return composed[key]


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
    os.environ[REPORTED_BY_CALLER_VARIABLE] = "1"
    return uri


# What an entry point's process needs to reach the stores, set by configure_services. Never a
# credential: those stay in each machine's own environment or .env.
SERVICE_VARIABLES = (
    "MLFLOW_TRACKING_URI",
    "WANDB_MODE",
    "WANDB_PROJECT",
    "WANDB_RUN_GROUP",
    REPORTED_BY_CALLER_VARIABLE,
)


def service_environment() -> dict[str, str]:
    """The store settings configure_services chose, for tasks that run in other processes
    (a Dask worker, on this machine or another one)."""
    return {name: os.environ[name] for name in SERVICE_VARIABLES if name in os.environ}
