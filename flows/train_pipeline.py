"""The training pipeline: download -> clean -> check -> split -> train -> evaluate -> promote.

Run it as `python -m flows.train_pipeline [hydra overrides...]`, e.g.
`python -m flows.train_pipeline model=random_forest data.source=/data/listings.csv`.
Each step is an MLflow entry point run by one retryable Prefect task; steps left out of
`main.steps` hand on the outputs of their latest finished run.

`--multirun` (or `-m`) makes a sweep of Hydra's multirun syntax instead, e.g.
`python -m flows.train_pipeline --multirun model=torch_lasso,random_forest model.alpha=0.01,0.001`:
the variants share one download, cleaning, check and split, train and evaluate in parallel on a
Dask cluster, and the best on the validation split is promoted (flows/sweep.py).
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Sequence
from datetime import UTC, datetime

from prefect import flow, get_run_logger
from prefect.runtime import flow_run

from flows.cli import Command, run_command
from flows.config import ConfigError, PipelineConfig
from flows.runtime import compose
from flows.step_runner import PipelineError, source_label, start_flow
from flows.sweep_plan import MULTIRUN_FLAGS
from reporting.prefect_artifacts import publish_run_artifacts
from reporting.summary import PipelineSummary, build_summary
from tasks.pipeline_run import end_pipeline_run

logger = logging.getLogger(__name__)

__all__ = ["PipelineError", "main", "train_pipeline"]


def _run_name(cfg: PipelineConfig) -> str:
    return f"{cfg.model.name}-{datetime.now(UTC):%Y%m%d-%H%M%S}"


def _flow_run_name() -> str:
    """Readable in the Prefect UI: the model, the data source and the date."""
    overrides = flow_run.parameters.get("overrides") or []
    try:
        cfg = compose(overrides)
    except ConfigError:
        return f"train-invalid-config-{datetime.now(UTC):%Y%m%d-%H%M}"
    return f"train-{cfg.model.name}-{source_label(cfg)}-{datetime.now(UTC):%Y%m%d-%H%M}"


@flow(name="train_pipeline", flow_run_name=_flow_run_name)
def train_pipeline(overrides: list[str] | None = None) -> PipelineSummary:
    """Run the pipeline with Hydra overrides applied to conf/ (validated before any work)."""
    log = get_run_logger()
    cfg = compose(overrides or [])
    run_name = _run_name(cfg)
    start = start_flow(
        cfg, overrides or [], run_name, f"pipeline-{run_name}", {"model": cfg.model.name}, log
    )
    results = start.results
    succeeded = False
    try:
        for step in cfg.main.steps:
            results[step] = start.steps.run(step, results, start.parent_run_id)
        succeeded = True
    finally:
        end_pipeline_run(start.parent_run_id, succeeded)

    summary = build_summary(cfg, results, start.parent_run_id, start.tracking_uri)
    publish_run_artifacts(summary, start.steps.experiment_id)
    log.info("pipeline finished: %s", summary.headline())
    return summary


def main(argv: Sequence[str] | None = None) -> int:
    overrides = list(sys.argv[1:] if argv is None else argv)
    if any(arg in MULTIRUN_FLAGS for arg in overrides) and not any(
        arg in ("-h", "--help") for arg in overrides
    ):
        from flows.sweep import main as sweep_main  # the same flags, Hydra's multirun syntax

        return sweep_main(overrides)

    def body(cfg: PipelineConfig) -> int:
        sys.stdout.write(train_pipeline(overrides=overrides).render())
        return 0

    return run_command(Command("pipeline", body, doc=__doc__ or ""), overrides)


if __name__ == "__main__":
    sys.exit(main())
