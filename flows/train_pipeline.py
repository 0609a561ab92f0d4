"""The training pipeline: download -> clean -> check -> split -> train -> evaluate -> promote.

Run it as `python -m flows.train_pipeline [hydra overrides...]`, e.g.
`python -m flows.train_pipeline model=random_forest data.source=/data/listings.csv`.
Each step is an MLflow entry point run by one retryable Prefect task; steps left out of
`main.steps` hand on the outputs of their latest finished run.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from prefect import flow, get_run_logger
from prefect.runtime import flow_run

from flows.artifacts import publish_run_artifacts
from flows.config import ConfigError, PipelineConfig, load_config
from flows.pipeline_steps import SPEC_BY_NAME, STEPS
from flows.runtime import configure_services, promotion_lock, start_command
from flows.summary import PipelineSummary, step_line
from tasks.parameters import normalize, redact
from tasks.pipeline_run import end_pipeline_run, reuse_step_outputs, start_pipeline_run
from tasks.run_entry_point import PROJECT_ROOT, run_entry_point
from tasks.step_cache import cache_key, code_version, fingerprint_source
from tasks.step_failure import StepFailed
from tasks.step_result import StepResult
from tasks.tracking_store import ensure_experiment

logger = logging.getLogger(__name__)


class PipelineError(RuntimeError):
    """The pipeline cannot run as asked (e.g. a reused step has never finished)."""


def step_parameters(step: str, cfg: PipelineConfig, start_dir: Path) -> dict[str, Any]:
    """The configuration values an entry point takes, by the names its MLproject declares."""
    if step == "get_data":
        return cfg.data.model_dump() | {"source": cfg.data.resolved_source(start_dir)}
    if step == "basic_cleaning":
        return cfg.cleaning.model_dump()
    if step == "data_check":
        return cfg.data_check.model_dump() | cfg.cleaning.bounds()
    if step == "data_split":
        return cfg.split.model_dump()
    if step == "train":
        return {"model_config": cfg.model.model_dump()}
    if step == "promote":
        promotion = cfg.promotion
        return {
            "registered_model": cfg.main.registered_model,
            "alias": promotion.alias,
            "challenger_alias": promotion.challenger_alias,
            "metric": promotion.metric,
            "direction": promotion.direction,
            "min_relative_improvement": promotion.min_relative_improvement,
            "gate": promotion.gate_bounds(),
            "use_stages": promotion.use_stages,
            "ready_timeout_s": promotion.ready_timeout_s,
            "dry_run": promotion.dry_run,
        }
    return {}


def upstream_steps_to_reuse(selected: Sequence[str]) -> list[str]:
    """Steps left out whose outputs a selected step consumes."""
    needed = {
        upstream
        for name in selected
        for upstream, _ in SPEC_BY_NAME[name].inputs.values()
        if upstream not in selected
    }
    return [spec.name for spec in STEPS if spec.name in needed]


def _run_name(cfg: PipelineConfig) -> str:
    return f"{cfg.model.name}-{datetime.now(UTC):%Y%m%d-%H%M%S}"


def _source_label(cfg: PipelineConfig) -> str:
    """The source's last path segment; never a query string or credentials."""
    return redact(cfg.data.source).rstrip("/").rsplit("/", 1)[-1] or "source"


def _flow_run_name() -> str:
    """Readable in the Prefect UI: the model, the data source and the date."""
    overrides = flow_run.parameters.get("overrides") or []
    try:
        cfg = load_config(overrides)
    except ConfigError:
        return f"train-invalid-config-{datetime.now(UTC):%Y%m%d-%H%M}"
    return f"train-{cfg.model.name}-{_source_label(cfg)}-{datetime.now(UTC):%Y%m%d-%H%M}"


@flow(name="train_pipeline", flow_run_name=_flow_run_name)
def train_pipeline(overrides: list[str] | None = None) -> PipelineSummary:
    """Run the pipeline with Hydra overrides applied to conf/ (validated before any work)."""
    log = get_run_logger()
    cfg = load_config(overrides or [])
    start_dir = Path.cwd()
    run_name = _run_name(cfg)
    tracking_uri = configure_services(cfg, start_dir, group=f"pipeline-{run_name}")
    experiment_id = ensure_experiment(cfg.main.experiment_name)
    flow_run_id = flow_run.get_id()

    results: dict[str, StepResult] = {}
    for step in upstream_steps_to_reuse(cfg.main.steps):
        reused = reuse_step_outputs(experiment_id, step)
        if reused is None:
            raise PipelineError(
                f"main.steps={','.join(cfg.main.steps)} needs the outputs of {step}, but "
                f"experiment '{cfg.main.experiment_name}' has no finished {step} run; "
                f"add {step} to main.steps (or run main.steps=all once)"
            )
        log.info("reusing %s outputs from finished run %s", step, reused.run_id)
        results[step] = reused

    parent_run_id = start_pipeline_run(
        experiment_id,
        run_name,
        flow_run_id,
        {
            "overrides": " ".join(overrides or []) or "(none)",
            "steps": ",".join(cfg.main.steps),
            "model": cfg.model.name,
            "source": redact(cfg.data.resolved_source(start_dir)),
        },
    )
    runner = run_entry_point.with_options(
        retries=cfg.task.retries,
        retry_delay_seconds=cfg.task.retry_delays(),
        retry_jitter_factor=cfg.task.retry_jitter,
        # Task runs read "train-random_forest-demo" in the UI ({step} is the task's parameter).
        task_run_name="{step}-"
        + f"{cfg.model.name}-{_source_label(cfg)}".replace("{", "{{").replace("}", "}}"),
    )
    code = code_version(PROJECT_ROOT)
    succeeded = False
    try:
        for step in cfg.main.steps:
            spec = SPEC_BY_NAME[step]
            parameters = step_parameters(step, cfg, start_dir)
            inputs = {}
            for parameter, (upstream, output) in spec.inputs.items():
                parameters[parameter] = results[upstream].outputs[output]
                inputs[parameter] = results[upstream].digests.get(output, parameters[parameter])
            key = None
            if spec.cacheable and step not in cfg.main.force:
                if step == "get_data":
                    inputs["source"] = fingerprint_source(parameters["source"]) or ""
                if all(inputs.values()):
                    # Inputs enter the key by content, not by the URI of the run that made them.
                    settings = {k: v for k, v in parameters.items() if k not in spec.inputs}
                    key = cache_key(step, normalize(settings), inputs, code)
            results[step] = runner(
                step,
                parameters,
                spec.outputs,
                experiment_id,
                parent_run_id=parent_run_id,
                flow_run_id=flow_run_id,
                env_manager=cfg.main.env_manager,
                backend=cfg.main.backend,
                timeout_s=cfg.task.timeout_s,
                lock=promotion_lock(cfg) if step == "promote" else None,
                cache_key=key,
            )
        succeeded = True
    finally:
        end_pipeline_run(parent_run_id, succeeded)

    summary = build_summary(cfg, results, parent_run_id, tracking_uri)
    publish_run_artifacts(summary, experiment_id)
    log.info("pipeline finished: %s", summary.headline())
    return summary


def build_summary(
    cfg: PipelineConfig, results: dict[str, StepResult], parent_run_id: str, tracking_uri: str
) -> PipelineSummary:
    promoted = results.get("promote")
    evaluated = results.get("evaluate")
    version = None
    if promoted and "model_version" in promoted.outputs:
        version = promoted.outputs["model_version"].rsplit("/", 1)[-1]
    return PipelineSummary(
        parent_run_id=parent_run_id,
        experiment_name=cfg.main.experiment_name,
        tracking_uri=tracking_uri,
        steps=[step_line(results[name]) for name in cfg.main.steps if name in results],
        test_metrics={
            k: v
            for k, v in (evaluated.metrics if evaluated else {}).items()
            if k.startswith("test_")
        },
        registered_model=cfg.main.registered_model if version else None,
        registered_version=version,
        alias=cfg.promotion.alias if version else None,
        promotion_notes=dict(promoted.notes) if promoted else {},
    )


def main(argv: Sequence[str] | None = None) -> int:
    overrides = list(sys.argv[1:] if argv is None else argv)
    if any(arg in ("-h", "--help") for arg in overrides):
        sys.stdout.write(__doc__ or "")
        return 0
    if not start_command(overrides):
        return 2
    try:
        summary = train_pipeline(overrides=overrides)
    except (StepFailed, PipelineError, ConfigError) as error:
        sys.stderr.write(f"pipeline failed: {error}\n")
        return 1
    sys.stdout.write(summary.render())
    return 0


if __name__ == "__main__":
    sys.exit(main())
