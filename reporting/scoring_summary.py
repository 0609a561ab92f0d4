"""A scoring run's closing report: what was scored with which version, and what drifted."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from orchestration.config import PipelineConfig
from orchestration.step_table import SCORING_INPUT_STEP, SCORING_STEP
from steps.common.url_secrets import hide_password
from steps.contract import (
    DRIFT_MEASURE,
    DRIFT_METRIC_PREFIX,
    DRIFT_NOTE,
    DRIFTED_NOTE,
    HAS_PRICE_NOTE,
    INPUT_DIGEST_NOTE,
    MODEL_VERSION_NOTE,
    OUTPUT_NOTE,
    is_tracking_server,
)
from tasks.step_result import StepResult


@dataclass(frozen=True)
class ScoringSummary:
    parent_run_id: str
    score_run_id: str
    experiment_name: str
    tracking_uri: str
    registered_model: str
    alias: str
    model_version: str
    rows_scored: int
    # The absolute path the predictions were written to ("" when only the run's artifact).
    output: str
    has_price: bool
    # "sha256:<hex>" of the source bytes, and their count where get_data measured it.
    input_digest: str
    input_bytes: int | None
    threshold: float
    # Each profiled feature's drift score, by feature (empty when drift was not measured).
    scores: dict[str, float] = field(default_factory=dict)
    # The features over the threshold, the largest score first.
    drifted: list[str] = field(default_factory=list)
    # One line on the drift check (its largest score, or why it was not measured).
    drift_note: str = ""

    @property
    def drift_max(self) -> float | None:
        return max(self.scores.values()) if self.scores else None

    def headline(self) -> str:
        where = self.output or f"the scoring run's predictions artifact ({self.score_run_id})"
        drift = f"drifted: {', '.join(self.drifted)}" if self.drifted else "no drift"
        return (
            f"scored {self.rows_scored:,} listing(s) with {self.registered_model} version "
            f"{self.model_version} ({self.alias}); {drift}; predictions in {where}"
        )

    def drift_rows(self) -> list[dict[str, Any]]:
        """One row per feature, the largest score first (the drift report)."""
        return [
            {
                "feature": feature,
                "measure": DRIFT_MEASURE,
                "score": round(score, 4),
                "threshold": self.threshold,
                "drifted": score > self.threshold,
            }
            for feature, score in sorted(self.scores.items(), key=lambda item: -item[1])
        ]

    def render(self) -> str:
        lines = [
            "",
            "Scoring summary",
            f"rows scored: {self.rows_scored:,}",
            f"model: {self.registered_model} version {self.model_version} "
            f"(models:/{self.registered_model}@{self.alias})",
            f"output: {self.output or '(none: the scoring run artifact only)'}",
            f"price column present: {'yes' if self.has_price else 'no'}",
            f"input: {self.input_digest}",
            f"drift ({DRIFT_MEASURE}): {self.drift_note or 'not measured'}",
            f"drifted features: {', '.join(self.drifted) if self.drifted else 'none'}",
            f"MLflow scoring run: {self.score_run_id} (parent {self.parent_run_id}) in "
            f"experiment '{self.experiment_name}'",
            f"look at it all: {_ui_hint(self.tracking_uri)}",
        ]
        return "\n".join(lines) + "\n"


def _ui_hint(tracking_uri: str) -> str:
    uri = hide_password(tracking_uri)
    if is_tracking_server(uri):
        return uri
    return f"mlflow ui --backend-store-uri {uri}"


def drift_scores(metrics: Mapping[str, float]) -> dict[str, float]:
    """The per-feature drift scores among a scoring run's metrics."""
    return {
        key.removeprefix(DRIFT_METRIC_PREFIX): float(value)
        for key, value in metrics.items()
        if key.startswith(DRIFT_METRIC_PREFIX)
    }


def build_scoring_summary(
    cfg: PipelineConfig,
    results: Mapping[str, StepResult],
    parent_run_id: str,
    tracking_uri: str,
    experiment_name: str,
) -> ScoringSummary:
    """The report of a finished scoring flow, from its two steps' results alone."""
    scored = results[SCORING_STEP]
    source = results[SCORING_INPUT_STEP]
    notes = scored.notes
    scores = drift_scores(scored.metrics)
    threshold = cfg.scoring.drift_threshold
    drifted = [name for name in notes.get(DRIFTED_NOTE, "").split(",") if name]
    size = source.metrics.get("input_bytes")
    return ScoringSummary(
        parent_run_id=parent_run_id,
        score_run_id=scored.run_id,
        experiment_name=experiment_name,
        tracking_uri=tracking_uri,
        registered_model=cfg.main.registered_model,
        alias=cfg.scoring.alias or cfg.promotion.alias,
        model_version=notes.get(MODEL_VERSION_NOTE, ""),
        rows_scored=int(scored.metrics.get("rows_scored", 0)),
        output=notes.get(OUTPUT_NOTE, ""),
        has_price=notes.get(HAS_PRICE_NOTE) == "true",
        input_digest=notes.get(INPUT_DIGEST_NOTE, ""),
        input_bytes=int(size) if size is not None else None,
        threshold=threshold,
        scores=scores,
        drifted=drifted,
        drift_note=notes.get(DRIFT_NOTE, ""),
    )
