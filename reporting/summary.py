"""The pipeline's closing report: what each step did, the scores, and where to look next."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from orchestration.config import PipelineConfig
from orchestration.step_table import ENTRY_POINT_SPECS, EVALUATION_STEP, PROMOTION_STEP
from steps.common.url_secrets import hide_password
from steps.contract import CHAMPION_NOTE, VERDICT_NOTE, is_tracking_server
from tasks.step_result import StepResult


@dataclass(frozen=True)
class StepLine:
    step: str
    run_id: str
    reused: bool
    wall_seconds: float
    work_seconds: float | None
    rows_in: int | None
    rows_out: int | None
    cached: bool = False


@dataclass(frozen=True)
class PipelineSummary:
    parent_run_id: str
    experiment_name: str
    tracking_uri: str
    steps: list[StepLine] = field(default_factory=list)
    test_metrics: dict[str, float] = field(default_factory=dict)
    registered_model: str | None = None
    registered_version: str | None = None
    alias: str | None = None
    # One-line results of the promotion: its verdict and the champion afterwards.
    promotion_notes: dict[str, str] = field(default_factory=dict)

    @property
    def overhead_seconds(self) -> list[float]:
        return [
            line.wall_seconds - line.work_seconds
            for line in self.steps
            if not (line.reused or line.cached) and line.work_seconds is not None
        ]

    def headline(self) -> str:
        """One line for logs: the scores and where the model went."""
        scores = ", ".join(f"{k}={v:.4g}" for k, v in sorted(self.test_metrics.items()))
        where = self.promotion_notes.get(VERDICT_NOTE) or (
            f"candidate {self.registered_model} version {self.registered_version}"
            if self.registered_version
            else "no model registered"
        )
        return f"{scores or 'no test metrics'}; {where}; parent run {self.parent_run_id}"

    def ui_hint(self) -> str:
        """A tracking server is its own UI (open it in a browser); a local store needs `mlflow ui`.
        A password in the URI is never printed."""
        uri = hide_password(self.tracking_uri)
        if is_tracking_server(uri):
            return uri
        return f"mlflow ui --backend-store-uri {uri}"

    def render(self) -> str:
        header = f"{'step':<16}{'run':<10}{'rows in':>10}{'rows out':>10}{'wall s':>9}{'work s':>9}"
        lines = ["", "Pipeline summary", header, "-" * len(header)]
        for line in self.steps:
            lines.append(
                f"{line.step:<16}{line.run_id[:8]:<10}{_num(line.rows_in):>10}"
                f"{_num(line.rows_out):>10}" + _timing(line)
            )
        if self.overhead_seconds:
            mean = sum(self.overhead_seconds) / len(self.overhead_seconds)
            lines.append(f"orchestration overhead per step (wall - work): {mean:.2f} s on average")
        if self.test_metrics:
            scores = ", ".join(f"{k}={v:.4g}" for k, v in sorted(self.test_metrics.items()))
            lines.append(f"test metrics: {scores}")
        if self.registered_version:
            lines.append(
                f"registered model: {self.registered_model} version {self.registered_version} "
                f"(the candidate; champion alias: models:/{self.registered_model}@{self.alias})"
            )
        for key in (VERDICT_NOTE, CHAMPION_NOTE):
            if key in self.promotion_notes:
                lines.append(f"promotion {key}: {self.promotion_notes[key]}")
        lines.append(
            f"MLflow parent run: {self.parent_run_id} in experiment '{self.experiment_name}'"
        )
        lines.append(f"look at it all: {self.ui_hint()}")
        return "\n".join(lines) + "\n"


def _timing(line: StepLine) -> str:
    """Wall and work seconds of a step that ran; for one that did not, why not."""
    if line.reused:
        return "   reused (not in steps)"
    if line.cached:
        return "   cached (unchanged)"
    return f"{line.wall_seconds:>9.1f}{_sec(line.work_seconds):>9}"


def _num(value: int | None) -> str:
    return "" if value is None else f"{value:,}"


def _sec(value: float | None) -> str:
    return "" if value is None else f"{value:.1f}"


def test_scores(results: Mapping[str, StepResult]) -> dict[str, float]:
    """The test-split metrics the evaluation step reported (none when it did not run)."""
    evaluated = results.get(EVALUATION_STEP)
    metrics = evaluated.metrics if evaluated else {}
    return {key: value for key, value in metrics.items() if key.startswith("test_")}


def step_line(result: StepResult) -> StepLine:
    spec = ENTRY_POINT_SPECS.get(result.step)
    inputs, outputs = spec.rows if spec else ("", "")
    metrics = result.metrics

    def rows(key: str) -> int | None:
        return int(metrics[key]) if key in metrics else None

    return StepLine(
        step=result.step,
        run_id=result.run_id,
        reused=result.reused,
        cached=result.cached,
        wall_seconds=result.wall_seconds,
        work_seconds=metrics.get("work_seconds"),
        rows_in=rows(inputs) if inputs else None,
        rows_out=rows(outputs) if outputs else None,
    )


def build_summary(
    cfg: PipelineConfig, results: dict[str, StepResult], parent_run_id: str, tracking_uri: str
) -> PipelineSummary:
    """The report of a run's steps (in `main.steps` order), test scores and promotion."""
    promoted = results.get(PROMOTION_STEP)
    version = None
    if promoted and "model_version" in promoted.outputs:
        version = promoted.outputs["model_version"].rsplit("/", 1)[-1]
    return PipelineSummary(
        parent_run_id=parent_run_id,
        experiment_name=cfg.main.experiment_name,
        tracking_uri=tracking_uri,
        steps=[step_line(results[name]) for name in cfg.main.steps if name in results],
        test_metrics=test_scores(results),
        registered_model=cfg.main.registered_model if version else None,
        registered_version=version,
        alias=cfg.promotion.alias if version else None,
        promotion_notes=dict(promoted.notes) if promoted else {},
    )
