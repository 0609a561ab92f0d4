"""A W&B run beside each step's MLflow run: same config, metrics and artifacts, same group.

MLflow stays the hand-off between steps; W&B is a mirror (offline by default, where it cannot
serve artifacts back). Mode, project and group come from W&B's own environment variables, which
the orchestrator sets from `conf/wandb`.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from pathlib import Path
from types import TracebackType
from typing import Any

logger = logging.getLogger(__name__)

_MODES = ("online", "offline", "disabled")


class WandbMirror:
    """Context manager owning one W&B run; every call is a no-op when W&B is disabled."""

    def __init__(self, job_type: str, config: Mapping[str, Any], mlflow_run_id: str) -> None:
        mode = os.environ.get("WANDB_MODE", "offline")
        if mode not in _MODES:
            from steps.common.errors import ConfigurationError

            raise ConfigurationError(f"WANDB_MODE={mode!r} is not one of {', '.join(_MODES)}")
        self.mode = mode
        self.job_type = job_type
        self.config = dict(config)
        self.mlflow_run_id = mlflow_run_id
        self._run: Any = None

    def __enter__(self) -> WandbMirror:
        if self.mode == "disabled":
            return self
        import wandb

        self._run = wandb.init(
            mode=self.mode,  # type: ignore[arg-type]
            project=os.environ.get("WANDB_PROJECT", "nyc_airbnb_price"),
            group=os.environ.get("WANDB_RUN_GROUP"),
            job_type=self.job_type,
            name=f"{self.job_type}-{self.mlflow_run_id[:8]}",
            config={**self.config, "mlflow_run_id": self.mlflow_run_id},
            dir=os.environ.get("WANDB_DIR"),
            settings=wandb.Settings(silent=True, console="off"),
        )
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._run is not None:
            self._run.finish(exit_code=0 if exc is None else 1)
            self._run = None

    def log_metrics(self, metrics: Mapping[str, float]) -> None:
        if self._run is not None:
            self._run.log(dict(metrics))

    def log_artifact(self, path: Path, name: str, kind: str) -> None:
        """Mirror a file or directory as a W&B artifact named like the MLflow output."""
        if self._run is None:
            return
        import wandb

        artifact = wandb.Artifact(name, type=kind, metadata={"mlflow_run_id": self.mlflow_run_id})
        if path.is_dir():
            artifact.add_dir(str(path))
        else:
            artifact.add_file(str(path))
        self._run.log_artifact(artifact)
