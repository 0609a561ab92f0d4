"""Publishing a step's outputs so the orchestrator can find them by name.

Each output is an artifact (or registered model) of the step's own run, announced by a run tag
`output.<name>` (steps/contract.py) holding its URI. The orchestrator reads those tags only from
runs that FINISHED, so an output is published exactly when the run that produced it succeeds.
"""

from __future__ import annotations

from pathlib import Path

import mlflow

from steps.contract import DIGEST_TAG_PREFIX, NOTE_TAG_PREFIX, OUTPUT_TAG_PREFIX, content_digest


def publish_output(name: str, uri: str) -> str:
    """Announce an output URI under `name` on the active run."""
    mlflow.set_tag(f"{OUTPUT_TAG_PREFIX}{name}", uri)
    return uri


def publish_file(name: str, local_path: Path) -> str:
    """Log a file as an artifact of the active run and announce it as output `name`."""
    run = mlflow.active_run()
    if run is None:
        raise RuntimeError("publish_file needs an active MLflow run")
    mlflow.log_artifact(str(local_path))
    # The content digest lets a downstream step's cache key ignore a re-run that changed nothing.
    mlflow.set_tag(f"{DIGEST_TAG_PREFIX}{name}", content_digest(local_path))
    return publish_output(name, f"runs:/{run.info.run_id}/{local_path.name}")


def publish_note(name: str, text: str) -> None:
    """A one-line result for people (e.g. the promotion verdict), shown in the pipeline summary."""
    mlflow.set_tag(f"{NOTE_TAG_PREFIX}{name}", text)
