"""MLflow's process-wide tracking and registry URIs, set for a while and put back exactly.

`mlflow.set_tracking_uri` / `set_registry_uri` also export MLFLOW_TRACKING_URI /
MLFLOW_REGISTRY_URI for subprocesses, and `get_registry_uri()` answers the tracking URI of the
moment when none is set: saving what the getters say and setting it back pins the registry to
that store for every later test in the process, so later tests register their models elsewhere.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import mlflow

_VARIABLES = ("MLFLOW_TRACKING_URI", "MLFLOW_REGISTRY_URI")


def snapshot() -> dict[str, Any]:
    """The URIs as set (None where unset), in MLflow's globals and in the environment."""
    from mlflow.tracking._model_registry import utils as registry_utils
    from mlflow.tracking._tracking_service import utils as tracking_utils

    return {
        "tracking": tracking_utils._tracking_uri,
        "registry": registry_utils._registry_uri,
        **{name: os.environ.get(name) for name in _VARIABLES},
    }


def restore(saved: dict[str, Any]) -> None:
    from mlflow.tracking._model_registry import utils as registry_utils
    from mlflow.tracking._tracking_service import utils as tracking_utils

    tracking_utils._tracking_uri = saved["tracking"]
    registry_utils._registry_uri = saved["registry"]
    for name in _VARIABLES:
        if saved[name] is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = saved[name]


@contextmanager
def pointed_at(url: str) -> Iterator[None]:
    """This process's MLflow client talks to `url` (tracking and registry) inside the block."""
    saved = snapshot()
    mlflow.set_tracking_uri(url)
    mlflow.set_registry_uri(url)
    try:
        yield
    finally:
        restore(saved)
