"""A sweep's closing report: every variant's scores side by side, the winner, and the pipeline
summary of the shared steps, the winner's training and the promotion."""

from __future__ import annotations

from dataclasses import dataclass, field

from reporting.summary import PipelineSummary


@dataclass(frozen=True)
class VariantLine:
    """One variant as the report shows it."""

    index: int
    label: str
    model: str
    run_id: str
    # "ran", "cached" (both steps stood in by unchanged runs) or "failed at <step>".
    status: str
    selection_score: float | None
    test_metrics: dict[str, float] = field(default_factory=dict)
    wall_seconds: float = 0.0
    error: str | None = None
    best: bool = False


@dataclass(frozen=True)
class SweepSummary:
    pipeline: PipelineSummary
    variants: list[VariantLine]
    # The validation score that chose the winner (e.g. val_mae) and whether lower is better.
    selection_metric: str
    minimize: bool
    # Wall time of the parallel part: first variant submitted to last variant evaluated.
    variants_seconds: float
    runner: str
    repeats: list[str] = field(default_factory=list)
    # Lines about how the variants came about (a search: its study and trials).
    notes: list[str] = field(default_factory=list)

    @property
    def best(self) -> VariantLine | None:
        return next((line for line in self.variants if line.best), None)

    def headline(self) -> str:
        best = self.best
        chosen = (
            f"best {best.label} ({self.selection_metric}={_fmt(best.selection_score)})"
            if best
            else "no winner"
        )
        count = f"{len(self.variants)} variant{'' if len(self.variants) == 1 else 's'}"
        return f"{count} in {self.variants_seconds:.1f} s; {chosen}; {self.pipeline.headline()}"

    def table(self) -> list[str]:
        """The variants table, best first in the eye: a star marks it."""
        metric = self.selection_metric
        header = (
            f"  {'variant':<44}{'model':<24}{metric:>10}{'test_mae':>10}{'test_r2':>9}"
            f"{'wall s':>9}  status"
        )
        lines = [header, "-" * len(header)]
        for line in self.variants:
            mark = "*" if line.best else " "
            lines.append(
                f"{mark} {_clip(line.label, 43):<44}{line.model:<24}"
                f"{_fmt(line.selection_score):>10}{_fmt(line.test_metrics.get('test_mae')):>10}"
                f"{_fmt(line.test_metrics.get('test_r2')):>9}{line.wall_seconds:>9.1f}  "
                f"{line.status}"
            )
        return lines

    def render(self) -> str:
        direction = "lower" if self.minimize else "higher"
        lines = [
            "",
            f"Sweep: {len(self.variants)} variant{'' if len(self.variants) == 1 else 's'} on "
            f"{self.runner}, "
            f"{self.variants_seconds:.1f} s for all of them",
            *self.table(),
        ]
        best = self.best
        if best is not None:
            lines.append(
                f"best on the validation split ({self.selection_metric}, {direction} is "
                f"better): {best.label} (variant run {best.run_id})"
            )
        lines += self.notes
        for line in self.variants:
            if line.error:
                lines.append(f"variant {line.label}: {line.error}")
        if self.repeats:
            lines.append(
                f"trained once (same settings as another variant): {'; '.join(self.repeats)}"
            )
        return "\n".join(lines) + "\n" + self.pipeline.render()


def _fmt(value: float | None) -> str:
    """Errors in dollars to the cent, shares (R²) to four places."""
    if value is None:
        return ""
    return f"{value:.2f}" if abs(value) >= 10 else f"{value:.4f}"


def _clip(text: str, width: int) -> str:
    return text if len(text) <= width else text[: width - 1] + "…"
