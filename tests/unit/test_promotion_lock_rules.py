"""The promotion lock's and the promotion transaction's decisions, as pure functions."""

from __future__ import annotations

import json

from steps.registry.history import AliasMove
from steps.registry.lock_rules import Sighting, Ticket, decide, expired, observe
from steps.registry.transaction import Intent, next_sequence, plan_move, recovery_for

LEASE = 10.0


def test_the_lowest_ticket_holds_and_the_others_wait_for_it() -> None:
    seen = observe({}, [Ticket(3, "a"), Ticket(5, "b"), Ticket(9, "c")], now=0.0)
    assert decide(3, seen, 1.0, LEASE).holds
    waiting = decide(9, seen, 1.0, LEASE)
    assert not waiting.holds and waiting.blocker == 3 and waiting.reclaim == ()


def test_a_heartbeat_that_stands_still_for_a_lease_is_reclaimed() -> None:
    seen = observe({}, [Ticket(3, "beat 1"), Ticket(5, "beat 1")], now=0.0)
    seen = observe(seen, [Ticket(3, "beat 1"), Ticket(5, "beat 2")], now=LEASE)
    decision = decide(5, seen, LEASE, LEASE)
    assert decision.holds and decision.reclaim == (3,)


def test_a_beating_holder_is_never_reclaimed_however_long_it_holds() -> None:
    seen: dict[int, Sighting] = {}
    for beat in range(100):
        now = beat * LEASE / 2
        seen = observe(seen, [Ticket(1, f"beat {beat}"), Ticket(2, "x")], now)
        assert not decide(2, seen, now, LEASE).holds


def test_expiry_is_timed_from_the_first_sighting_not_from_the_stores_clock() -> None:
    # A waiter that arrives late cannot reclaim at once a ticket it has only just seen, even if
    # its timestamp (written by another machine's clock) looks old.
    seen = observe({}, [Ticket(1, "1999-01-01|beat 7"), Ticket(2, "now|beat 0")], now=500.0)
    assert not decide(2, seen, 500.0, LEASE).holds
    assert not expired(seen[1], 500.0 + LEASE - 0.1, LEASE)
    assert expired(seen[1], 500.0 + LEASE, LEASE)


def test_a_released_ticket_is_forgotten_and_the_next_one_holds() -> None:
    seen = observe({}, [Ticket(1, "a"), Ticket(2, "b"), Ticket(4, "c")], now=0.0)
    seen = observe(seen, [Ticket(2, "b2"), Ticket(4, "c2")], now=1.0)
    assert set(seen) == {2, 4}
    assert decide(2, seen, 1.0, LEASE).holds
    assert decide(4, seen, 1.0, LEASE).blocker == 2


def test_an_expired_ticket_behind_a_live_one_is_reclaimed_but_the_live_one_waited_for() -> None:
    seen = observe({}, [Ticket(1, "dead"), Ticket(2, "alive"), Ticket(3, "me")], now=0.0)
    seen = observe(seen, [Ticket(1, "dead"), Ticket(2, "alive 2"), Ticket(3, "me 2")], now=LEASE)
    decision = decide(3, seen, LEASE, LEASE)
    assert decision == decision.__class__(False, 2, (1,))


def _move(alias: str = "champion", from_version: str | None = "1", to: str = "2") -> AliasMove:
    return AliasMove("promote", alias, from_version, to, reason="beats it", time="t")


def test_the_next_sequence_follows_the_highest_recorded_one() -> None:
    assert next_sequence([]) == 1
    assert next_sequence([{"sequence": 1}, {"sequence": 2}]) == 3


def test_a_promotion_removes_the_challenger_alias_from_the_new_champion() -> None:
    intent = plan_move(
        _move(),
        ticket="7",
        history=[{"sequence": 1}],
        aliases_now={"champion": "1", "challenger": "2"},
        challenger_alias="challenger",
        use_stages=True,
    )
    assert intent.sequence == 2
    assert intent.after == {"champion": "2", "challenger": None}
    assert intent.before == {"champion": "1", "challenger": "2"}
    assert intent.entry["sequence"] == 2 and intent.entry["to_version"] == "2"
    assert intent.use_stages
    assert Intent.from_json(intent.to_json()) == intent
    assert json.loads(intent.to_json())["ticket"] == "7"


def test_a_challenger_move_leaves_the_champion_alone_and_moves_no_stage() -> None:
    intent = plan_move(
        _move("challenger", None, "3"),
        ticket="1",
        history=[],
        aliases_now={"champion": "2", "challenger": None},
        challenger_alias="challenger",
        use_stages=True,
    )
    assert intent.after == {"challenger": "3"} and not intent.use_stages


def _intent() -> Intent:
    return plan_move(
        _move(),
        ticket="7",
        history=[{"sequence": 1}],
        aliases_now={"champion": "1", "challenger": "2"},
        challenger_alias="challenger",
        use_stages=False,
    )


def test_an_intent_left_before_any_alias_moved_is_finished_whole() -> None:
    recovery = recovery_for(_intent(), lambda v: True, {"champion": "1", "challenger": "2"}, {1})
    assert recovery.roll_forward
    assert recovery.set_aliases == {"champion": "2"}
    assert recovery.remove_aliases == ("challenger",)
    assert recovery.write_entry


def test_an_intent_left_after_the_aliases_moved_only_writes_the_entry() -> None:
    recovery = recovery_for(_intent(), lambda v: True, {"champion": "2", "challenger": None}, {1})
    assert recovery.set_aliases == {} and recovery.remove_aliases == ()
    assert recovery.write_entry


def test_an_intent_left_after_the_entry_was_written_writes_nothing_twice() -> None:
    recovery = recovery_for(
        _intent(), lambda v: True, {"champion": "2", "challenger": None}, {1, 2}
    )
    assert recovery.roll_forward and not recovery.write_entry
    assert recovery.set_aliases == {} and recovery.remove_aliases == ()


def test_an_intent_whose_target_is_not_ready_is_undone() -> None:
    recovery = recovery_for(
        _intent(), lambda v: v != "2", {"champion": "2", "challenger": None}, {1}
    )
    assert not recovery.roll_forward
    assert recovery.set_aliases == {"champion": "1"}  # back where it was
    assert not recovery.write_entry
    assert "undoing" in recovery.reason
