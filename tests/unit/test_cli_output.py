"""The console of a `python -m flows.…` command: an expected failure's cause once, no traceback."""

from __future__ import annotations

import io
import logging
import sys
from collections.abc import Iterator

import pytest

from flows.cli import EXPECTED_FAILURES, _QuietExpectedFailures
from tasks.step_failure import StepFailed

Console = tuple[logging.Logger, io.StringIO, list[logging.LogRecord]]
CAUSE = "data.source '/x.csv' does not exist: check the path"


@pytest.fixture
def console() -> Iterator[Console]:
    """A logger like Prefect's flow-run logger, a console handler with the filter, and what
    another handler (Prefect's API log handler) receives."""
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(logging.Formatter("%(message)s"))
    handler.addFilter(_QuietExpectedFailures(handler, EXPECTED_FAILURES))
    seen: list[logging.LogRecord] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            seen.append(record)

    logger = logging.getLogger("prefect.flow_runs.test_cli_output")
    logger.propagate = False
    logger.handlers = [Keep(), handler]
    logger.setLevel(logging.INFO)
    yield logger, stream, seen
    logger.handlers = []


def _raise(error: BaseException) -> None:
    try:
        raise error
    except BaseException:
        logging.getLogger("prefect.flow_runs.test_cli_output").exception("Encountered exception")


def test_an_expected_failure_leaves_no_traceback_on_the_console(console: Console) -> None:
    _, stream, seen = console
    _raise(StepFailed("get_data", "r1", 4, False, CAUSE))
    assert stream.getvalue() == ""
    assert seen and seen[0].exc_info is not None  # the API logs keep it whole


def test_an_unexpected_error_keeps_its_traceback(console: Console) -> None:
    _, stream, _ = console
    _raise(ZeroDivisionError("a bug"))
    assert "Traceback" in stream.getvalue() and "ZeroDivisionError: a bug" in stream.getvalue()


def test_finished_in_state_failed_does_not_repeat_the_cause(console: Console) -> None:
    logger, stream, seen = console
    logger.info(
        "Finished in state Failed('Flow run encountered an exception: StepFailed: %s')", CAUSE
    )
    logger.info("Finished in state Failed('Flow run encountered an exception: KeyError: x')")
    lines = stream.getvalue().splitlines()
    assert lines[0] == "Finished in state Failed"
    assert "KeyError: x" in lines[1]
    assert CAUSE in seen[0].getMessage()  # unchanged for the other handlers
    assert sys.exc_info() == (None, None, None)
