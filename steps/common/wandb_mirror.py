"""A W&B run beside each step's MLflow run: same config, metrics, artifacts and lineage, one group.

MLflow stays the hand-off between steps; W&B is a mirror (offline by default, where it cannot
serve artifacts back). Mode, project and group come from W&B's own environment variables, which
the orchestrator sets from `conf/wandb`.

Lineage: every upstream artifact a step downloads through `steps.common.tracking.download_input`
is recorded as an input of the step's W&B run when the mirror opens, under the name and type the
producing step logged it with and with the same file, so its digest is the producer's and the
W&B lineage graph joins where the MLflow one does. Inputs that are not files (a `models:/` URI)
go through `use_input` explicitly. W&B's public `use_artifact` refuses offline runs, so offline
inputs are written as the same record `use_artifact` writes online for a new artifact (logged
with use-after-commit); `wandb sync` later turns it into the input edge.

No secrets and no phoning home: config keys that look like credentials are dropped, and system
metrics sampling (which also probes cloud metadata endpoints), machine info, code saving and
W&B's error reporting are off.
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Mapping
from pathlib import Path
from types import TracebackType
from typing import Any

from steps.contract import OUTPUT_TAG_PREFIX

logger = logging.getLogger(__name__)

_MODES = ("online", "offline", "disabled")
_SECRET_KEY = re.compile(r"(secret|password|passwd|token|api_?key|access_?key|credential)", re.I)

# Upstream artifacts this process downloaded (URI, local path), in order; see record_download.
_DOWNLOADED: list[tuple[str, Path]] = []


def record_download(uri: str, local_path: Path) -> None:
    """Remember an upstream artifact this process read, so its mirror run lists it as an input."""
    _DOWNLOADED.append((uri, local_path))


def public_config(config: Mapping[str, Any]) -> dict[str, Any]:
    """The config as W&B may show it: keys that name a credential are left out."""
    return {key: value for key, value in config.items() if not _SECRET_KEY.search(str(key))}


def _producer(uri: str) -> tuple[str | None, str | None]:
    """(producing MLflow run id, output name) of a `runs:/<id>/<path>` URI, where known."""
    if not uri.startswith("runs:/"):
        return None, None
    run_id = uri[len("runs:/") :].split("/", 1)[0]
    try:
        import mlflow

        tags = mlflow.MlflowClient().get_run(run_id).data.tags
    except Exception:  # lineage is best effort; the hand-off itself went through MLflow
        logger.warning("could not read the run that produced %s", uri, exc_info=True)
        return run_id, None
    for key, value in tags.items():
        if key.startswith(OUTPUT_TAG_PREFIX) and value == uri:
            return run_id, key.removeprefix(OUTPUT_TAG_PREFIX)
    return run_id, None


class WandbMirror:
    """Context manager owning one W&B run; every call is a no-op when W&B is disabled."""

    def __init__(self, job_type: str, config: Mapping[str, Any], mlflow_run_id: str) -> None:
        mode = os.environ.get("WANDB_MODE", "offline")
        if mode not in _MODES:
            from steps.common.errors import ConfigurationError

            raise ConfigurationError(f"WANDB_MODE={mode!r} is not one of {', '.join(_MODES)}")
        self.mode = mode
        self.job_type = job_type
        self.config = public_config(config)
        self.mlflow_run_id = mlflow_run_id
        self._run: Any = None

    def __enter__(self) -> WandbMirror:
        if self.mode == "disabled":
            return self
        os.environ.setdefault("WANDB_ERROR_REPORTING", "false")
        import wandb

        self._run = wandb.init(
            mode=self.mode,  # type: ignore[arg-type]
            project=os.environ.get("WANDB_PROJECT", "nyc_airbnb_price"),
            group=os.environ.get("WANDB_RUN_GROUP"),
            job_type=self.job_type,
            name=f"{self.job_type}-{self.mlflow_run_id[:8]}",
            config={**self.config, "mlflow_run_id": self.mlflow_run_id},
            dir=os.environ.get("WANDB_DIR"),
            settings=wandb.Settings(
                silent=True,
                console="off",
                x_disable_stats=True,
                x_disable_machine_info=True,
                disable_code=True,
                save_code=False,
            ),
        )
        for uri, local_path in _DOWNLOADED:
            run_id, name = _producer(uri)
            self.use_input(name or local_path.stem, uri, "dataset", local_path, run_id)
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

    def use_input(
        self,
        name: str,
        uri: str,
        kind: str,
        local_path: Path | None = None,
        producer_run_id: str | None = None,
    ) -> None:
        """Record an upstream MLflow artifact as an input of this run (online and offline).

        With `local_path` (the downloaded copy) the input holds that file, so it is the very
        artifact version the producer logged; without it, a pointer holding the MLflow URI.
        """
        if self._run is None:
            return
        import wandb

        if local_path is not None and local_path.exists():
            artifact = wandb.Artifact(name, type=kind, metadata={"mlflow_run_id": producer_run_id})
            if local_path.is_dir():
                artifact.add_dir(str(local_path))
            else:
                artifact.add_file(str(local_path))
        else:
            artifact = wandb.Artifact(name, type=kind, metadata={"mlflow_uri": uri})
            with artifact.new_file("mlflow_uri.txt") as pointer:
                pointer.write(uri + "\n")
        if self.mode == "online":
            self._run.use_artifact(artifact)
            return
        # Offline: what use_artifact(draft artifact) does online, minus waiting for the upload.
        self._run._log_artifact(artifact, aliases=[], is_user_created=True, use_after_commit=True)
