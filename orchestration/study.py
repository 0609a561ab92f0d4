"""The search's Optuna study: opened (or resumed), asked for trials, told how each ended.

The flow runs the ask-and-tell loop (flows/search.py); this module is all it knows of Optuna.
The study lives in a SQL database of the tracking store's family (orchestration/search_plan.py),
so an interrupted search resumes: its finished trials (complete or pruned) count towards
`n_trials`, and a trial a killed search left RUNNING is marked FAIL, then drawn again. The
sampler is TPE, seeded; on resume its seed moves on by the trials already held, so a resumed
search does not draw its random start-up values a second time. Trials in flight at the same
time are modelled with TPE's constant liar, so parallel trials do not all draw the same point.
Pruning is decided by each trial's train step (steps/train/trial_report.py), so the study
itself has no pruner.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import optuna
from optuna.study import StudyDirection
from optuna.trial import FrozenTrial, Trial, TrialState

from orchestration.search_plan import SearchPlan
from orchestration.search_space import Choice, FloatRange, IntRange
from steps.contract import SEARCH_MODEL_PARAM, study_engine_kwargs

# User attributes of a trial: the MLflow runs that hold it, so a later run of the search can
# promote a trial an earlier one trained.
TRAIN_RUN_ATTR = "train_run_id"
EVALUATE_RUN_ATTR = "evaluate_run_id"
TRIAL_RUN_ATTR = "trial_run_id"
FINISHED_STATES = (TrialState.COMPLETE, TrialState.PRUNED)


@dataclass(frozen=True)
class Drawn:
    """A trial the study asked for: its model and the values drawn for that model."""

    trial: Trial
    model: str
    values: dict[str, Any]

    @property
    def number(self) -> int:
        return self.trial.number


def storage_of(url: str) -> optuna.storages.RDBStorage:
    return optuna.storages.RDBStorage(url, engine_kwargs=study_engine_kwargs(url))


@dataclass(frozen=True)
class OpenedStudy:
    study: optuna.Study
    # Its trials finished before (complete or pruned): they count towards n_trials.
    finished: int
    # The trials a killed search had left RUNNING, now marked FAIL.
    failed_stale: list[int]


def open_study(plan: SearchPlan, study_name: str, minimize: bool) -> OpenedStudy:
    """The study, created or loaded, with trials left RUNNING by a killed search marked FAIL."""
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    settings = plan.settings
    storage = storage_of(plan.storage)
    direction = StudyDirection.MINIMIZE if minimize else StudyDirection.MAXIMIZE
    try:
        held = len(optuna.load_study(study_name=study_name, storage=storage).trials)
    except KeyError:
        held = 0
    sampler = optuna.samplers.TPESampler(
        seed=settings.seed + held,
        n_startup_trials=settings.startup_trials,
        constant_liar=True,
    )
    study = optuna.create_study(
        study_name=study_name,
        storage=storage,
        sampler=sampler,
        pruner=optuna.pruners.NopPruner(),
        direction=direction,
        load_if_exists=True,
    )
    stale = study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))
    for trial in stale:
        study.tell(trial.number, state=TrialState.FAIL)
    finished = len(study.get_trials(deepcopy=False, states=FINISHED_STATES))
    return OpenedStudy(study, finished, [trial.number for trial in stale])


def ask(study: optuna.Study, plan: SearchPlan) -> Drawn:
    """A new trial: its model (when the space has several) and that model's values."""
    trial = study.ask()
    model = str(trial.suggest_categorical(SEARCH_MODEL_PARAM, list(plan.settings.space)))
    values = {
        key: _suggest(trial, f"{model}.{key}", distribution)
        for key, distribution in plan.settings.space[model].items()
    }
    return Drawn(trial, model, values)


def _suggest(trial: Trial, name: str, distribution: IntRange | FloatRange | Choice) -> Any:
    if isinstance(distribution, IntRange):
        step = 1 if distribution.log else distribution.step
        return trial.suggest_int(
            name, distribution.low, distribution.high, step=step, log=distribution.log
        )
    if isinstance(distribution, FloatRange):
        return trial.suggest_float(name, distribution.low, distribution.high, log=distribution.log)
    return trial.suggest_categorical(name, list(distribution.choices))


def record_runs(drawn: Drawn, runs: Mapping[str, str]) -> None:
    """Keep the MLflow runs of a trial on it (before it is told: a told trial is frozen), so a
    later run of the search can promote it."""
    for key, value in runs.items():
        drawn.trial.set_user_attr(key, value)


def tell(study: optuna.Study, number: int, state: TrialState, value: float | None) -> None:
    if state == TrialState.COMPLETE:
        study.tell(number, value)
    else:
        study.tell(number, state=state)


def best_trial(study: optuna.Study) -> FrozenTrial | None:
    """The complete trial with the best validation score (the first of equals), if any."""
    complete = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    if not complete:
        return None
    return study.best_trial


def finished_trials(study: optuna.Study) -> list[FrozenTrial]:
    return study.get_trials(deepcopy=False, states=FINISHED_STATES)
