"""How a failed entry point is reported, and whether a retry may help.

The decision reads the step's exit code and the `step.error_kind` tag its process left on the
run (see steps/common/errors.py), never the text of a traceback.
"""

from __future__ import annotations

import logging
from typing import Any

logger = logging.getLogger(__name__)

# Exit codes the entry points use (steps/common/errors.py), by meaning.
TRANSIENT_EXIT_CODES = frozenset({75})
PERMANENT_EXIT_CODES = frozenset({2, 3, 4, 5})
# A process killed by a signal (a killed worker, the OOM killer) may well succeed when re-run.
SIGNAL_EXIT_CODES = frozenset({-9, -15, 137, 143})


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
        kind = "transient" if transient else "permanent"
        super().__init__(f"step {step} failed ({kind}, exit code {exit_code}): {message}")

    def __reduce__(self) -> tuple[Any, ...]:
        return (
            type(self),
            (self.step, self.run_id, self.exit_code, self.transient, self.message),
        )


def is_transient(exit_code: int | None, error_kind: str | None) -> bool:
    """Transient unless the step said otherwise or its exit code means a permanent error.

    Every entry point reports its own failures (the `step.error_kind` tag, written by
    steps/common/entrypoint.py for errors and bugs alike). A step that exited without reporting
    was killed (a signal, the OOM killer, a lost worker; MLflow's `mlflow run` wrapper turns
    that into exit code 1), and running it again may well succeed.
    """
    if error_kind in ("transient", "permanent"):
        return error_kind == "transient"
    if exit_code in TRANSIENT_EXIT_CODES or exit_code in SIGNAL_EXIT_CODES:
        return True
    return exit_code not in PERMANENT_EXIT_CODES


def store_unavailable(error: BaseException) -> bool:
    """A locked or unreachable tracking database anywhere in the causes (the orchestrator's own
    calls; entry points classify theirs the same way in steps/common/entrypoint.py)."""
    from sqlalchemy.exc import OperationalError

    seen: BaseException | None = error
    while seen is not None:
        if isinstance(seen, OperationalError):
            return True
        seen = seen.__cause__ or seen.__context__
    return False


def retry_if_transient(task: Any, task_run: Any, state: Any) -> bool:
    """Prefect `retry_condition_fn`: retry transient step failures only, and say why."""
    try:
        error = state.result(raise_on_failure=False)
    except Exception as exc:  # the state may not carry a result; treat the exception itself
        error = exc
    if isinstance(error, StepFailed):
        verdict = "retrying" if error.transient else "not retrying"
        kind = "transient" if error.transient else "permanent"
        logger.warning("%s: %s failure, %s", error.step, kind, verdict)
        return error.transient
    logger.warning("not retrying %s: %s", type(error).__name__, error)
    return False
