"""A search trial seen from its train step: report the validation score after each stage of a
staged fit, and learn whether to stop.

The flow asks the study for the trial and tells it the trial's end (complete, pruned, failed);
this step only adds intermediate values to the trial in the study's database and reads its
peers'. The rule is a percentile rule among trials of the same model (the study searches several
models at once, and a random forest's early score says nothing about a boosted model's): prune
when this trial's score at a stage is worse than `percentile` of the same model's completed
trials at that stage, once `startup_trials` of them exist and after `warmup_stages` stages.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np

from steps.contract import SEARCH_MODEL_PARAM, study_engine_kwargs
from steps.train.schema import TrialTarget

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class PruneVerdict:
    prune: bool
    reason: str = ""


def percentile_verdict(
    value: float, peers: list[float], stage: int, settings: TrialTarget, minimize: bool
) -> PruneVerdict:
    """Whether a score at `stage` is worse than `percentile` of its peers' scores there."""
    if stage < settings.warmup_stages:
        return PruneVerdict(False, f"stage {stage + 1} is within the warm-up")
    if len(peers) < max(settings.startup_trials, 1):
        return PruneVerdict(False, f"{len(peers)} finished peers at this stage")
    share = settings.percentile if minimize else 100.0 - settings.percentile
    threshold = float(np.percentile(peers, share))
    worse = value > threshold if minimize else value < threshold
    shown = f"{settings.metric} {value:.4g} at stage {stage + 1} of {settings.stages}"
    if not worse:
        return PruneVerdict(False, f"{shown} within the {settings.percentile:g}th percentile")
    return PruneVerdict(
        True,
        f"{shown} worse than the {settings.percentile:g}th percentile ({threshold:.4g}) of "
        f"{len(peers)} finished trials of the same model",
    )


class TrialReporter:
    """The trial in the study's database that this fit reports to."""

    def __init__(self, target: TrialTarget) -> None:
        import optuna

        optuna.logging.set_verbosity(optuna.logging.WARNING)
        self.target = target
        url = target.storage
        storage = optuna.storages.RDBStorage(url, engine_kwargs=study_engine_kwargs(url))
        study_id = storage.get_study_id_from_name(target.study_name)
        trial_id = storage.get_trial_id_from_study_id_trial_number(study_id, target.trial_number)
        self._study = optuna.load_study(study_name=target.study_name, storage=storage)
        self._trial = optuna.trial.Trial(self._study, trial_id)
        self._model = self._trial.params.get(SEARCH_MODEL_PARAM)
        self._minimize = self._study.direction == optuna.study.StudyDirection.MINIMIZE

    def _peers(self, stage: int) -> list[float]:
        import optuna

        completed = self._study.get_trials(
            deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,)
        )
        return [
            trial.intermediate_values[stage]
            for trial in completed
            if trial.params.get(SEARCH_MODEL_PARAM) == self._model
            and stage in trial.intermediate_values
        ]

    def report(self, value: float, stage: int) -> PruneVerdict:
        """Record the score at `stage` (0-based) and say whether the trial should stop."""
        self._trial.report(value, stage)
        verdict = percentile_verdict(value, self._peers(stage), stage, self.target, self._minimize)
        logger.info("trial %d: %s", self.target.trial_number, verdict.reason)
        return verdict
