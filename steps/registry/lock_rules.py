"""The promotion lock's decisions as pure functions: who holds it, whose lease has expired.

The lock is a ticket lock (see promotion_lock.py). Each contender holds a ticket, a number the
tracking store assigned uniquely and never hands out again. A contender holds the lock when
every lower ticket still alive is gone; a lower ticket whose heartbeat has not changed for a
whole lease, as timed by the *observer's own* monotonic clock, belongs to a dead holder and may
be reclaimed. Timing by observation rather than by comparing timestamps keeps the rule right
when the timestamps were written by machines whose clocks disagree (two promoters writing
straight to one PostgreSQL or SQLite store each stamp rows with their own clock).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass


@dataclass(frozen=True)
class Ticket:
    """One contender's entry: its number and the heartbeat it last showed."""

    number: int
    heartbeat: str  # changes on every beat (the store's update time and a counter)


@dataclass(frozen=True)
class Sighting:
    """When an observer first saw a ticket show its current heartbeat (monotonic seconds)."""

    heartbeat: str
    since: float


def observe(
    seen: Mapping[int, Sighting], tickets: Iterable[Ticket], now: float
) -> dict[int, Sighting]:
    """The sightings after one look at the live tickets: a changed heartbeat restarts the
    clock; a ticket no longer live is forgotten."""
    updated = {}
    for ticket in tickets:
        previous = seen.get(ticket.number)
        if previous is not None and previous.heartbeat == ticket.heartbeat:
            updated[ticket.number] = previous
        else:
            updated[ticket.number] = Sighting(ticket.heartbeat, now)
    return updated


def expired(sighting: Sighting, now: float, lease_s: float) -> bool:
    """A heartbeat unchanged for a whole lease: its holder is dead (or cut off) and fenced."""
    return now - sighting.since >= lease_s


@dataclass(frozen=True)
class Decision:
    """What a contender does after one look: hold the lock, or wait for `blocker`, deleting the
    tickets in `reclaim` (lower ones whose lease expired) first."""

    holds: bool
    blocker: int | None
    reclaim: tuple[int, ...]


def decide(mine: int, seen: Mapping[int, Sighting], now: float, lease_s: float) -> Decision:
    """Hold when no lower ticket is alive; the lowest live lower ticket is the one waited for."""
    lower = sorted(number for number in seen if number < mine)
    reclaim = tuple(number for number in lower if expired(seen[number], now, lease_s))
    alive = [number for number in lower if number not in reclaim]
    if alive:
        return Decision(False, alive[0], reclaim)
    return Decision(True, None, reclaim)
