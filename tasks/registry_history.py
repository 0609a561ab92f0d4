"""Reading the alias history that the promotion entry points record in the registry."""

from __future__ import annotations

import json
from typing import Any

import mlflow
from mlflow.exceptions import MlflowException
from prefect import task

from steps.contract import HISTORY_TAG_PREFIX


@task(name="read-alias-history", persist_result=False)
def read_alias_history(name: str) -> list[dict[str, Any]]:
    """Every recorded alias move of a registered model, oldest first (empty if it has none)."""
    try:
        model = mlflow.MlflowClient().get_registered_model(name)
    except MlflowException:
        return []
    entries = sorted(
        (key, value) for key, value in model.tags.items() if key.startswith(HISTORY_TAG_PREFIX)
    )
    return [json.loads(value) for _, value in entries]
