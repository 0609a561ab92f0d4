"""A cluster-wide mutex from Prefect's global concurrency limits (one slot).

Promotion takes it so that two pipelines finishing together move the champion one after the
other; the promote step still re-reads the alias after taking it (compare-and-set), which also
covers promoters that do not go through Prefect.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator

from prefect.client.orchestration import get_client
from prefect.client.schemas.actions import GlobalConcurrencyLimitCreate
from prefect.concurrency.sync import concurrency
from prefect.exceptions import ObjectAlreadyExists, ObjectNotFound

logger = logging.getLogger(__name__)


def ensure_mutex(name: str) -> None:
    """Create the one-slot limit if it does not exist (a missing limit would not block)."""
    with get_client(sync_client=True) as client:
        try:
            client.read_global_concurrency_limit_by_name(name)
        except ObjectNotFound:
            with contextlib.suppress(ObjectAlreadyExists):
                client.create_global_concurrency_limit(
                    GlobalConcurrencyLimitCreate(name=name, limit=1)
                )


@contextlib.contextmanager
def mutex(name: str, timeout_s: float) -> Iterator[None]:
    ensure_mutex(name)
    logger.info("waiting for lock %r", name)
    with concurrency(name, occupy=1, timeout_seconds=timeout_s, strict=True):
        logger.info("holding lock %r", name)
        yield
