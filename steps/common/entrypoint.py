"""The thin CLI shell every entry point runs in: parse, run, report failures the same way.

An entry point's failure must reach the orchestrator as data, not as a traceback to scrape: the
exit code says which kind of failure it was (see `errors`), and the run carries the error kind
and message tags (steps/contract.py) so the flow can show the step's own message on top.
"""

from __future__ import annotations

import argparse
import logging
import os
import resource
import sys
import time
from collections.abc import Callable, Sequence

from steps.common.errors import StepError, TransientError
from steps.contract import (
    ERROR_KIND_TAG,
    ERROR_MESSAGE_TAG,
    EXIT_BUG,
    EXIT_TRANSIENT,
    MAX_TAG_CHARS,
    PERMANENT,
    REPORTED_BY_CALLER_VARIABLE,
    TRANSIENT,
    is_unavailable_store,
)

logger = logging.getLogger(__name__)

# A fault to inject, for drills and tests of recovery: "<step>@<path>" makes entry point <step>
# fail with a transient error while the file <path> exists (docs/recovery.md).
FAILPOINT_VARIABLE = "STEP_FAILPOINT"


def configure_process() -> None:
    """Logging to stderr and no telemetry, once per entry-point process."""
    logging.basicConfig(
        level=os.environ.get("STEP_LOG_LEVEL", "INFO"),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    os.environ.setdefault("DO_NOT_TRACK", "true")
    os.environ.setdefault("WANDB_ERROR_REPORTING", "false")
    # oss2 logs request headers (access key id, STS token) at DEBUG: never below WARNING.
    for noisy in ("urllib3", "alembic", "git", "matplotlib", "PIL", "oss2"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


def _record_failure(run_id: str | None, kind: str, message: str) -> bool:
    """Leave the failure on the step's MLflow run, where the orchestrator looks for it;
    whether it is there now."""
    import mlflow

    if not run_id:
        return False
    try:
        mlflow.MlflowClient().set_tag(run_id, ERROR_KIND_TAG, kind)
        mlflow.MlflowClient().set_tag(run_id, ERROR_MESSAGE_TAG, message[:MAX_TAG_CHARS])
    except Exception:  # the store may be the thing that failed; the exit code still tells
        logger.warning("could not record the failure on run %s", run_id, exc_info=True)
        return False
    return True


def check_failpoint(step: str) -> None:
    """Fail as a transient fault would, when STEP_FAILPOINT names this step and its file exists:
    a fault switched on and off from outside the running pipeline (docs/recovery.md)."""
    spec = os.environ.get(FAILPOINT_VARIABLE, "")
    named, _, path = spec.partition("@")
    if named == step and path and os.path.exists(path):
        raise TransientError(
            f"{FAILPOINT_VARIABLE}={spec}: injected fault (remove {path} to end it)"
        )


def peak_rss_mb() -> float:
    """This process's peak resident memory so far, in MiB (Linux reports ru_maxrss in KiB).

    A child forked by the warm-fork server starts with the server's resident pages (the
    preloaded libraries), so its peak includes them, as a fresh interpreter's would include its
    own imports: the figure is the step's whole footprint, not only its data.
    """
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def current_rss_mb() -> float:
    """Resident memory now, in MiB (/proc/self/statm; the peak where /proc is missing)."""
    try:
        with open("/proc/self/statm") as statm:
            pages = int(statm.read().split()[1])
    except (OSError, IndexError, ValueError):
        return peak_rss_mb()
    return pages * os.sysconf("SC_PAGE_SIZE") / (1 << 20)


def _record_work(run_id: str | None, seconds: float, start_rss_mb: float) -> None:
    """The step's own work, without process start and imports (overhead is wall minus this),
    its peak resident memory and what was resident before its work began (the baseline)."""
    import mlflow
    from mlflow.entities import Metric

    if run_id:
        mlflow.MlflowClient().log_batch(
            run_id,
            metrics=[
                Metric(name, value, int(time.time() * 1000), 0)
                for name, value in (
                    ("work_seconds", seconds),
                    ("peak_rss_mb", peak_rss_mb()),
                    ("start_rss_mb", start_rss_mb),
                )
            ],
        )


def run_entry_point(
    parser: argparse.ArgumentParser,
    main: Callable[[argparse.Namespace], None],
    argv: Sequence[str] | None = None,
) -> None:
    """Run `main` with parsed arguments and exit with the code its outcome calls for."""
    configure_process()
    args = parser.parse_args(argv)
    # `mlflow run` names the step's run here; mlflow.start_run() consumes the variable.
    run_id = os.environ.get("MLFLOW_RUN_ID")
    start_rss = current_rss_mb()
    started = time.perf_counter()
    try:
        check_failpoint(parser.prog)
        main(args)
        _record_work(run_id, time.perf_counter() - started, start_rss)
    except StepError as error:
        message = str(error)
        recorded = _record_failure(run_id, error.kind, message)
        if recorded and os.environ.get(REPORTED_BY_CALLER_VARIABLE):
            # The pipeline prints the message itself, once, at the end (flows/cli.py).
            logger.error(
                "%s failed (%s, exit code %d); the pipeline reports why (run %s)",
                parser.prog,
                error.kind,
                error.exit_code,
                run_id,
            )
        else:
            logger.error("%s failed (%s): %s", parser.prog, error.kind, message)
        sys.exit(error.exit_code)
    except Exception as error:
        if is_unavailable_store(error):
            message = f"the tracking store is unavailable ({type(error).__name__}); retry later"
            logger.error("%s failed (transient): %s", parser.prog, message)
            _record_failure(run_id, TRANSIENT, message)
            sys.exit(EXIT_TRANSIENT)
        # A bug: report it once, with its traceback, as permanent.
        logger.exception("%s crashed", parser.prog)
        _record_failure(run_id, PERMANENT, f"{type(error).__name__}: {error}")
        sys.exit(EXIT_BUG)
