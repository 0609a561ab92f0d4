"""The record of every alias move, kept in the registry itself.

Each move is one registered-model tag `history.<sequence>` holding a JSON entry (action, alias,
from and to version, scores, who moved it and when), so "what was in production last week" is
answered from the registry alone, with no extra store to keep in sync. Entries are written only
by a holder of the promotion lock, as the last step of a transaction (see transaction.py), so
sequence numbers neither collide nor leave gaps.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import mlflow

from steps.contract import HISTORY_TAG_PREFIX


@dataclass(frozen=True)
class AliasMove:
    action: str  # promote | rollback
    alias: str
    from_version: str | None
    to_version: str
    metric: str | None = None
    candidate_score: float | None = None
    champion_score: float | None = None
    reason: str = ""
    prefect_flow_run_id: str | None = None
    mlflow_run_id: str | None = None
    time: str = ""


def read_history(name: str) -> list[dict[str, Any]]:
    """Every recorded move of the registered model, oldest first."""
    model = mlflow.MlflowClient().get_registered_model(name)
    entries = [
        (key, json.loads(value))
        for key, value in model.tags.items()
        if key.startswith(HISTORY_TAG_PREFIX)
    ]
    return [entry for _, entry in sorted(entries)]


def history_key(sequence: int) -> str:
    """The tag holding entry `sequence` (zero-padded, so tags sort in order)."""
    return f"{HISTORY_TAG_PREFIX}{sequence:06d}"


def champion_lineage(history: list[dict[str, Any]], alias: str) -> list[str]:
    """The versions that held the alias, as a stack: a rollback pops back to its target."""
    stack: list[str] = []
    for entry in history:
        if entry.get("alias") != alias:
            continue
        target = str(entry["to_version"])
        if entry.get("action") == "rollback" and target in stack:
            stack = stack[: stack.index(target) + 1]
        else:
            stack.append(target)
    return stack


def previous_champion(history: list[dict[str, Any]], alias: str, current: str) -> str | None:
    """The version that held the alias before the current one, per the recorded history."""
    stack = champion_lineage(history, alias)
    if not stack or stack[-1] != current or len(stack) < 2:
        return None
    return stack[-2]
