"""How a failed entry point is reported, and whether a retry may help.

The decision reads the step's exit code and the error-kind tag its process left on the run
(both named in steps/contract.py), never the text of a traceback.
"""

from __future__ import annotations

import logging
from typing import Any

from steps.contract import (
    ERROR_KINDS,
    PERMANENT,
    PERMANENT_EXIT_CODES,
    SIGNAL_EXIT_CODES,
    TRANSIENT,
    TRANSIENT_EXIT_CODES,
)

logger = logging.getLogger(__name__)


class StepFailed(Exception):
    """A step's run ended without success; `transient` tells whether a retry may cure it."""

    def __init__(
        self, step: str, run_id: str, exit_code: int | None, transient: bool, message: str
    ) -> None:
        self.step = step
        self.run_id = run_id
        self.exit_code = exit_code
        self.transient = transient
        self.message = message
        kind = TRANSIENT if transient else PERMANENT
        super().__init__(f"step {step} failed ({kind}, exit code {exit_code}): {message}")

    def __reduce__(self) -> tuple[Any, ...]:
        return (
            type(self),
            (self.step, self.run_id, self.exit_code, self.transient, self.message),
        )


def is_transient(exit_code: int | None, error_kind: str | None) -> bool:
    """Transient unless the step said otherwise or its exit code means a permanent error.

    Every entry point reports its own failures (the error-kind tag, written by
    steps/common/entrypoint.py for errors and bugs alike). A step that exited without reporting
    was killed (a signal, the OOM killer, a lost worker; MLflow's `mlflow run` wrapper turns
    that into exit code 1), and running it again may well succeed.
    """
    if error_kind in ERROR_KINDS:
        return error_kind == TRANSIENT
    if exit_code in TRANSIENT_EXIT_CODES or exit_code in SIGNAL_EXIT_CODES:
        return True
    return exit_code not in PERMANENT_EXIT_CODES


def retry_if_transient(task: Any, task_run: Any, state: Any) -> bool:
    """Prefect `retry_condition_fn`: retry transient step failures only, and say why."""
    try:
        error = state.result(raise_on_failure=False)
    except Exception as exc:  # the state may not carry a result; treat the exception itself
        error = exc
    if isinstance(error, StepFailed):
        verdict = "retrying" if error.transient else "not retrying"
        kind = TRANSIENT if error.transient else PERMANENT
        logger.warning("%s: %s failure, %s", error.step, kind, verdict)
        return error.transient
    logger.warning("not retrying %s: %s", type(error).__name__, error)
    return False
