"""Lifelines: a helper process that must not outlive the process that started it.

A lifeline is a pipe whose write end only the owner holds (pipes are non-inheritable, so no
other child gets a copy). The owner never writes to it; when the owner exits, however it exits
(SIGKILL included), the kernel closes that end and the reader sees end-of-file. The warm-fork
server watches its lifeline in its own select loop (warm_backend/server.py). A process
that cannot be changed, such as the temporary Prefect API server Prefect starts for a flow with
no PREFECT_API_URL, gets a watchdog instead:

    python -m processes.lifeline --lifeline-fd FD --pid PID --started CREATE_TIME

which blocks on the pipe and, at end-of-file, terminates process PID and its descendants,
provided PID is still the process started at CREATE_TIME (a pid can be reused).
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

import psutil

logger = logging.getLogger(__name__)

PROJECT_ROOT = Path(__file__).resolve().parents[1]
_TERMINATE_GRACE_S = 5.0
# Watchdogs of this process, kept so that their lifelines stay open until it exits.
_watchdogs: list[tuple[Lifeline, subprocess.Popen[bytes]]] = []


class Lifeline:
    """The owner's end of a lifeline pipe, and the end to hand to the process that watches it."""

    def __init__(self) -> None:
        self.child_end, self._owner_end = os.pipe()  # both non-inheritable

    def handed_over(self) -> None:
        """Close the owner's copy of the child's end, once the watcher has been started with it
        (otherwise the owner itself would keep the pipe from ever reaching end-of-file)."""
        with contextlib.suppress(OSError):
            os.close(self.child_end)

    def cut(self) -> None:
        """Let the watcher go now, as if the owner had exited."""
        with contextlib.suppress(OSError):
            os.close(self._owner_end)


def owner_gone(fd: int) -> bool:
    """Read what is readable on a lifeline's child end: True at end-of-file (owner gone)."""
    try:
        return not os.read(fd, 4096)
    except BlockingIOError:
        return False


def watch(pid: int) -> subprocess.Popen[bytes]:
    """Start a watchdog that terminates process `pid` (and its descendants) when this process
    exits, however it exits."""
    started = psutil.Process(pid).create_time()
    lifeline = Lifeline()
    try:
        watchdog = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "processes.lifeline",
                "--lifeline-fd",
                str(lifeline.child_end),
                "--pid",
                str(pid),
                "--started",
                repr(started),
            ],
            cwd=str(PROJECT_ROOT),
            stdin=subprocess.DEVNULL,
            pass_fds=(lifeline.child_end,),
            start_new_session=True,  # Ctrl-C reaches the owner, which stops the process itself
        )
    finally:
        lifeline.handed_over()
    _watchdogs.append((lifeline, watchdog))
    logger.debug("watchdog %d ties process %d to process %d", watchdog.pid, pid, os.getpid())
    return watchdog


def same_process(pid: int, started: float) -> psutil.Process | None:
    """Process `pid` if it is still the one created at `started` (not a reused pid)."""
    try:
        process = psutil.Process(pid)
        if abs(process.create_time() - started) < 1.0 and process.is_running():
            return process
    except psutil.Error:
        pass
    return None


def terminate_family(process: psutil.Process, grace_s: float = _TERMINATE_GRACE_S) -> None:
    """SIGTERM a process and its descendants, then SIGKILL what is left after `grace_s`."""
    try:
        family = [*process.children(recursive=True), process]
    except psutil.NoSuchProcess:
        return
    for member in family:
        with contextlib.suppress(psutil.NoSuchProcess):
            member.terminate()
    _, alive = psutil.wait_procs(family, timeout=grace_s)
    for member in alive:
        with contextlib.suppress(psutil.NoSuchProcess):
            member.kill()


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m processes.lifeline", description=__doc__)
    parser.add_argument("--lifeline-fd", type=int, required=True, help="EOF here: owner gone")
    parser.add_argument("--pid", type=int, required=True, help="the process to stop then")
    parser.add_argument("--started", type=float, required=True, help="its psutil create_time")
    args = parser.parse_args(argv)
    import signal

    signal.signal(signal.SIGINT, signal.SIG_IGN)  # only the lifeline decides
    while not owner_gone(args.lifeline_fd):
        pass  # the owner never writes: read() blocks until it is gone
    process = same_process(args.pid, args.started)
    if process is not None:
        terminate_family(process)
    return 0


if __name__ == "__main__":
    sys.exit(main())
