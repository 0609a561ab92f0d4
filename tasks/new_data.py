"""The Prefect tasks of new-data handling: list the watched places, announce what is new, and
claim an object for the flow run that trains on it (orchestration/source_ledger.py says why
each is safe to repeat)."""

from __future__ import annotations

from collections.abc import Sequence

from prefect import get_run_logger, task
from prefect.runtime import flow_run
from prefect.states import State

from orchestration.events import ListingsObject, Origin
from orchestration.source_inventory import list_source
from orchestration.source_ledger import Claim, announce, claim, unseen

# Network calls to the Prefect server and to OSS: a blip is retried; a setting to fix (missing
# credentials, a folder that is not there) is not, since trying again cannot help.
_RETRIES = 3
_RETRY_DELAYS = [2.0, 5.0, 10.0]
_NOT_RETRIED = (ValueError, FileNotFoundError)


def _worth_retrying(_task: object, _task_run: object, state: State) -> bool:
    try:
        state.result()
    except _NOT_RETRIED:
        return False
    except Exception:
        return True
    return True


@task(
    name="list-watched-source",
    retries=_RETRIES,
    retry_delay_seconds=_RETRY_DELAYS,
    retry_condition_fn=_worth_retrying,
)
def list_watched_source(
    source: str, patterns: Sequence[str], settle_s: float, timeout_s: float
) -> list[ListingsObject]:
    found = list_source(source, patterns, settle_s, timeout_s)
    get_run_logger().info("%s holds %d listings file(s)", source, len(found))
    return found


@task(
    name="announce-new-objects",
    retries=_RETRIES,
    retry_delay_seconds=_RETRY_DELAYS,
    retry_condition_fn=_worth_retrying,
)
def announce_new_objects(
    objects: Sequence[ListingsObject], origin: Origin, limit: int
) -> tuple[list[ListingsObject], int]:
    """Announce up to `limit` objects never announced before; (announced, still waiting)."""
    fresh = unseen(objects)
    announced = announce(fresh[:limit], origin)
    for subject in announced:
        get_run_logger().info("new: %s (%s)", subject.source, subject.fingerprint)
    return announced, max(0, len(fresh) - limit)


@task(
    name="claim-object",
    retries=_RETRIES,
    retry_delay_seconds=_RETRY_DELAYS,
    retry_condition_fn=_worth_retrying,
)
def claim_object(subject: ListingsObject) -> Claim:
    """This flow run's claim on `subject`, or the holder's (a retry of this run keeps it)."""
    return claim(subject, str(flow_run.get_id()))
