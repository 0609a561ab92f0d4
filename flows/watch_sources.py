"""Find new listings files in the watched places and announce each one, once.

    python -m flows.watch_sources "watch.sources=[oss://my-bucket/nyc/,/data/incoming]"

The `watch-sources` deployment runs it on a schedule (every 5 minutes: conf/deployments.yaml);
the places are `watch.sources` in conf/. Each pass lists every place, and sends one
`listings.object.arrived` event (orchestration/events.py) per file whose source and fingerprint
(OSS ETag, or a local file's size and mtime) the Prefect server has not seen; each event starts
a run of `retrain-on-new-data`. What it has seen is kept on the Prefect server
(orchestration/source_ledger.py), so a restarted watcher, or one on another machine, announces
nothing twice. Files written by `flows.upload_data` were announced at upload already.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from prefect import flow, get_run_logger
from prefect.artifacts import create_table_artifact

from connectors.oss import OssSettingError
from flows.cli import Command, run_command
from orchestration.config import PipelineConfig
from orchestration.events import ListingsObject
from orchestration.runtime import compose
from tasks.new_data import announce_new_objects, list_watched_source


@dataclass(frozen=True)
class WatchReport:
    """One pass: how many files each place holds, which were announced, how many wait."""

    listed: dict[str, int]
    announced: list[ListingsObject]
    waiting: int

    def render(self) -> str:
        lines = [f"{source}: {count} listings file(s)" for source, count in self.listed.items()]
        lines += [f"announced {item.source} ({item.fingerprint})" for item in self.announced]
        if self.waiting:
            lines.append(f"{self.waiting} more new file(s) wait for the next pass")
        if not self.announced:
            lines.append("nothing new")
        return "\n".join(lines) + "\n"


def _flow_run_name() -> str:
    return f"watch-sources-{datetime.now(UTC):%Y%m%d-%H%M}"


@flow(name="watch_sources", flow_run_name=_flow_run_name)
def watch_sources(overrides: list[str] | None = None) -> WatchReport:
    """List `watch.sources` and announce every listings file not announced before.

    Args:
        overrides: Hydra overrides, e.g. watch.sources=[oss://BUCKET/PREFIX/].
    """
    cfg = compose(overrides or [])
    watch = cfg.watch
    log = get_run_logger()
    if not watch.sources:
        log.warning("watch.sources is empty: nothing to watch (set it in conf/ or as an override)")
    listed: dict[str, int] = {}
    found: list[ListingsObject] = []
    for source in watch.sources:
        objects = list_watched_source(source, watch.patterns, watch.settle_s, watch.timeout_s)
        listed[source] = len(objects)
        found.extend(objects)
    announced, waiting = announce_new_objects(found, "watcher", watch.max_events_per_pass)
    report = WatchReport(listed, announced, waiting)
    if announced:
        create_table_artifact(
            key="watch-announced",
            table=[
                {"source": item.source, "fingerprint": item.fingerprint, "size": item.size}
                for item in announced
            ],
            description=f"New listings files announced by this pass ({waiting} still waiting).",
        )
    log.info("watch pass: %d listed, %d announced", len(found), len(announced))
    return report


def main(argv: Sequence[str] | None = None) -> int:
    overrides = list(sys.argv[1:] if argv is None else argv)

    def body(cfg: PipelineConfig) -> int:
        sys.stdout.write(watch_sources(overrides=overrides).render())
        return 0

    # A watched place that cannot be listed: its message names the variable or path to fix.
    expected = (OssSettingError, FileNotFoundError)
    return run_command(Command("watch", body, doc=__doc__ or "", expected=expected), overrides)


if __name__ == "__main__":
    sys.exit(main())
