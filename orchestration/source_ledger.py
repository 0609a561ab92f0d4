"""What the Prefect server remembers about listings objects, so none is trained on twice.

Two marks per object, each a Prefect variable named after the object's key (its source and
content fingerprint, orchestration/events.py), kept in the server's database:

- `listings-seen-<key>`: the object was announced (an arrival event was sent). The emitters
  (`flows.upload_data`, the watcher) send no event for an object that has it, so uploading the
  same bytes again, or a watcher restarted on the same prefixes, starts nothing.
- `listings-claim-<key>`: a flow run took the object to train on. The retrain flow takes it
  before any work; the server creates a variable name once (a unique index: a second create
  is refused with 409), so of two runs started for the same object, however close together and
  from whichever machine, exactly one trains. The other ends at once, naming the holder.

Announcing sends the event first and marks the object seen after: a crash in between sends the
event again on the next pass (the same event id, which the server drops within its memory of
ids; after that, the claim stops the second run from training). Marking first would lose the
object for good.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from orchestration.events import ListingsObject, Origin, arrival, send

logger = logging.getLogger(__name__)

SEEN_PREFIX = "listings-seen-"
CLAIM_PREFIX = "listings-claim-"
_FILTER_BATCH = 200
_TAGS = ["nyc-price-pipeline"]


@contextmanager
def _client() -> Iterator[Any]:
    from prefect.client.orchestration import get_client

    with get_client(sync_client=True) as client:
        yield client


def _record(subject: ListingsObject, **extra: Any) -> dict[str, Any]:
    return {
        "source": subject.source,
        "fingerprint": subject.fingerprint,
        "at": datetime.now(UTC).isoformat(timespec="seconds"),
        **extra,
    }


def _create(client: Any, name: str, value: dict[str, Any]) -> bool:
    """Create variable `name`; False when it exists already (the server refused it: 409)."""
    from prefect.client.schemas.actions import VariableCreate
    from prefect.exceptions import ObjectAlreadyExists

    try:
        client.create_variable(VariableCreate(name=name, value=value, tags=_TAGS))
    except ObjectAlreadyExists:
        return False
    return True


def existing(client: Any, names: Sequence[str]) -> set[str]:
    """Which of `names` are variables on the server (one filter request per 200 names)."""
    found: set[str] = set()
    for start in range(0, len(names), _FILTER_BATCH):
        batch = list(names[start : start + _FILTER_BATCH])
        response = client.request(
            "POST",
            "/variables/filter",
            json={
                "variables": {"name": {"any_": batch}},
                "limit": len(batch),
                "offset": 0,
                "sort": "NAME_ASC",
            },
        )
        found.update(item["name"] for item in response.json())
    return found


def unseen(subjects: Sequence[ListingsObject]) -> list[ListingsObject]:
    """The objects of `subjects` never announced before, in their order."""
    with _client() as client:
        seen = existing(client, [SEEN_PREFIX + subject.key for subject in subjects])
    return [subject for subject in subjects if SEEN_PREFIX + subject.key not in seen]


def announce(subjects: Sequence[ListingsObject], origin: Origin) -> list[ListingsObject]:
    """Send an arrival event for each object not announced before, then mark it seen; the
    objects announced now."""
    fresh = unseen(subjects)
    announced = []
    with _client() as client:
        for subject in fresh:
            send([arrival(subject, origin)])
            if _create(client, SEEN_PREFIX + subject.key, _record(subject, origin=origin)):
                announced.append(subject)
            else:  # another emitter announced it between our check and now: same event id
                logger.info("%s was announced by another emitter meanwhile", subject.source)
    return announced


@dataclass(frozen=True)
class Claim:
    """Who trains on an object: `mine` when it is the asking flow run (a retry of it included)."""

    holder: str
    mine: bool
    since: str


def claim(subject: ListingsObject, flow_run_id: str) -> Claim:
    """Take the object for `flow_run_id`, or learn which flow run has it."""
    name = CLAIM_PREFIX + subject.key
    with _client() as client:
        if _create(client, name, _record(subject, flow_run_id=flow_run_id)):
            return Claim(flow_run_id, True, datetime.now(UTC).isoformat(timespec="seconds"))
        variable = client.read_variable_by_name(name)
    value = variable.value if variable is not None and isinstance(variable.value, dict) else {}
    holder = str(value.get("flow_run_id", "?"))
    return Claim(holder, holder == flow_run_id, str(value.get("at", "?")))
