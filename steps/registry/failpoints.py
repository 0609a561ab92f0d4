"""Named points in the promotion's critical section where a test can stop the process.

`PROMOTION_FAILPOINT=<point>:<action>` (unset in production: one environment lookup per point)
with action `kill` (the step SIGKILLs itself there) or `pause=<marker file>` (the step writes
its pid to the marker file and sleeps 3 s, so a test can SIGKILL exactly the processes it
chooses, the whole tree or only the flow's, while the step is at that point). The points are
listed in POINTS; docs/promotion-lock.md says where each one is.
"""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

ENV = "PROMOTION_FAILPOINT"
PAUSE_S = 3.0
POINTS = (
    "promote.locked",
    "promote.registered",
    "promote.intent_written",
    "promote.alias_moved",
    "promote.aliases_moved",
    "promote.history_written",
    "promote.committed",
)


def failpoint(point: str) -> None:
    """Stop here if the environment names this point; do nothing otherwise."""
    wanted = os.environ.get(ENV)
    if not wanted:
        return
    name, _, action = wanted.partition(":")
    if name != point:
        return
    if action == "kill":
        os.kill(os.getpid(), signal.SIGKILL)
    elif action.startswith("pause="):
        Path(action.removeprefix("pause=")).write_text(str(os.getpid()))
        time.sleep(PAUSE_S)
