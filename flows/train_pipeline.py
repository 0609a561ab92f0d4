"""The training pipeline: download -> clean -> check -> split -> train -> evaluate -> promote.

Run it as `python -m flows.train_pipeline [hydra overrides...]`, e.g.
`python -m flows.train_pipeline model=random_forest data.source=/data/listings.csv`.
From the Prefect UI (a deployment's *Custom run*), the same settings are typed fields: the model
and its hyperparameters, the data source, the steps, the experiment and registered model, with
`overrides` for anything else (flows/run_form.py).
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
from flows.run_form import (
    DataSource,
    ExperimentName,
    Hyperparameters,
    ModelChoice,
    RegisteredModel,
    StepsChoice,
    run_overrides,
)
from orchestration.config import ConfigError, PipelineConfig
from orchestration.runtime import compose
from orchestration.step_runner import PipelineError, source_label, start_flow
from orchestration.sweep_plan import MULTIRUN_FLAGS
from reporting.prefect_artifacts import publish_run_artifacts
from reporting.summary import PipelineSummary, build_summary
from tasks.pipeline_run import end_pipeline_run

logger = logging.getLogger(__name__)

__all__ = ["PipelineError", "main", "run_pipeline", "train_pipeline"]


def _run_name(cfg: PipelineConfig) -> str:
    return f"{cfg.model.name}-{datetime.now(UTC):%Y%m%d-%H%M%S}"


def _flow_run_name() -> str:
    """Readable in the Prefect UI: the model, the data source and the date."""
    parameters = dict(flow_run.parameters)
    try:
        cfg = compose(run_overrides(parameters, parameters.pop("overrides", None)))
    except ConfigError:
        return f"train-invalid-config-{datetime.now(UTC):%Y%m%d-%H%M}"
    return f"train-{cfg.model.name}-{source_label(cfg)}-{datetime.now(UTC):%Y%m%d-%H%M}"


@flow(name="train_pipeline", flow_run_name=_flow_run_name)
def train_pipeline(
    model: ModelChoice = None,
    hyperparameters: Hyperparameters = None,
    data_source: DataSource = None,
    steps: StepsChoice = None,
    experiment_name: ExperimentName = None,
    registered_model: RegisteredModel = None,
    overrides: list[str] | None = None,
) -> PipelineSummary:
    """Run the pipeline on conf/ with these settings (validated before any work).

    Args:
        model: The model to train (conf/model/); empty: conf/'s default.
        hyperparameters: The chosen model's hyperparameters, within their bounds; a field left
            empty keeps conf/model/'s value.
        data_source: demo, a path, file://, http(s):// or oss://BUCKET/PREFIX; a URL that
            carries credentials is refused: give it as ${oc.env:NAME}. Empty: conf/'s.
        steps: The steps to run, in pipeline order; the others reuse their latest finished
            outputs. Empty: conf/'s (all).
        experiment_name: The MLflow experiment; empty: conf/'s.
        registered_model: The registered model promote writes to; empty: conf/'s.
        overrides: Hydra overrides for anything else (e.g. data.demo_rows=2000), applied after
            the fields above.
    """
    typed = {
        "model": model,
        "hyperparameters": hyperparameters,
        "data_source": data_source,
        "steps": steps,
        "experiment_name": experiment_name,
        "registered_model": registered_model,
    }
    return run_pipeline(run_overrides(typed, overrides))


def run_pipeline(applied: list[str]) -> PipelineSummary:
    """The pipeline's steps in the calling flow run, on the configuration of `applied`: its
    task runs, parent MLflow run and artifacts belong to that flow run (train_pipeline, or
    retrain_on_new_data once it holds its object)."""
    cfg = compose(applied)
    log = get_run_logger()
    run_name = _run_name(cfg)
    start = start_flow(
        cfg, applied, run_name, f"pipeline-{run_name}", {"model": cfg.model.name}, log
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
