"""What every `python -m flows.…` command shares around its flow: signals, the temporary
Prefect API's lifeline, and failure output a person can read.

An expected failure (bad data, a bad source, a bad configuration, a step that failed for a
reason it reported, a reused step that never finished) is printed once, as the command's last
line on stderr, with its cause and fix and no traceback; Prefect's own console records of it
(the flow's "Encountered exception" traceback, each "Finished in state Failed(...)" repeating
the message) are shortened or left out of the console. They still reach Prefect's API logs in
full, and an unexpected error keeps its traceback everywhere.
"""

from __future__ import annotations

import contextlib
import copy
import logging
import signal
import sys
import threading
from collections.abc import Callable, Iterator
from types import FrameType

from prefect.exceptions import TerminationSignal

from flows.config import ConfigError
from flows.step_runner import PipelineError
from tasks.step_failure import StepFailed

logger = logging.getLogger(__name__)

EXIT_FAILED = 1  # the command ran and failed for a reason it printed
EXIT_CONFIG = 2  # the configuration was refused before any work
EXIT_INTERRUPTED = 130  # Ctrl-C (128 + SIGINT)
EXIT_TERMINATED = 143  # SIGTERM (128 + SIGTERM)

# Failures whose message already says what went wrong and what to do. A command adds its own
# (a sweep's SweepFailed) through `run_command(expected=...)`.
EXPECTED_FAILURES: tuple[type[BaseException], ...] = (StepFailed, PipelineError, ConfigError)
_ENGINE_LOGGERS = ("prefect.flow_runs", "prefect.task_runs")


def _terminate(signum: int, _frame: FrameType | None) -> None:
    # Prefect's own exception for it: the task and flow engines record a crash, the step's
    # process tree is stopped and its run marked KILLED, and the parent run is closed.
    raise TerminationSignal(signum)


@contextlib.contextmanager
def handle_termination() -> Iterator[None]:
    """SIGTERM unwinds the flow like Ctrl-C does, so cleanup runs (a plain SIGTERM would end the
    process on the spot and leave its runs RUNNING). Only the main thread may set handlers: a
    command called from another thread keeps the process's own."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGTERM, _terminate)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def tie_temporary_api_to_this_process() -> None:
    """Start Prefect's temporary API server now, when no PREFECT_API_URL is set, and give it a
    lifeline watchdog (processes/lifeline.py) so that it stops when this process dies, SIGKILL
    included. Prefect's own atexit hook stops it only when the process exits normally."""
    from prefect.settings import PREFECT_API_URL, PREFECT_SERVER_EPHEMERAL_ENABLED

    if PREFECT_API_URL.value() or not PREFECT_SERVER_EPHEMERAL_ENABLED.value():
        return
    from prefect.server.api.server import SubprocessASGIServer

    from processes.lifeline import watch

    server = SubprocessASGIServer()  # the instance Prefect's clients use for the temporary API
    server.start()
    if server.server_process is not None:
        watch(server.server_process.pid)


class _QuietExpectedFailures(logging.Filter):
    """A console handler's filter: leaves out Prefect's tracebacks of expected failures and
    shortens its "Finished in state Failed(<the whole message>)" lines, so the cause is printed
    once, at the end. The record itself is not changed (other handlers, such as Prefect's API
    log handler, see it whole)."""

    def __init__(self, handler: logging.Handler, expected: tuple[type[BaseException], ...]):
        super().__init__()
        self.handler = handler
        self.expected = expected
        self.names = tuple(f"{kind.__name__}: " for kind in expected)

    def filter(self, record: logging.LogRecord) -> bool:
        if getattr(record, "_quieted", False) or not record.name.startswith(_ENGINE_LOGGERS):
            return True
        error = record.exc_info[1] if record.exc_info else None
        if error is not None:
            return not isinstance(error, self.expected)
        message = record.getMessage()
        if "Finished in state" in message and any(name in message for name in self.names):
            short = copy.copy(record)
            short.msg, short.args = message.split("(", 1)[0].rstrip(), None
            short._quieted = True
            self.handler.handle(short)
            return False
        return True


def quiet_expected_failures(expected: tuple[type[BaseException], ...]) -> None:
    """Install the filter on the console handlers that Prefect's run loggers reach."""
    from prefect.logging.handlers import PrefectConsoleHandler

    for name in ("", "prefect"):
        for handler in logging.getLogger(name).handlers:
            if not isinstance(handler, PrefectConsoleHandler):
                continue
            for installed in handler.filters:  # a second command in this process
                if isinstance(installed, _QuietExpectedFailures):
                    handler.removeFilter(installed)
            handler.addFilter(_QuietExpectedFailures(handler, expected))


def run_command(
    label: str,
    body: Callable[[], int],
    expected: tuple[type[BaseException], ...] = (),
) -> int:
    """Run a command's flow with the shared handling; its exit code.

    `label` starts the last line of an expected failure ("pipeline failed: <cause and fix>").
    """
    known = EXPECTED_FAILURES + expected
    quiet_expected_failures(known)
    try:
        with handle_termination():
            tie_temporary_api_to_this_process()
            return body()
    except ConfigError as error:
        sys.stderr.write(f"error: {error}\n")
        return EXIT_CONFIG
    except known as error:
        logger.debug("%s failed", label, exc_info=True)
        sys.stderr.write(f"{label} failed: {error}\n")
        return EXIT_FAILED
    except TerminationSignal:
        sys.stderr.write(f"{label} stopped by SIGTERM; its runs were marked as ended\n")
        return EXIT_TERMINATED
    except KeyboardInterrupt:
        sys.stderr.write(f"{label} interrupted; its runs were marked as ended\n")
        return EXIT_INTERRUPTED
