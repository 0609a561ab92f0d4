"""The promotion lock: a leased ticket lock kept in the MLflow registry, so every promoter that
shares the tracking store is serialized, whatever else it shares (Prefect API or none).

MLflow offers one atomic primitive on every store (SQLite, PostgreSQL, `mlflow server` over
HTTP): creating a model version, whose number the store assigns as one more than the highest
ever used for that registered model (deleted versions are only marked deleted, so a number is
never reused; concurrent creations collide on the primary key and retry). Each contender
therefore creates a version of the dedicated registered model `<name>.promotion-lock` as its
ticket, beats a heartbeat on it from a background thread (a description update, which also
moves the store's `last_updated_timestamp`), and holds the lock once every lower ticket is
deleted (released) or its heartbeat has stood still for a lease (its holder died: the waiter
deletes it). Nothing outlives a SIGKILLed holder by more than one lease.

Before each registry write the holder calls `fence()`: its ticket must still be live and its
last heartbeat younger than three quarters of a lease, so a holder that was paused past its
lease (and whose ticket a waiter reclaimed) stops instead of writing over the new holder.
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime

import mlflow
from mlflow.entities.model_registry import ModelVersion
from mlflow.exceptions import MlflowException

from steps.common.errors import ConfigurationError, PreconditionError, TransientError
from steps.contract import (
    LOCK_ACQUIRED_TAG,
    LOCK_CREATED_TAG,
    LOCK_FLOW_RUN_TAG,
    LOCK_HOST_TAG,
    LOCK_PID_TAG,
    LOCK_RUN_TAG,
)
from steps.registry.lock_rules import Sighting, Ticket, decide, observe

logger = logging.getLogger(__name__)

LOCK_SUFFIX = ".promotion-lock"
MAX_LEASE_S = 60.0
_POLL_S = 0.5
_FENCE_FRACTION = 0.75


class PromotionLockTimeout(PreconditionError):
    """Another promoter held the lock for all of `promotion.lock_timeout_s`."""


class PromotionLockLost(TransientError):
    """The lease ran out under this holder (it was paused or cut off); a retry recovers."""


def lock_model_name(name: str) -> str:
    return f"{name}{LOCK_SUFFIX}"


def _now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def _heartbeat_of(version: ModelVersion) -> str:
    return f"{version.last_updated_timestamp}|{version.description or ''}"


def describe_holder(version: ModelVersion) -> str:
    """Who holds a ticket, in words, for the message of a promoter that gives up."""
    tags = version.tags
    acquired = tags.get(LOCK_ACQUIRED_TAG)
    since = (
        f"holding it since {acquired}"
        if acquired
        else f"in line for it since {tags.get(LOCK_CREATED_TAG, '?')}"
    )
    return (
        f"pid {tags.get(LOCK_PID_TAG, '?')} on host {tags.get(LOCK_HOST_TAG, '?')} "
        f"(MLflow run {tags.get(LOCK_RUN_TAG, '?')}, "
        f"Prefect flow run {tags.get(LOCK_FLOW_RUN_TAG) or '-'}), {since}"
    )


@dataclass
class PromotionLock:
    """One contender for the promotion lock of a registered model; use `held()`."""

    name: str
    owner_run_id: str
    timeout_s: float
    lease_s: float
    prefect_flow_run_id: str | None = None
    ticket: str | None = None
    waited_s: float = 0.0
    _client: mlflow.MlflowClient = field(default_factory=mlflow.MlflowClient, repr=False)
    _last_beat: float = field(default=0.0, repr=False)
    _beats: int = field(default=0, repr=False)
    _stop: threading.Event = field(default_factory=threading.Event, repr=False)
    _thread: threading.Thread | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        if not 0 < self.lease_s <= MAX_LEASE_S:
            raise ConfigurationError(
                f"promotion.lock_lease_s must be in (0, {MAX_LEASE_S:.0f}] seconds, "
                f"got {self.lease_s}"
            )

    @property
    def model(self) -> str:
        return lock_model_name(self.name)

    # -- the ticket --------------------------------------------------------------------------

    def _ensure_lock_model(self) -> None:
        try:
            self._client.get_registered_model(self.model)
        except MlflowException:
            with contextlib.suppress(MlflowException):  # created meanwhile by another one
                self._client.create_registered_model(
                    self.model,
                    description=(
                        f"Promotion lock of {self.name}, not a model: each version is one "
                        "promoter's ticket (see docs/promotion-lock.md). Deleting a version "
                        "releases that promoter's claim."
                    ),
                )

    def _take_ticket(self) -> str:
        self._ensure_lock_model()
        tags = {
            LOCK_HOST_TAG: socket.gethostname(),
            LOCK_PID_TAG: str(os.getpid()),
            LOCK_RUN_TAG: self.owner_run_id,
            LOCK_FLOW_RUN_TAG: self.prefect_flow_run_id or "",
            LOCK_CREATED_TAG: _now_iso(),
        }
        # `runs:/<run>/...` with that run's id is a source every store accepts, the REST
        # server's source validation included; nothing is ever downloaded from it.
        version = self._client.create_model_version(
            self.model,
            source=f"runs:/{self.owner_run_id}/promotion-lock",
            run_id=self.owner_run_id,
            tags=tags,
            description="heartbeat 0",
            await_creation_for=0,  # a ticket has no files: it is READY at once
        )
        self._last_beat = time.monotonic()
        return str(version.version)

    def _beat(self) -> None:
        assert self.ticket is not None
        self._beats += 1
        self._client.update_model_version(
            self.model, self.ticket, description=f"heartbeat {self._beats}"
        )
        self._last_beat = time.monotonic()

    def _heartbeat_loop(self) -> None:
        interval = self.lease_s / 5
        while not self._stop.wait(interval):
            try:
                self._beat()
            except Exception as error:  # a missed beat is survivable; fence() notices a gap
                logger.warning("promotion lock heartbeat failed: %s", error)

    def _live_tickets(self) -> dict[int, ModelVersion]:
        found = self._client.search_model_versions(f"name = '{self.model}'")
        return {int(v.version): v for v in found}

    # -- acquire, fence, release --------------------------------------------------------------

    def acquire(self) -> None:
        """Wait for the lock up to `timeout_s`; PromotionLockTimeout names the holder."""
        started = time.monotonic()
        self.ticket = self._take_ticket()
        self._thread = threading.Thread(target=self._heartbeat_loop, daemon=True)
        self._thread.start()
        mine = int(self.ticket)
        seen: dict[int, Sighting] = {}
        announced: int | None = None
        while True:
            now = time.monotonic()
            live = self._live_tickets()
            if mine not in live:
                raise PromotionLockLost(
                    f"the promotion lock ticket {mine} of {self.name} was reclaimed while this "
                    f"promoter waited (no heartbeat for {self.lease_s:.0f} s); a retry recovers"
                )
            tickets = [Ticket(n, _heartbeat_of(v)) for n, v in live.items()]
            seen = observe(seen, tickets, now)
            decision = decide(mine, seen, now, self.lease_s)
            for number in decision.reclaim:
                logger.warning(
                    "promotion lock of %s: ticket %s had no heartbeat for %.0f s; reclaiming "
                    "it from %s",
                    self.name,
                    number,
                    self.lease_s,
                    describe_holder(live[number]),
                )
                with contextlib.suppress(MlflowException):  # another waiter reclaimed it first
                    self._client.delete_model_version(self.model, str(number))
            if decision.holds:
                self.waited_s = time.monotonic() - started
                self._client.set_model_version_tag(
                    self.model, self.ticket, LOCK_ACQUIRED_TAG, _now_iso()
                )
                logger.info(
                    "holding the promotion lock of %s (ticket %s) after %.1f s",
                    self.name,
                    mine,
                    self.waited_s,
                )
                return
            if decision.blocker != announced:
                announced = decision.blocker
                assert announced is not None
                logger.info(
                    "waiting for the promotion lock of %s: held by %s",
                    self.name,
                    describe_holder(live[announced]),
                )
            if now - started > self.timeout_s:
                assert decision.blocker is not None
                holder = describe_holder(live[decision.blocker])
                raise PromotionLockTimeout(
                    f"gave up after {self.timeout_s:.0f} s waiting for the promotion lock of "
                    f"{self.name}: it is held by {holder}; nothing was changed. Let that "
                    "promotion finish (a dead holder's lease expires within "
                    f"{self.lease_s:.0f} s) or raise promotion.lock_timeout_s"
                )
            time.sleep(_POLL_S)

    def fence(self) -> None:
        """Raise PromotionLockLost unless this holder's lease is certainly still its own."""
        assert self.ticket is not None, "fence() outside held()"
        # A waiter reclaims only after a whole lease without a change it saw, so a beat younger
        # than this leaves the write that follows a quarter lease to land.
        if time.monotonic() - self._last_beat > self.lease_s * _FENCE_FRACTION:
            raise PromotionLockLost(
                f"the promotion lock heartbeat of {self.name} is older than "
                f"{_FENCE_FRACTION:.0%} of its lease ({self.lease_s:.0f} s); stopping before a "
                "registry write (a retry recovers)"
            )
        try:
            self._client.get_model_version(self.model, self.ticket)
        except MlflowException as error:
            if error.error_code != "RESOURCE_DOES_NOT_EXIST":
                raise  # the store itself failed: classified like any store error
            raise PromotionLockLost(
                f"the promotion lock of {self.name} (ticket {self.ticket}) was reclaimed by "
                "another promoter; stopping before a registry write (a retry recovers)"
            ) from error

    def release(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=self.lease_s)
        if self.ticket is not None:
            with contextlib.suppress(MlflowException):  # reclaimed already: nothing to free
                self._client.delete_model_version(self.model, self.ticket)
            logger.info("released the promotion lock of %s (ticket %s)", self.name, self.ticket)

    @contextlib.contextmanager
    def held(self) -> Iterator[PromotionLock]:
        try:
            self.acquire()
            yield self
        finally:
            self.release()
