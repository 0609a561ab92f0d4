"""The pipeline's own Prefect events: what happened to which listings file, and how it is sent.

The emitters (`flows.upload_data`, the `watch_sources` flow, the `score` flow's drift check)
and the deployment triggers that turn an event into a run of `retrain-on-new-data`
(deployments/spec.py) import this one module, so an event's name, its resource's labels and
its payload's fields are written once. docs/events.md lists them for people.

An event names a listings object by its source (`oss://BUCKET/KEY`, an absolute local path, or
a `${oc.env:NAME}` reference as written) and a fingerprint of its content (the OSS ETag, a local
file's size and mtime, or a sha256 digest). A source that carries credentials is refused here:
events are stored by the Prefect server and shown in its UI.

An event's id is derived from its name and the object, so the same object announced twice (an
upload and then the watcher's pass, or a pass repeated after a crash) is one event id; the
Prefect server drops an id it has already seen. That is only the fast path: the guarantee that
an object never trains twice is the claim the retrain flow takes (orchestration/source_ledger.py).
"""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal
from uuid import UUID, uuid5

from steps.common.url_secrets import credentials_in

DATA_ARRIVED = "listings.object.arrived"
DRIFT_DETECTED = "listings.drift.detected"
EVENT_NAMES: tuple[str, ...] = (DATA_ARRIVED, DRIFT_DETECTED)

# The resource an event is about: `listings.object.<key>`, with these labels.
RESOURCE_PREFIX = "listings.object."
SOURCE_LABEL = "listings.source"
# "true" when the data carries prices (an arrival always does; scoring data may not): the
# retrain trigger on drift matches it, since a file without prices cannot be trained on.
HAS_PRICE_LABEL = "listings.has-price"

Origin = Literal["upload", "watcher", "drift"]
ORIGINS: tuple[str, ...] = ("upload", "watcher", "drift")

# The retrain flow's parameters, templated from the triggering event's payload by the
# deployment trigger (Jinja, rendered by the Prefect server when the event arrives).
TRIGGER_PARAMETERS: dict[str, str] = {
    "source": "{{ event.payload.source }}",
    "fingerprint": "{{ event.payload.fingerprint }}",
    "origin": "{{ event.payload.origin }}",
}

_ID_NAMESPACE = UUID("6f1d3c2e-8a4b-5c7d-9e0f-1a2b3c4d5e6f")


class UnpublishableSource(ValueError):
    """A source that may not go into an event (it carries credentials or a signature)."""


@dataclass(frozen=True)
class ListingsObject:
    """One listings file as the emitters found it: where it is and what its content is."""

    source: str
    fingerprint: str
    size: int | None = None
    has_price: bool = True

    def __post_init__(self) -> None:
        found = credentials_in(self.source)
        if found:
            raise UnpublishableSource(
                f"a source carrying {', '.join(found)} cannot go into an event; give it as "
                "${oc.env:NAME} (the reference is published, never its value)"
            )
        if not self.source or not self.fingerprint:
            raise ValueError("a listings object needs both a source and a fingerprint")

    @property
    def key(self) -> str:
        """The object's identity: its source and content, hashed (a Prefect variable name)."""
        digest = hashlib.sha256(f"{self.source}\0{self.fingerprint}".encode())
        return digest.hexdigest()[:40]


@dataclass(frozen=True)
class ListingsEvent:
    """An event about one listings object, before it is sent."""

    name: str
    subject: ListingsObject
    origin: Origin
    details: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.name not in EVENT_NAMES:
            raise ValueError(f"unknown event {self.name!r}; known: {', '.join(EVENT_NAMES)}")
        if self.origin not in ORIGINS:
            raise ValueError(f"unknown origin {self.origin!r}; known: {', '.join(ORIGINS)}")

    @property
    def id(self) -> UUID:
        return uuid5(_ID_NAMESPACE, f"{self.name}\0{self.subject.key}")

    def resource(self) -> dict[str, str]:
        return {
            "prefect.resource.id": RESOURCE_PREFIX + self.subject.key,
            "prefect.resource.name": self.subject.source.rstrip("/").rsplit("/", 1)[-1],
            SOURCE_LABEL: self.subject.source,
            HAS_PRICE_LABEL: "true" if self.subject.has_price else "false",
        }

    def payload(self) -> dict[str, Any]:
        return {
            "source": self.subject.source,
            "fingerprint": self.subject.fingerprint,
            "size": self.subject.size,
            "origin": self.origin,
            **dict(self.details),
        }


def arrival(subject: ListingsObject, origin: Origin) -> ListingsEvent:
    return ListingsEvent(DATA_ARRIVED, subject, origin)


def drift(subject: ListingsObject, details: Mapping[str, Any]) -> ListingsEvent:
    return ListingsEvent(DRIFT_DETECTED, subject, "drift", details)


def send(events: Sequence[ListingsEvent]) -> None:
    """Send `events` to the Prefect API now and wait until they are written to its socket.

    Through the events client itself rather than `emit_event`'s background worker, so a
    short-lived command (flows.upload_data) knows it sent them, and a failure reaches the caller.
    """
    if not events:
        return
    from prefect.events import Event
    from prefect.events.clients import get_events_client
    from prefect.utilities.asyncutils import run_coro_as_sync

    prepared = [
        Event(
            id=event.id,
            event=event.name,
            resource=event.resource(),  # type: ignore[arg-type]
            payload=event.payload(),
        )
        for event in events
    ]

    async def emit_all() -> None:
        async with get_events_client(checkpoint_every=1) as client:
            for event in prepared:
                await client.emit(event)

    try:
        asyncio.get_running_loop()
    except RuntimeError:
        asyncio.run(emit_all())
    else:  # called from async code's thread: run it on Prefect's loop thread
        run_coro_as_sync(emit_all())
