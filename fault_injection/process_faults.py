"""Killing a step's process from outside, as the OOM killer or a lost node would."""

from __future__ import annotations

import contextlib
import threading
import time

import psutil


def kill_when_started(command_fragment: str, timeout_s: float = 300) -> threading.Thread:
    """SIGKILL the first descendant process whose command line contains the fragment.

    Returns the started watcher thread; its `killed` attribute lists the pids it killed.
    """
    killed: list[int] = []

    def watch() -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            for process in psutil.Process().children(recursive=True):
                with contextlib.suppress(psutil.Error):
                    if command_fragment in " ".join(process.cmdline()):
                        process.kill()
                        killed.append(process.pid)
                        return
            time.sleep(0.05)

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.killed = killed  # type: ignore[attr-defined]
    watcher.start()
    return watcher
