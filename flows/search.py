"""A sweep's hyperparameter search (`sweep.search=optuna`): the ask-and-tell loop over the study.

`parallelism` trials are kept in flight on the sweep's Dask task runner. Each trial is asked of
the study (orchestration/study.py), becomes a run under the sweep's parent run like a grid
variant, and runs the same train and evaluate tasks on the same runner, its train step told
which trial it is (so that a staged model reports its validation score after each stage and
stops when pruned). A trial is told to the study when its evaluate finishes (its validation
score: the test rows decide nothing), when its training was pruned (PRUNED, no evaluation) or
when a step failed (FAIL); then the next one is asked. After a failure no new trial is asked
(the in-flight ones finish) and the sweep fails naming it, as a grid sweep does; a re-run
resumes the study.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from optuna import Study
from optuna.trial import FrozenTrial, TrialState
from prefect import get_run_logger
from prefect.futures import PrefectFuture, as_completed
from prefect.task_runners import TaskRunner

from orchestration.config import PipelineConfig
from orchestration.search_plan import SearchPlan, label
from orchestration.step_runner import StepRunner
from orchestration.step_table import ENTRY_POINT_SPECS, EVALUATION_STEP, MODEL_STEP, VARIANT_STEPS
from orchestration.study import (
    EVALUATE_RUN_ATTR,
    TRAIN_RUN_ATTR,
    TRIAL_RUN_ATTR,
    Drawn,
    ask,
    best_trial,
    open_study,
    record_runs,
    tell,
)
from reporting.summary import test_scores
from reporting.sweep_summary import VariantLine
from steps.common.url_secrets import hide_password
from steps.contract import (
    ERROR_MESSAGE_TAG,
    MAX_TAG_CHARS,
    PRUNED_NOTE,
    SEARCH_STATE_TAG,
    SEARCH_TRIAL_TAG,
    SWEEP_VARIANT_TAG,
)
from tasks.pipeline_run import end_variant_run, read_step_run, start_variant_run
from tasks.step_failure import StepFailed
from tasks.step_result import StepResult


@dataclass
class TrialOutcome:
    """One trial of this run of the search: what its steps returned as they finished, and how
    it ended (None while in flight)."""

    drawn: Drawn
    label: str
    cfg: PipelineConfig
    run_id: str
    results: dict[str, StepResult] = field(default_factory=dict)
    state: TrialState | None = None
    failed_step: str | None = None
    error: str | None = None

    def next_step(self) -> str | None:
        return next((step for step in VARIANT_STEPS if step not in self.results), None)

    @property
    def pruned(self) -> str | None:
        """Why its training stopped early, if it did."""
        trained = self.results.get(MODEL_STEP)
        return trained.notes.get(PRUNED_NOTE) if trained else None

    def score(self, metric: str) -> float | None:
        trained = self.results.get(MODEL_STEP)
        return trained.metrics.get(metric) if trained else None

    def line(self, metric: str, best: bool) -> VariantLine:
        steps = list(self.results.values())
        if self.failed_step:
            status = f"failed at {self.failed_step}"
        elif self.state == TrialState.PRUNED:
            stage = self.results[MODEL_STEP].metrics.get("pruned_at_stage")
            status = f"pruned at stage {int(stage)}" if stage else "pruned"
        elif steps and all(result.cached for result in steps):
            status = "cached"
        else:
            status = "ran"
        return VariantLine(
            index=self.drawn.number,
            label=self.label,
            model=self.drawn.model,
            run_id=self.run_id,
            status=status,
            selection_score=self.score(metric),
            test_metrics=test_scores(self.results),
            wall_seconds=sum(result.wall_seconds for result in steps),
            error=self.error,
            best=best,
        )


@dataclass
class SearchRun:
    """What the search ended with: this run's trials, the study, and its best trial's results
    (this run's or an earlier one's), ready for the promotion."""

    study: Study
    study_name: str
    trials: list[TrialOutcome]
    finished_before: int
    best: FrozenTrial | None = None
    best_cfg: PipelineConfig | None = None
    best_results: dict[str, StepResult] = field(default_factory=dict)

    @property
    def failed(self) -> list[TrialOutcome]:
        return [trial for trial in self.trials if trial.error]


def _failure(error: BaseException) -> str:
    if isinstance(error, StepFailed):
        return str(error)
    return f"{type(error).__name__}: {error}"


class _Loop:
    """The ask-and-tell loop of one run of the search."""

    def __init__(
        self,
        runner: TaskRunner[Any],
        steps: StepRunner,
        plan: SearchPlan,
        shared: Mapping[str, StepResult],
        parent_run_id: str,
        step_environment: Mapping[str, str],
        metric: str,
    ) -> None:
        self.runner, self.steps, self.plan = runner, steps, plan
        self.shared, self.parent_run_id = shared, parent_run_id
        self.step_environment, self.metric = step_environment, metric
        self.pending: dict[PrefectFuture[StepResult], tuple[TrialOutcome, str]] = {}
        self.trials: list[TrialOutcome] = []
        self.stop_asking = False

    def launch(self, study: Study, study_name: str) -> None:
        drawn = ask(study, self.plan)
        cfg = self.plan.trial_config(drawn.model, drawn.values)
        text = label(drawn.model, drawn.values)
        run_id = start_variant_run(
            self.steps.experiment_id,
            self.parent_run_id,
            f"trial-{drawn.number}-{drawn.model}",
            self.steps.flow_run_id,
            {
                "variant": text,
                "model": drawn.model,
                "model_config": cfg.model.model_dump_json(),
                "trial": drawn.number,
                "study": study_name,
            },
        )
        outcome = TrialOutcome(drawn, text, cfg, run_id)
        self.trials.append(outcome)
        target = self.plan.settings.pruning.model_dump() | {
            "storage": self.plan.storage,
            "study_name": study_name,
            "trial_number": drawn.number,
            "metric": self.metric,
        }
        self.submit(outcome, VARIANT_STEPS[0], {"trial": target})

    def submit(
        self, outcome: TrialOutcome, step: str, parameters: Mapping[str, Any] | None = None
    ) -> None:
        upstream = {**self.shared, **outcome.results}
        future = self.steps.submit(
            self.runner,
            step,
            upstream,
            outcome.run_id,
            outcome.cfg,
            self.step_environment,
            parameters=parameters,
        )
        self.pending[future] = (outcome, step)

    @property
    def in_flight(self) -> int:
        return sum(1 for trial in self.trials if trial.state is None)

    def finish(self, study: Study, outcome: TrialOutcome, state: TrialState) -> None:
        """Tell the study how the trial ended, and close its run with its scores."""
        runs = {TRIAL_RUN_ATTR: outcome.run_id}
        if MODEL_STEP in outcome.results:
            runs[TRAIN_RUN_ATTR] = outcome.results[MODEL_STEP].run_id
        if EVALUATION_STEP in outcome.results:
            runs[EVALUATE_RUN_ATTR] = outcome.results[EVALUATION_STEP].run_id
        record_runs(outcome.drawn, runs)
        score = outcome.score(self.metric)
        if state == TrialState.COMPLETE and score is None:
            state = TrialState.FAIL
            outcome.error = f"its {MODEL_STEP} step reported no {self.metric}"
        tell(study, outcome.drawn.number, state, score)
        outcome.state = state
        metrics = {
            key: value
            for result in outcome.results.values()
            for key, value in result.metrics.items()
            if key.startswith(("val_", "test_"))
        }
        tags = {
            SWEEP_VARIANT_TAG: outcome.label,
            SEARCH_TRIAL_TAG: str(outcome.drawn.number),
            SEARCH_STATE_TAG: state.name,
        }
        if outcome.error:
            tags[ERROR_MESSAGE_TAG] = outcome.error[:MAX_TAG_CHARS]
        end_variant_run(outcome.run_id, state != TrialState.FAIL, metrics, tags)


def run_search(
    runner: TaskRunner[Any],
    steps: StepRunner,
    plan: SearchPlan,
    shared: Mapping[str, StepResult],
    parent_run_id: str,
    step_environment: Mapping[str, str],
    metric: str,
    minimize: bool,
) -> SearchRun:
    """Run the study's remaining trials, `plan.parallelism` at a time; the best trial's results
    (None when no trial completed) for the promotion."""
    inputs = ENTRY_POINT_SPECS[MODEL_STEP].inputs.values()
    digests = [
        shared[upstream].digests.get(output, shared[upstream].outputs[output])
        for upstream, output in inputs
    ]
    study_name = plan.study_name(digests)
    opened = open_study(plan, study_name, minimize)
    study, finished_before = opened.study, opened.finished
    log = get_run_logger()
    if opened.failed_stale:
        log.warning(
            "study %s: trial(s) %s were left RUNNING by an interrupted search: marked FAIL",
            study_name,
            ", ".join(map(str, opened.failed_stale)),
        )
    log.info(
        "study %s in %s: %d trial(s) finished before, %d to run",
        study_name,
        hide_password(plan.storage),
        finished_before,
        max(0, plan.settings.n_trials - finished_before),
    )
    remaining = max(0, plan.settings.n_trials - finished_before)
    loop = _Loop(runner, steps, plan, shared, parent_run_id, step_environment, metric)

    def top_up() -> None:
        while (
            not loop.stop_asking
            and len(loop.trials) < remaining
            and loop.in_flight < plan.parallelism
        ):
            loop.launch(study, study_name)

    top_up()
    while loop.pending:
        future = next(as_completed(list(loop.pending)))
        outcome, step = loop.pending.pop(future)
        try:
            result = future.result()
        except Exception as error:  # told FAIL; the trials in flight go on
            outcome.failed_step, outcome.error = step, _failure(error)
            loop.finish(study, outcome, TrialState.FAIL)
            loop.stop_asking = True
            continue
        outcome.results[step] = result
        steps.remember(result, future)
        following = outcome.next_step()
        if step == MODEL_STEP and outcome.pruned:
            loop.finish(study, outcome, TrialState.PRUNED)
        elif following is None:
            loop.finish(study, outcome, TrialState.COMPLETE)
        else:
            loop.submit(outcome, following)
        top_up()

    search = SearchRun(study, study_name, loop.trials, finished_before)
    best = best_trial(study)
    if best is None:
        return search
    search.best = best
    mine = next((trial for trial in loop.trials if trial.drawn.number == best.number), None)
    if mine is not None:
        search.best_cfg, search.best_results = mine.cfg, dict(mine.results)
        return search
    # An earlier run of the search trained it: its runs are on the trial.
    model = str(best.params["model"])
    values = {
        key.removeprefix(f"{model}."): value
        for key, value in best.params.items()
        if key.startswith(f"{model}.")
    }
    search.best_cfg = plan.trial_config(model, values)
    search.best_results = {
        MODEL_STEP: read_step_run(str(best.user_attrs[TRAIN_RUN_ATTR]), MODEL_STEP),
        EVALUATION_STEP: read_step_run(str(best.user_attrs[EVALUATE_RUN_ATTR]), EVALUATION_STEP),
    }
    return search


def earlier_best_line(search: SearchRun, metric: str) -> VariantLine | None:
    """The best trial as a line of the report when an earlier run of the search trained it."""
    best = search.best
    if best is None or any(trial.drawn.number == best.number for trial in search.trials):
        return None
    model = str(best.params["model"])
    values = {k.removeprefix(f"{model}."): v for k, v in best.params.items() if k != "model"}
    return VariantLine(
        index=best.number,
        label=label(model, values),
        model=model,
        run_id=str(best.user_attrs.get(TRIAL_RUN_ATTR, "")),
        status="earlier run",
        selection_score=search.best_results[MODEL_STEP].metrics.get(metric),
        test_metrics=test_scores(search.best_results),
        best=True,
    )
