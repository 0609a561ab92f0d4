"""Score listings with the champion, and watch them for drift.

    python -m flows.score data.source=FILE_OR_URI scoring.output=OUT.parquet [overrides...]

The listings are read by the pipeline's own `get_data` (any source it reads: a path, file://,
http(s)://, oss://, demo; the same limits and cache; a price column is not needed), then the
`score` entry point prices each one with `models:/<main.registered_model>@<scoring.alias>` (the
champion: promotion.alias) and measures each model-input feature's drift from that version's
training data (PSI, docs/scoring.md). The predictions (id, predicted_price, model_version) are
an artifact of the scoring run and, with `scoring.output`, a Parquet file there (a relative
path is taken from the directory the command was started in). The runs go to their own
experiment (`scoring.experiment_name`, default `<main.experiment_name>-scoring`).

When any feature's score is above `scoring.drift_threshold`, the flow sends the
`listings.drift.detected` event (orchestration/events.py), which a deployment's trigger may
turn into a retraining. Exit codes: 0 scored (drift or not), the step's own code when it refused
(2 configuration, 3 bad listings, 4 unreadable source, 5 no version has the alias), 1 otherwise.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path

from prefect import flow, get_run_logger
from prefect.runtime import flow_run

from flows.cli import EXIT_FAILED, Command, run_command
from orchestration.config import ConfigError, PipelineConfig
from orchestration.events import ListingsEvent, ListingsObject, drift, send
from orchestration.runtime import compose
from orchestration.step_runner import source_label, step_runner
from orchestration.step_table import (
    SCORING_INPUT_PARAMETERS,
    SCORING_INPUT_STEP,
    SCORING_STEP,
)
from reporting.prefect_artifacts import publish_scoring_artifacts
from reporting.scoring_summary import ScoringSummary, build_scoring_summary
from steps.common.url_secrets import redact_url
from steps.contract import PERMANENT_EXIT_CODES, SCORING_KIND
from tasks.pipeline_run import end_pipeline_run, reap_ghost_runs, start_pipeline_run
from tasks.step_failure import StepFailed
from tasks.step_result import StepResult

logger = logging.getLogger(__name__)

# Appended to main.experiment_name when scoring.experiment_name is null.
EXPERIMENT_SUFFIX = "-scoring"


def scoring_experiment(cfg: PipelineConfig) -> str:
    """Where the scoring runs go: apart from training, so that a partial pipeline's reuse of
    the latest get_data never picks up listings that were scored."""
    return cfg.scoring.experiment_name or f"{cfg.main.experiment_name}{EXPERIMENT_SUFFIX}"


def _in_scoring_experiment(cfg: PipelineConfig) -> PipelineConfig:
    main = cfg.main.model_copy(update={"experiment_name": scoring_experiment(cfg)})
    return cfg.model_copy(update={"main": main})


def drift_event(cfg: PipelineConfig, start_dir: Path, summary: ScoringSummary) -> ListingsEvent:
    """The drift event of a scoring run: the listings by their source as written (a relative
    path made absolute, an environment reference kept as the reference) and content digest."""
    subject = ListingsObject(
        source=cfg.data.resolved_source(start_dir),
        fingerprint=summary.input_digest,
        size=summary.input_bytes,
        has_price=summary.has_price,
    )
    return drift(
        subject,
        details={
            "registered_model": summary.registered_model,
            "model_version": summary.model_version,
            "drifted": list(summary.drifted),
            "scores": dict(summary.scores),
            "threshold": summary.threshold,
        },
    )


def _flow_run_name() -> str:
    """Readable in the Prefect UI: the source and the date."""
    try:
        cfg = compose(list(flow_run.parameters.get("overrides") or []))
    except ConfigError:
        return f"score-invalid-config-{datetime.now(UTC):%Y%m%d-%H%M}"
    return f"score-{source_label(cfg)}-{datetime.now(UTC):%Y%m%d-%H%M}"


@flow(name="score", flow_run_name=_flow_run_name)
def score(overrides: list[str] | None = None) -> ScoringSummary:
    """Price the listings of `data.source` with the champion and report their drift.

    Args:
        overrides: Hydra overrides, e.g. data.source=/data/new.csv scoring.output=out.parquet.
    """
    applied = list(overrides or [])
    cfg = compose(applied)
    log = get_run_logger()
    scoring = _in_scoring_experiment(cfg)
    run_name = f"score-{datetime.now(UTC):%Y%m%d-%H%M%S}"
    steps = step_runner(scoring, group=run_name)
    reaped = reap_ghost_runs(steps.experiment_id)
    if reaped:
        log.warning("marked %d run(s) left RUNNING by a killed flow as KILLED", len(reaped))
    recorded = {
        "overrides": " ".join(applied) or "(none)",
        "registered_model": cfg.main.registered_model,
        "alias": cfg.scoring.alias or cfg.promotion.alias,
        "source": redact_url(cfg.data.resolved_source(steps.start_dir)),
    }
    parent_run_id = start_pipeline_run(
        steps.experiment_id, run_name, steps.flow_run_id, recorded, kind=SCORING_KIND
    )
    results: dict[str, StepResult] = {}
    succeeded = False
    try:
        results[SCORING_INPUT_STEP] = steps.run(
            SCORING_INPUT_STEP, results, parent_run_id, parameters=SCORING_INPUT_PARAMETERS
        )
        results[SCORING_STEP] = steps.run(SCORING_STEP, results, parent_run_id)
        succeeded = True
    finally:
        end_pipeline_run(parent_run_id, succeeded)

    summary = build_scoring_summary(
        cfg, results, parent_run_id, steps.tracking_uri, scoring.main.experiment_name
    )
    publish_scoring_artifacts(summary, steps.experiment_id)
    if summary.drifted:
        send([drift_event(cfg, steps.start_dir, summary)])
        log.warning(
            "drift: %s above %g; sent the drift event",
            ", ".join(f"{name} {summary.scores.get(name, 0.0):.3f}" for name in summary.drifted),
            summary.threshold,
        )
    log.info("scoring finished: %s", summary.headline())
    return summary


def checked(overrides: list[str]) -> PipelineConfig:
    """The configuration, and the output's directory checked before any work: a missing one
    is refused at once rather than after the download (exit 2)."""
    cfg = compose(overrides)
    output = cfg.scoring.resolved_output(Path.cwd())
    if output and Path(output).is_dir():
        raise ConfigError(f"scoring.output {output} is a directory: name a file in it")
    if output and not Path(output).parent.is_dir():
        raise ConfigError(
            f"scoring.output {output}: directory {Path(output).parent} does not exist; "
            "create it first"
        )
    return cfg


def exit_code(error: BaseException) -> int:
    """A step's own refusal keeps its exit code (bad listings 3, no champion 5, ...)."""
    if isinstance(error, StepFailed) and error.exit_code in PERMANENT_EXIT_CODES:
        return int(error.exit_code)
    return EXIT_FAILED


def main(argv: Sequence[str] | None = None) -> int:
    overrides = list(sys.argv[1:] if argv is None else argv)

    def body(cfg: PipelineConfig) -> int:
        sys.stdout.write(score(overrides=overrides).render())
        return 0

    command = Command("scoring", body, start=checked, doc=__doc__ or "", exit_code=exit_code)
    return run_command(command, overrides)


if __name__ == "__main__":
    sys.exit(main())
