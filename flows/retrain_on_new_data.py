"""Retrain on one new listings file: the flow the `retrain-on-new-data` deployment runs.

Its runs are started by the Prefect server, from the deployment's triggers
(conf/deployments.yaml), when an event of orchestration/events.py arrives: a file uploaded by
`flows.upload_data` or found by the `watch_sources` flow, or scoring data that drifted. The
trigger templates the event's `source` and `fingerprint` into the run's parameters.

The run first claims the object (its source and fingerprint) on the Prefect server: if another
flow run holds it, this one ends at once, Completed, naming the holder, and trains nothing. A
retry of the holder (the UI's Retry) keeps the claim. Then it runs the whole pipeline on that
source, exactly as `train_pipeline` does (the champion moves only if the new model wins), so a
file that fails `data_check` fails this run at `data_check`, with the reason on its page.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime

from prefect import flow, get_run_logger
from prefect.runtime import flow_run
from prefect.states import Completed, State

from flows.run_form import run_overrides
from flows.train_pipeline import run_pipeline
from orchestration.events import ListingsObject
from orchestration.runtime import compose
from reporting.summary import PipelineSummary
from tasks.new_data import claim_object

logger = logging.getLogger(__name__)


def _flow_run_name() -> str:
    source = str(flow_run.parameters.get("source") or "source")
    label = source.rstrip("/").rsplit("/", 1)[-1] or "source"
    return f"retrain-{label}-{datetime.now(UTC):%Y%m%d-%H%M}"


@flow(name="retrain_on_new_data", flow_run_name=_flow_run_name)
def retrain_on_new_data(
    source: str,
    fingerprint: str,
    origin: str = "",
    overrides: list[str] | None = None,
) -> PipelineSummary | State:
    """Train on `source` once per content (`fingerprint`), unless another run has it.

    Args:
        source: oss://BUCKET/KEY, an absolute path or a ${oc.env:NAME} reference: the file the
            event named (the trigger fills it in).
        fingerprint: Its content's ETag, size and mtime, or digest, from the event.
        origin: What announced it: upload, watcher or drift (for the record).
        overrides: Hydra overrides applied after data.source (the deployment's).
    """
    log = get_run_logger()
    applied = run_overrides({"data_source": source}, overrides)
    compose(applied)  # a bad source or override fails here, before the object is claimed
    subject = ListingsObject(source=source, fingerprint=fingerprint)
    held = claim_object(subject)
    if not held.mine:
        message = (
            f"skipped: {source} ({fingerprint}) is handled by flow run {held.holder} "
            f"(claimed {held.since}); the same content is never trained twice"
        )
        log.info("%s", message)
        return Completed(message=message)
    log.info("claimed %s (%s, from %s): training", source, fingerprint, origin or "?")
    return run_pipeline(applied)
