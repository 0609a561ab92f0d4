"""A sweep: model variants trained and evaluated in parallel, and the best one promoted.

    python -m flows.sweep                                  # the variants of conf/sweep/models.yaml
    python -m flows.sweep sweep=lasso_alpha data.source=/data/listings.csv
    python -m flows.train_pipeline --multirun model=torch_lasso,random_forest model.alpha=0.01,0.001

The variants share one download, cleaning, check and split (run once, in this process, as in
the pipeline). Then every variant's train and evaluate run on a Dask cluster through Prefect's
`DaskTaskRunner`: a temporary local one by default (`sweep.dask.n_workers` processes), or an
existing cluster (`sweep.dask.address=tcp://HOST:8786`). Each variant has its own MLflow run, a
child of the sweep's parent run, with its train and evaluate runs beneath it. The variant with
the best validation score (`val_` + `promotion.metric`) goes through the usual promotion against
the champion; the test rows decide nothing before that.

A variant that fails does not stop the others; the sweep then fails naming each failed variant,
promotes nothing, and a re-run trains only what did not finish (the step cache stands in for
the rest). Exit codes: 0 done, 1 a step or variant failed, 2 the configuration cannot run.
"""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from prefect import flow, get_run_logger
from prefect.futures import PrefectFuture, as_completed
from prefect.runtime import flow_run
from prefect.task_runners import TaskRunner

from flows.cli import Command, run_command
from flows.search import SearchRun, earlier_best_line, run_search
from orchestration.config import ConfigError, PipelineConfig
from orchestration.dask_cluster import (
    SweepClusterError,
    available_cores,
    cluster_starting,
    describe,
    step_environment,
)
from orchestration.step_runner import StepRunner, source_label, start_flow
from orchestration.step_table import (
    MODEL_STEP,
    PROMOTION_STEP,
    VARIANT_STEPS,
    shared_steps,
)
from orchestration.sweep_plan import (
    MULTIRUN_FLAGS,
    SweepPlan,
    Variant,
    plan_sweep,
    split_multirun,
)
from reporting.prefect_artifacts import publish_sweep_artifacts
from reporting.search_report import publish_search_report, search_notes
from reporting.summary import build_summary, test_scores
from reporting.sweep_summary import SweepSummary, VariantLine
from steps.common.url_secrets import hide_password
from steps.contract import (
    ERROR_MESSAGE_TAG,
    MAX_TAG_CHARS,
    SWEEP_KIND,
    SWEEP_VARIANT_TAG,
    is_tracking_server,
)
from tasks.pipeline_run import (
    end_pipeline_run,
    end_variant_run,
    start_variant_run,
)
from tasks.step_failure import StepFailed
from tasks.step_result import StepResult

logger = logging.getLogger(__name__)


class SweepFailed(RuntimeError):
    """One or more variants failed; nothing was promoted."""


@dataclass
class VariantOutcome:
    """What became of one variant while the sweep runs: the results of its own steps
    (VARIANT_STEPS, in order) as they finish."""

    variant: Variant
    run_id: str
    results: dict[str, StepResult] = field(default_factory=dict)
    failed_step: str | None = None
    error: str | None = None

    @property
    def finished(self) -> bool:
        return all(step in self.results for step in VARIANT_STEPS)

    def next_step(self) -> str | None:
        """The first of its own steps that has not finished (None when all have)."""
        return next((step for step in VARIANT_STEPS if step not in self.results), None)

    def score(self, metric: str) -> float | None:
        """Its validation score, as the step that trained its model reported it."""
        trained = self.results.get(MODEL_STEP)
        return trained.metrics.get(metric) if trained else None

    def line(self, metric: str, best: bool) -> VariantLine:
        steps = list(self.results.values())
        if self.failed_step:
            status = f"failed at {self.failed_step}"
        elif steps and all(result.cached for result in steps):
            status = "cached"
        else:
            status = "ran"
        return VariantLine(
            index=self.variant.index,
            label=self.variant.label,
            model=self.variant.cfg.model.name,
            run_id=self.run_id,
            status=status,
            selection_score=self.score(metric),
            test_metrics=test_scores(self.results),
            wall_seconds=sum(result.wall_seconds for result in steps),
            error=self.error,
            best=best,
        )


def _failure(error: BaseException) -> str:
    if isinstance(error, StepFailed):
        return str(error)
    return f"{type(error).__name__}: {error}"


def run_variants(
    runner: TaskRunner[Any],
    steps: StepRunner,
    plan: SweepPlan,
    shared: Mapping[str, StepResult],
    parent_run_id: str,
    step_environment: Mapping[str, str],
) -> list[VariantOutcome]:
    """Train every variant, and evaluate each as soon as its training finished; each step's
    process gets `step_environment` (its thread budget)."""
    outcomes: list[VariantOutcome] = []
    pending: dict[PrefectFuture[StepResult], tuple[VariantOutcome, str]] = {}
    for variant in plan.variants:
        run_id = start_variant_run(
            steps.experiment_id,
            parent_run_id,
            variant.name,
            steps.flow_run_id,
            {
                "variant": variant.label,
                "model": variant.cfg.model.name,
                "model_config": variant.cfg.model.model_dump_json(),
            },
        )
        outcome = VariantOutcome(variant, run_id)
        outcomes.append(outcome)
        first = VARIANT_STEPS[0]
        future = steps.submit(runner, first, shared, run_id, variant.cfg, step_environment)
        pending[future] = (outcome, first)
    while pending:
        future = next(as_completed(list(pending)))
        outcome, step = pending.pop(future)
        try:
            result = future.result()
        except Exception as error:  # reported with the variant; the others go on
            outcome.failed_step, outcome.error = step, _failure(error)
            _close(outcome, plan)
            continue
        outcome.results[step] = result
        steps.remember(result, future)  # the variant's next step is drawn downstream of it
        following = outcome.next_step()
        if following is None:
            _close(outcome, plan)
            continue
        upstream = {**shared, **outcome.results}
        follow = steps.submit(
            runner, following, upstream, outcome.run_id, outcome.variant.cfg, step_environment
        )
        pending[follow] = (outcome, following)
    return outcomes


def _close(outcome: VariantOutcome, plan: SweepPlan) -> None:
    metrics = {
        key: value
        for result in outcome.results.values()
        for key, value in result.metrics.items()
        if key.startswith(("val_", "test_"))
    }
    tags = {SWEEP_VARIANT_TAG: outcome.variant.label}
    if outcome.error:
        tags[ERROR_MESSAGE_TAG] = outcome.error[:MAX_TAG_CHARS]
    end_variant_run(outcome.run_id, outcome.finished, metrics, tags)


def pick_best(outcomes: Sequence[VariantOutcome], plan: SweepPlan) -> VariantOutcome:
    """The finished variant with the best validation score (the first of equals)."""
    metric = plan.selection_metric
    scored = [o for o in outcomes if o.finished and o.score(metric) is not None]
    if not scored:
        raise SweepFailed(f"no variant reported {metric}; nothing to choose from")
    sign = 1.0 if plan.minimize else -1.0
    return min(scored, key=lambda o: sign * float(o.score(metric) or 0.0))


Outcome = tuple[PipelineConfig, dict[str, StepResult], list[VariantLine]]


def _grid_outcome(outcomes: Sequence[VariantOutcome], plan: SweepPlan, log: Any) -> Outcome:
    """The best variant's configuration and results, and every variant's line; SweepFailed
    when one failed."""
    failed = [o for o in outcomes if o.error]
    if failed:
        raise SweepFailed(
            f"{len(failed)} of {len(outcomes)} variants failed, nothing promoted (a re-run "
            "trains only what did not finish): "
            + "; ".join(f"variant '{o.variant.label}': {o.error}" for o in failed)
        )
    best = pick_best(outcomes, plan)
    assert best.finished
    log.info("best on validation (%s): %s", plan.selection_metric, best.variant.label)
    lines = [o.line(plan.selection_metric, o is best) for o in outcomes]
    return best.variant.cfg, best.results, lines


def _search_outcome(search: SearchRun, plan: SweepPlan, log: Any) -> Outcome:
    """The best trial's configuration and results, and this run's trials' lines; SweepFailed
    when a trial failed or none completed."""
    metric = plan.selection_metric
    if search.failed:
        raise SweepFailed(
            f"{len(search.failed)} of {len(search.trials)} trials failed, nothing promoted (a "
            "re-run resumes the study): "
            + "; ".join(f"trial {t.drawn.number} '{t.label}': {t.error}" for t in search.failed)
        )
    if search.best is None or search.best_cfg is None:
        raise SweepFailed(f"no trial of study {search.study_name} completed; nothing promoted")
    best_number = search.best.number
    lines = [trial.line(metric, trial.drawn.number == best_number) for trial in search.trials]
    earlier = earlier_best_line(search, metric)
    if earlier is not None:
        lines.append(earlier)
    log.info(
        "best trial on validation (%s=%.4g): %d, %s",
        metric,
        search.best.value,
        best_number,
        next(line.label for line in lines if line.best),
    )
    return search.best_cfg, search.best_results, lines


def _flow_run_name() -> str:
    """Readable in the Prefect UI: how many variants, the data source and the date."""
    parameters = flow_run.parameters
    try:
        plan = plan_sweep(parameters.get("overrides") or [], parameters.get("variants"))
    except ConfigError:
        return f"sweep-invalid-config-{datetime.now(UTC):%Y%m%d-%H%M}"
    count = len(plan.variants)
    trials = plan.base.sweep.optuna.n_trials
    what = f"search-{trials}-trials" if plan.search else f"{count}-variants"
    return f"sweep-{what}-{source_label(plan.base)}-{datetime.now(UTC):%Y%m%d-%H%M}"


@flow(name="sweep", flow_run_name=_flow_run_name)
def sweep(
    overrides: list[str] | None = None, variants: list[list[str]] | None = None
) -> SweepSummary:
    """Train and evaluate the variants in parallel, then promote the best (validated first).

    `overrides` hold for every variant; `variants` lists each one's own overrides (None: the
    configuration's `sweep.variants`, from conf/sweep/).
    """
    log = get_run_logger()
    plan = plan_sweep(overrides or [], variants)
    cfg = plan.base
    for variant in plan.variants:
        skipped = f" ({', '.join(variant.not_applicable)} not a setting of its model)"
        log.info(
            "variant %d: %s%s",
            variant.index,
            variant.label,
            skipped if variant.not_applicable else "",
        )
    if plan.repeats:
        log.info("trained once, same settings as another variant: %s", "; ".join(plan.repeats))
    if plan.search:
        log.info(
            "search: %d trials over %s, %d at a time, study in %s",
            cfg.sweep.optuna.n_trials,
            ", ".join(plan.search.models),
            plan.search.parallelism,
            hide_password(plan.search.storage),
        )
    run_name = f"sweep-{datetime.now(UTC):%Y%m%d-%H%M%S}"
    counted = {"trials": cfg.sweep.optuna.n_trials} if plan.search else {}
    start = start_flow(
        cfg,
        overrides or [],
        run_name,
        run_name,  # the W&B group of every step's run
        {"variants": len(plan.variants), **counted},
        log,
        kind=SWEEP_KIND,
    )
    steps, results, parent_run_id = start.steps, start.results, start.parent_run_id
    if cfg.sweep.dask.address and not is_tracking_server(start.tracking_uri):
        log.warning(
            "the Dask cluster at %s writes to tracking store %s: workers on other machines "
            "cannot reach a local store; start a tracking server (make mlflow-server) and set "
            "MLFLOW_TRACKING_URI=http://HOST:PORT",
            cfg.sweep.dask.address,
            hide_password(start.tracking_uri),  # a postgresql:// store URI may carry one
        )
    shared = shared_steps(cfg.main.steps)
    promote = PROMOTION_STEP if PROMOTION_STEP in cfg.main.steps else None
    succeeded = False
    search: SearchRun | None = None
    outcomes: list[VariantOutcome] = []
    try:
        warm = cfg.main.backend == "warm-fork" and cfg.main.env_manager == "local"
        with cluster_starting(cfg.sweep.dask, warm, log) as cluster:
            for step in shared:  # here, while the cluster starts
                results[step] = steps.run(step, results, parent_run_id)
            runner = cluster.ready()
            started = time.monotonic()
            budget = step_environment(cfg.sweep.dask, available_cores())
            if plan.search is not None:
                search = run_search(
                    runner,
                    steps,
                    plan.search,
                    results,
                    parent_run_id,
                    budget,
                    plan.selection_metric,
                    plan.minimize,
                )
            else:
                outcomes = run_variants(runner, steps, plan, results, parent_run_id, budget)
            variants_seconds = time.monotonic() - started
        if search is not None:
            # The history and importances first: a failed search's trials are worth a look.
            publish_search_report(search.study, search.study_name, parent_run_id, plan.minimize)
            best_cfg, best_results, lines = _search_outcome(search, plan, log)
        else:
            best_cfg, best_results, lines = _grid_outcome(outcomes, plan, log)
        results |= best_results
        if promote is not None:
            results[promote] = steps.run(promote, results, parent_run_id, best_cfg)
        succeeded = True
    finally:
        end_pipeline_run(parent_run_id, succeeded)

    summary = SweepSummary(
        pipeline=build_summary(best_cfg, results, parent_run_id, start.tracking_uri),
        variants=lines,
        selection_metric=plan.selection_metric,
        minimize=plan.minimize,
        variants_seconds=variants_seconds,
        runner=describe(cfg.sweep.dask, available_cores()),
        repeats=list(plan.repeats),
        notes=search_notes(search.study, search.study_name, plan.search.storage, search.trials)
        if search is not None and plan.search is not None
        else [],
    )
    publish_sweep_artifacts(summary, steps.experiment_id)
    log.info("sweep finished: %s", summary.headline())
    return summary


def _start(arguments: list[str]) -> tuple[list[str], list[list[str]] | None]:
    """The shared overrides and the variants, the sweep refused before any work if it cannot
    run (with the reason)."""
    variants: list[list[str]] | None = None
    if any(arg in MULTIRUN_FLAGS for arg in arguments):
        arguments, variants = split_multirun(arguments)
    plan_sweep(arguments, variants)
    return arguments, variants


def main(argv: Sequence[str] | None = None) -> int:
    def body(started: tuple[list[str], list[list[str]] | None]) -> int:
        arguments, variants = started
        sys.stdout.write(sweep(overrides=arguments, variants=variants).render())
        return 0

    command = Command(
        "sweep",
        body,
        start=_start,
        doc=__doc__ or "",
        expected=(SweepFailed, SweepClusterError),
    )
    return run_command(command, list(sys.argv[1:] if argv is None else argv))


if __name__ == "__main__":
    sys.exit(main())
