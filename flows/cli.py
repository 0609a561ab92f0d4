"""The one shell every `python -m flows.…` command runs in: `--help`, start-up (`.env`,
telemetry, the configuration composed and checked once, before any work), signals, the temporary
Prefect API's lifeline, and the mapping of failures to exit codes and output a person can read.

A command is a `Command`: what it composes from its arguments at start-up (`start`; a refused
configuration exits 2 with `error: <cause and fix>`) and the body that runs its flow with that.

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
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from types import FrameType
from typing import Any

from prefect.exceptions import TerminationSignal

from orchestration.config import ConfigError
from orchestration.runtime import compose, composing_once, prepare_process
from orchestration.step_runner import PipelineError
from steps.contract import EXIT_BAD_CONFIG, EXIT_BUG
from tasks.step_failure import StepFailed

logger = logging.getLogger(__name__)

EXIT_OK = 0
EXIT_FAILED = EXIT_BUG  # the command ran and failed for a reason it printed
EXIT_CONFIG = EXIT_BAD_CONFIG  # the configuration was refused before any work
EXIT_INTERRUPTED = 130  # Ctrl-C (128 + SIGINT)
EXIT_TERMINATED = 143  # SIGTERM (128 + SIGTERM)

# Failures whose message already says what went wrong and what to do. A command adds its own
# (a sweep's SweepFailed) through `Command(expected=...)`.
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


def _failed(_error: BaseException) -> int:
    return EXIT_FAILED


@dataclass(frozen=True)
class Command:
    """One `python -m flows.…` command, as the shell runs it.

    `label` starts the last line of an expected failure ("pipeline failed: <cause and fix>").
    `start` composes what the body needs from the arguments (by default the validated
    configuration of the Hydra overrides) before any work; `body` runs the flow with it.
    `doc` is printed for -h/--help (None: the command parsed its arguments itself).
    `expected` failures print `<label> failed: <message>` and exit with `exit_code(error)`;
    `refused` ones print `error: <message>` and exit 2. `uses_prefect=False` for a command
    that runs no flow (no temporary Prefect API, no Prefect log filters)."""

    label: str
    body: Callable[[Any], int]
    start: Callable[[list[str]], Any] = compose
    doc: str | None = None
    expected: tuple[type[BaseException], ...] = ()
    exit_code: Callable[[BaseException], int] = _failed
    refused: tuple[type[BaseException], ...] = (ConfigError,)
    uses_prefect: bool = True


def run_command(command: Command, argv: Sequence[str]) -> int:
    """Run `command` on its arguments with the shared handling; its exit code."""
    arguments = list(argv)
    if command.doc is not None and any(arg in ("-h", "--help") for arg in arguments):
        sys.stdout.write(command.doc)
        return EXIT_OK
    prepare_process()
    with composing_once():
        try:
            started = command.start(arguments)
        except command.refused as error:
            sys.stderr.write(f"error: {error}\n")
            return EXIT_CONFIG
        return _run_body(command, started)


def _run_body(command: Command, started: Any) -> int:
    label = command.label
    known = (EXPECTED_FAILURES if command.uses_prefect else ()) + command.expected
    if command.uses_prefect:
        quiet_expected_failures(known)
    try:
        with handle_termination():
            if command.uses_prefect:
                tie_temporary_api_to_this_process()
            return command.body(started)
    except command.refused as error:
        sys.stderr.write(f"error: {error}\n")
        return EXIT_CONFIG
    except known as error:
        logger.debug("%s failed", label, exc_info=True)
        sys.stderr.write(f"{label} failed: {error}\n")
        return command.exit_code(error)
    except TerminationSignal:
        sys.stderr.write(f"{label} stopped by SIGTERM; its runs were marked as ended\n")
        return EXIT_TERMINATED
    except KeyboardInterrupt:
        sys.stderr.write(f"{label} interrupted; its runs were marked as ended\n")
        return EXIT_INTERRUPTED
