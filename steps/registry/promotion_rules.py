"""Champion/challenger decisions as pure functions: the rules a reviewer reads and tests pin.

A candidate first passes the quality gate (absolute thresholds); then, if a champion exists,
it must beat the champion on the same test rows by more than the configured relative margin.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

from steps.common.errors import ConfigurationError

DIRECTIONS = ("minimize", "maximize")


@dataclass(frozen=True)
class Verdict:
    promote: bool
    reason: str
    candidate_score: float
    champion_score: float | None = None


def gate_failures(
    scores: Mapping[str, float], gate: Mapping[str, Mapping[str, float]]
) -> list[str]:
    """Each violated bound, in words; empty when the candidate passes."""
    failures = []
    for metric, bounds in sorted(gate.items()):
        value = scores.get(metric)
        if value is None or not math.isfinite(value):
            failures.append(f"{metric} is missing")
            continue
        if "min" in bounds and value < bounds["min"]:
            failures.append(f"{metric} {value:.4g} < minimum {bounds['min']:.4g}")
        if "max" in bounds and value > bounds["max"]:
            failures.append(f"{metric} {value:.4g} > maximum {bounds['max']:.4g}")
    return failures


def improvement(candidate: float, champion: float, direction: str) -> float:
    """Relative improvement of the candidate over the champion (positive is better)."""
    if direction not in DIRECTIONS:
        raise ConfigurationError(f"promotion.direction {direction!r}; allowed: {DIRECTIONS}")
    gain = champion - candidate if direction == "minimize" else candidate - champion
    return gain / max(abs(champion), 1e-12)


def decide(
    candidate: Mapping[str, float],
    champion: Mapping[str, float] | None,
    *,
    metric: str,
    direction: str,
    min_relative_improvement: float,
    gate: Mapping[str, Mapping[str, float]],
) -> Verdict:
    """Whether the candidate takes the champion alias, and why, in one sentence."""
    if metric not in candidate:
        raise ConfigurationError(
            f"promotion.metric {metric!r} is not a score; scores are {sorted(candidate)}"
        )
    score = candidate[metric]
    failures = gate_failures(candidate, gate)
    if failures:
        return Verdict(False, "fails the quality gate: " + "; ".join(failures), score)
    if champion is None:
        return Verdict(True, "first model: passes the quality gate and no champion exists", score)
    rival = champion[metric]
    gain = improvement(score, rival, direction)
    compared = (
        f"{metric} {score:.4g} vs champion {rival:.4g} on the same test rows: "
        f"{gain:+.2%} (margin {min_relative_improvement:.2%})"
    )
    if gain > min_relative_improvement:
        return Verdict(True, f"beats the champion: {compared}", score, rival)
    return Verdict(False, f"does not beat the champion: {compared}", score, rival)
