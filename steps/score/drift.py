"""How far the listings being scored are from the training data, feature by feature: PSI.

The population stability index of one feature compares the share of rows in each bucket of
its reference profile (steps/score/profile.py) with the share of the scored rows in the same
buckets:

    PSI = sum over buckets of (actual - expected) * ln(actual / expected)

It is 0 for identical shares, symmetric in the two, and grows with any shift, whichever way.
The usual reading (Siddiqi, *Credit Risk Scorecards*, 2006; Yurdakul, *Statistical Properties
of Population Stability Index*, 2018): below 0.1 no real change, 0.1 to 0.25 a moderate shift
worth a look, above 0.25 a significant one, the default threshold (`scoring.drift_threshold`).
A bucket empty on one side would make the logarithm infinite, so both sides get PSI_EPSILON
added to every bucket and are renormalized first; an empty bucket then costs a large but
finite amount. On a few thousand rows the sampling noise alone stays near
(buckets - 1) * (1/n_reference + 1/n_scored), a few hundredths.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from numpy.typing import ArrayLike

from steps.contract import DRIFT_MEASURE
from steps.score.profile import ReferenceProfile

MEASURE = DRIFT_MEASURE
PSI_EPSILON = 1e-4


def psi(expected: ArrayLike, actual: ArrayLike, epsilon: float = PSI_EPSILON) -> float:
    """The PSI of two share vectors over the same buckets (each summing to more than 0)."""
    reference = np.asarray(expected, dtype=float)
    observed = np.asarray(actual, dtype=float)
    if reference.shape != observed.shape or reference.ndim != 1 or reference.size == 0:
        raise ValueError(
            f"PSI needs two share vectors over the same buckets, got {reference.shape} "
            f"and {observed.shape}"
        )
    if epsilon <= 0 or not math.isfinite(epsilon):
        raise ValueError(f"epsilon must be a positive number, got {epsilon}")
    for label, shares in (("expected", reference), ("actual", observed)):
        if not np.isfinite(shares).all() or (shares < 0).any() or shares.sum() <= 0:
            raise ValueError(f"{label} shares must be finite, non-negative and not all 0")
    reference = reference / reference.sum() + epsilon
    observed = observed / observed.sum() + epsilon
    reference /= reference.sum()
    observed /= observed.sum()
    return float(np.sum((observed - reference) * np.log(observed / reference)))


@dataclass(frozen=True)
class FeatureDrift:
    """One feature's drift score against its threshold (a row of drift.json)."""

    feature: str
    score: float
    threshold: float
    measure: str = MEASURE

    @property
    def drifted(self) -> bool:
        return self.score > self.threshold

    def as_dict(self) -> dict[str, Any]:
        return {
            "feature": self.feature,
            "measure": self.measure,
            "score": self.score,
            "threshold": self.threshold,
            "drifted": self.drifted,
        }


def feature_drift(
    profile: ReferenceProfile, frame: pd.DataFrame, threshold: float
) -> list[FeatureDrift]:
    """The PSI of every profiled feature of `frame` (at least one row); a feature the frame
    lacks counts as missing in every row."""
    if frame.empty:
        raise ValueError("drift needs at least one scored row")
    scores = []
    for name, feature in profile.features.items():
        column = frame[name] if name in frame else pd.Series([None] * len(frame), dtype=object)
        score = psi(feature.expected(), feature.observed(column))
        scores.append(FeatureDrift(name, score, threshold))
    return scores


def drifted_features(scores: Sequence[FeatureDrift]) -> list[str]:
    """The features over their threshold, the largest score first."""
    over = [score for score in scores if score.drifted]
    return [score.feature for score in sorted(over, key=lambda s: (-s.score, s.feature))]
