"""Fit a price pipeline, in stages when it is a search trial whose model can warm-start.

Outside a search (or for a model that fits in one go, torch_lasso) this is `model.fit`. In a
trial of a model with a STAGED_BY hyperparameter (the forest's trees, the boosting iterations)
the preprocessing is fitted once, then the regressor grows stage by stage by warm start to the
configured count, and after each stage the validation score goes to the trial
(steps/train/trial_report.py). A pruned trial stops there: its model is the one fitted so far,
logged like any other, and the step says so (`note.pruned`, metric `pruned_at_stage`).

Warm start adds to the fitted regressor what a single fit would have built (scikit-learn draws
the same tree seeds, and boosting continues its own sequence; once boosting stops early on its
own, the stages end there), so a trial that is not pruned ends with the model a plain fit gives.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from sklearn.compose import TransformedTargetRegressor
from sklearn.pipeline import Pipeline

from steps.common.metrics import regression_metrics
from steps.contract import PRUNED_NOTE
from steps.train.model_schemas import ModelSchema
from steps.train.schema import TrialTarget

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class FitReport:
    """What the staged fit did: the score after each stage, and where it stopped if pruned."""

    stage_scores: tuple[tuple[int, float], ...] = ()  # (count fitted, validation score)
    pruned_at_stage: int | None = None
    reason: str = ""


def stage_counts(final: int, stages: int) -> list[int]:
    """Growing counts ending at `final`: `stages` equal shares (fewer when `final` is small)."""
    counts = sorted({max(1, round(final * (k + 1) / stages)) for k in range(stages)})
    return counts if counts[-1] == final else [*counts, final]


def fit_price_model(
    model: Pipeline,
    settings: ModelSchema,
    x: pd.DataFrame,
    y: np.ndarray,
    x_val: pd.DataFrame,
    y_val: np.ndarray,
    target: TrialTarget,
) -> FitReport:
    """Fit `model` on (x, y); in a trial of a staged model, report each stage's score on
    (x_val, y_val) and stop if the trial is pruned."""
    staged = settings.STAGED_BY
    if not target.reports or staged is None:
        model.fit(x, y)
        return FitReport()
    from steps.train.trial_report import TrialReporter

    reporter = TrialReporter(target)
    final = int(getattr(settings, staged))
    counts = stage_counts(final, target.stages)
    head = model.named_steps["regressor"]
    wrapped = isinstance(head, TransformedTargetRegressor)
    template = head.regressor if wrapped else head
    template.set_params(**{staged: counts[0]})
    model.fit(x, y)  # the preprocessing and the first stage
    fitted: Any = head.regressor_ if wrapped else head
    features = model[:-1].transform(x)
    fitted_y = head.func(y) if wrapped else y
    scores: list[tuple[int, float]] = []
    pruned: int | None = None
    reason = ""
    last = len(counts) - 1
    for stage, count in enumerate(counts):
        if stage:
            fitted.set_params(warm_start=True, **{staged: count})
            fitted.fit(features, fitted_y)
        score = float(regression_metrics(y_val, model.predict(x_val), "val")[target.metric])
        scores.append((count, score))
        verdict = reporter.report(score, stage)
        if getattr(fitted, "n_iter_", count) < count:
            break  # boosting stopped early on its own: a single fit would have ended here too
        if stage < last and verdict.prune:
            pruned, reason = stage, verdict.reason
            break
    fitted.set_params(warm_start=False)
    if wrapped:  # the settings as configured; the fitted regressor says how far it grew
        template.set_params(**{staged: final})
    return FitReport(tuple(scores), pruned, reason)


def report_stages(report: FitReport) -> None:
    """On the active run: the score after each stage (a metric history), and a pruned trial's
    stop (`note.pruned`, metric `pruned_at_stage`), which the search reads back."""
    if not report.stage_scores:
        return
    import mlflow

    from steps.common.outputs import publish_note

    for count, score in report.stage_scores:
        mlflow.log_metric("val_score_by_stage", score, step=count)
    if report.pruned_at_stage is not None:
        mlflow.log_metric("pruned_at_stage", report.pruned_at_stage + 1)
        publish_note(PRUNED_NOTE, report.reason)
        logger.info("pruned: %s", report.reason)
