"""One promotion (or rollback) = one recoverable transaction on the registry.

Under the promotion lock, a move is written first as an *intent*: the registered-model tag
`promotion.intent`, a JSON record of the aliases before and after and the complete history
entry it will commit. Then the aliases move, then the history entry is written, then the intent
is deleted. A holder killed anywhere in between leaves the intent behind; the next holder, before
doing anything else, finishes it (`recover`): every step is idempotent, so finishing twice is
the same as finishing once. An intent whose target version is gone or not READY is rolled back
instead (the aliases return to where they were, no entry is written).

Invariants after any crash followed by one clean run: the champion alias points at a READY
version; the last history entry of an alias names the version it points at; sequence numbers
are 1..n with no gap or repeat; the challenger alias is never on the champion's version.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any

import mlflow
from mlflow.exceptions import MlflowException

from steps.contract import INTENT_TAG
from steps.registry.failpoints import failpoint
from steps.registry.history import AliasMove, history_key, read_history
from steps.registry.registry_ops import alias_version, point_alias

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Intent:
    """A move decided under the lock and not yet known to be finished."""

    ticket: str
    sequence: int
    alias: str  # the alias whose move the history entry records
    challenger_alias: str
    before: dict[str, str | None]  # alias -> version, as found
    after: dict[str, str | None]  # alias -> version (None: the alias is removed)
    entry: dict[str, Any]  # the history entry, exactly as it will be written
    use_stages: bool = False

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> Intent:
        return cls(**json.loads(text))


def next_sequence(history: list[dict[str, Any]]) -> int:
    """One more than the highest recorded sequence number (1 for an empty history)."""
    return max((int(entry.get("sequence", 0)) for entry in history), default=0) + 1


def plan_move(
    move: AliasMove,
    *,
    ticket: str,
    history: list[dict[str, Any]],
    aliases_now: Mapping[str, str | None],
    challenger_alias: str,
    use_stages: bool,
    time: str | None = None,
) -> Intent:
    """The intent for one alias move: the moved alias's new version, and the challenger alias
    removed when it would otherwise sit on the champion's version."""
    sequence = next_sequence(history)
    after: dict[str, str | None] = {move.alias: move.to_version}
    if move.alias != challenger_alias and aliases_now.get(challenger_alias) == move.to_version:
        after[challenger_alias] = None
    before = {alias: aliases_now.get(alias) for alias in after}
    entry = asdict(move) | {"sequence": sequence, "time": move.time or time or _now()}
    return Intent(
        ticket=ticket,
        sequence=sequence,
        alias=move.alias,
        challenger_alias=challenger_alias,
        before=before,
        after=after,
        entry=entry,
        use_stages=use_stages and move.alias != challenger_alias,
    )


@dataclass(frozen=True)
class Recovery:
    """What the next holder does with a left-over intent."""

    roll_forward: bool
    set_aliases: dict[str, str] = field(default_factory=dict)
    remove_aliases: tuple[str, ...] = ()
    write_entry: bool = False
    reason: str = ""


def recovery_for(
    intent: Intent,
    ready: Callable[[str], bool],
    aliases_now: Mapping[str, str | None],
    recorded_sequences: set[int],
) -> Recovery:
    """Finish the intent when every version it moves an alias to is READY; else undo it.

    Only what differs from the wanted state is touched, so finishing is idempotent."""
    targets = [version for version in intent.after.values() if version is not None]
    forward = all(ready(version) for version in targets)
    if forward:
        wanted = intent.after
        write = intent.sequence not in recorded_sequences
        reason = f"finishing move #{intent.sequence} left by a crashed promoter"
    else:
        wanted = {alias: v for alias, v in intent.before.items() if v is None or ready(v)}
        write = False
        reason = (
            f"undoing move #{intent.sequence} left by a crashed promoter: its target version "
            "is gone or not READY"
        )
    set_aliases = {
        alias: version
        for alias, version in wanted.items()
        if version is not None and aliases_now.get(alias) != version
    }
    remove = tuple(
        alias for alias, version in wanted.items() if version is None and aliases_now.get(alias)
    )
    return Recovery(forward, set_aliases, remove, write, reason)


# -- applying it to the registry ------------------------------------------------------------


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def read_intent(name: str) -> Intent | None:
    """The intent left on the registered model, if any (None too before its first version)."""
    try:
        text = mlflow.MlflowClient().get_registered_model(name).tags.get(INTENT_TAG)
    except MlflowException:
        return None
    return Intent.from_json(text) if text else None


def _is_ready(name: str, version: str) -> bool:
    try:
        return mlflow.MlflowClient().get_model_version(name, version).status == "READY"
    except MlflowException:
        return False


def _apply_aliases(
    name: str, set_aliases: Mapping[str, str], remove: tuple[str, ...], stage_alias: str | None
) -> None:
    """Point and remove aliases; the alias named `stage_alias` also moves the Production stage."""
    client = mlflow.MlflowClient()
    for alias, version in set_aliases.items():
        point_alias(name, alias, version, use_stages=alias == stage_alias)
    for alias in remove:
        client.delete_registered_model_alias(name, alias)


def _stage_alias(intent: Intent) -> str | None:
    return intent.alias if intent.use_stages else None


def _write_entry(name: str, intent: Intent) -> None:
    """The history entry and the `<alias>_since/_until` stamps on both versions."""
    client = mlflow.MlflowClient()
    entry = intent.entry
    client.set_registered_model_tag(name, history_key(intent.sequence), json.dumps(entry))
    when = entry["time"]
    client.set_model_version_tag(name, entry["to_version"], f"{intent.alias}_since", when)
    previous = entry.get("from_version")
    if previous and previous != entry["to_version"] and _is_ready(name, previous):
        client.set_model_version_tag(name, previous, f"{intent.alias}_until", when)


def recover(name: str, fence: Callable[[], None]) -> Recovery | None:
    """Finish or undo the intent a crashed holder left; None when there was none."""
    intent = read_intent(name)
    if intent is None:
        return None
    recorded = {int(entry["sequence"]) for entry in read_history(name) if "sequence" in entry}
    aliases_now = {alias: alias_version(name, alias) for alias in intent.after | intent.before}
    plan = recovery_for(intent, lambda v: _is_ready(name, v), aliases_now, recorded)
    logger.warning("%s: %s (left by promotion lock ticket %s)", name, plan.reason, intent.ticket)
    fence()
    _apply_aliases(name, plan.set_aliases, plan.remove_aliases, _stage_alias(intent))
    if plan.write_entry:
        _write_entry(name, intent)
    mlflow.MlflowClient().delete_registered_model_tag(name, INTENT_TAG)
    return plan


def commit(name: str, intent: Intent, fence: Callable[[], None]) -> dict[str, Any]:
    """Intent -> alias moves -> history entry -> intent deleted, each write fenced; the
    named failpoints let the fault-injection tests stop the process between any two."""
    client = mlflow.MlflowClient()
    fence()
    client.set_registered_model_tag(name, INTENT_TAG, intent.to_json())
    failpoint("promote.intent_written")
    fence()
    set_aliases = {a: v for a, v in intent.after.items() if v is not None}
    remove = tuple(a for a, v in intent.after.items() if v is None)
    first = dict(list(set_aliases.items())[:1])
    _apply_aliases(name, first, (), _stage_alias(intent))
    failpoint("promote.alias_moved")
    fence()
    rest = {a: v for a, v in set_aliases.items() if a not in first}
    _apply_aliases(name, rest, remove, None)
    failpoint("promote.aliases_moved")
    fence()
    _write_entry(name, intent)
    failpoint("promote.history_written")
    fence()
    client.delete_registered_model_tag(name, INTENT_TAG)
    failpoint("promote.committed")
    return intent.entry
