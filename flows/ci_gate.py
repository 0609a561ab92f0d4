"""The CI gate: every push trains, gates and, on the main branch only, promotes.

Run it as `python -m flows.ci_gate [hydra overrides...]` (`make ci-train ARGS="..."`) against
whatever `MLFLOW_TRACKING_URI` points to. It runs `train_pipeline`; off the main branch with
`promotion.dry_run=true` (the same verdict, nothing registered, no alias moved). It prints a
markdown report (candidate and champion scores, the verdict, the runs) and writes it to
`ci.report_path` (`$CI_REPORT_PATH`, default ci-report.md) and, when set, appends it to
`$GITHUB_STEP_SUMMARY`.

Exit codes: 0 the candidate is promoted, would be (dry run), or is already the champion;
1 it fails the quality gate, does not beat the champion, or the pipeline failed; 2 the
configuration cannot run. The `ci_gate` Prefect flow (flows/ci_gate.py:ci_gate) is the same
gate for a deployment: give it `overrides=["ci.branch=main"]` to promote (any other branch
dry-runs) and `fail_on_refusal=True` so that a refused candidate fails the flow run.
"""

from __future__ import annotations

import logging
import os
import subprocess
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from urllib.parse import urlparse

import mlflow
from prefect import flow, get_run_logger
from prefect.artifacts import create_markdown_artifact

from flows.cli import Command, run_command
from flows.train_pipeline import PipelineError, train_pipeline
from orchestration.config import CIConfig, ConfigError, PipelineConfig
from orchestration.runtime import compose
from orchestration.step_table import PROMOTION_STEP
from reporting.summary import PipelineSummary
from steps.common.url_secrets import redact_url
from steps.contract import (
    CHAMPION_NOTE,
    EXIT_BAD_CONFIG,
    EXIT_BUG,
    EXIT_OK,
    OUTCOME_ALREADY_CHAMPION,
    OUTCOME_PROMOTED,
    VERDICT_NOTE,
    PromotionRecord,
    run_page_url,
)
from tasks.step_failure import StepFailed

logger = logging.getLogger(__name__)

EXIT_PASSED = EXIT_OK
EXIT_REFUSED = EXIT_BUG
EXIT_CONFIG = EXIT_BAD_CONFIG

# The override that makes the promotion a dry run (a setting, not a tag).
_DRY_RUN_KEY = "promotion.dry_run"
_HEADS = "refs/heads/"


class GateRefused(RuntimeError):
    """The candidate did not pass (raised by the flow only with fail_on_refusal=True)."""


@dataclass(frozen=True)
class Branch:
    """The branch being built, where that came from, and whether it promotes."""

    name: str | None
    source: str
    is_main: bool


def git_branch(cwd: Path | None = None) -> str | None:
    """`git rev-parse --abbrev-ref HEAD`; None for a detached HEAD or outside a repository."""
    try:
        completed = subprocess.run(
            ["git", "rev-parse", "--abbrev-ref", "HEAD"],
            cwd=cwd,
            capture_output=True,
            text=True,
            timeout=10,
            check=False,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    name = completed.stdout.strip()
    return name if completed.returncode == 0 and name and name != "HEAD" else None


def detect_branch(
    ci: CIConfig,
    env: Mapping[str, str],
    git: Callable[[], str | None] = git_branch,
) -> Branch:
    """`ci.branch`, else the first CI variable set, else git; unknown counts as not main."""
    found: tuple[str | None, str] = (None, "none (detached HEAD or no git)")
    if ci.branch:
        found = (ci.branch, "ci.branch")
    else:
        for variable in ci.branch_env_vars:
            if env.get(variable, "").strip():
                found = (env[variable].strip(), variable)
                break
        else:
            name = git()
            if name:
                found = (name, "git")
    name, source = found
    if name and name.startswith(_HEADS):
        name = name[len(_HEADS) :]
    return Branch(name=name, source=source, is_main=name == ci.main_branch)


def pipeline_overrides(overrides: Sequence[str], branch: Branch) -> list[str]:
    """Off the main branch promotion is always a dry run, whatever the overrides say."""
    if branch.is_main:
        return list(overrides)
    kept = [o for o in overrides if o.lstrip("+").split("=", 1)[0] != _DRY_RUN_KEY]
    return [*kept, f"{_DRY_RUN_KEY}=true"]


@dataclass(frozen=True)
class RunLink:
    label: str
    run_id: str
    url: str | None = None


@dataclass(frozen=True)
class GateReport:
    """What the gate concluded and everything its markdown report shows."""

    branch: Branch
    main_branch: str
    dry_run: bool
    # The promotion's outcome (steps/contract.py OUTCOMES); None when the pipeline stopped
    # before the promotion step reached a verdict.
    outcome: str | None
    verdict: str
    metric: str
    direction: str
    tracking_uri: str
    experiment_name: str
    champion_note: str = ""
    candidate_scores: dict[str, float] = field(default_factory=dict)
    champion_scores: dict[str, float] = field(default_factory=dict)
    champion_version: str | None = None
    candidate_version: str | None = None
    runs: list[RunLink] = field(default_factory=list)
    report_paths: list[str] = field(default_factory=list)

    @property
    def exit_code(self) -> int:
        return EXIT_PASSED if PromotionRecord(self.outcome).passes else EXIT_REFUSED

    def title(self) -> str:
        if self.outcome is None:
            return "PIPELINE FAILED"
        if self.outcome == OUTCOME_ALREADY_CHAMPION:
            return "ALREADY THE CHAMPION"
        passed = self.outcome == OUTCOME_PROMOTED
        if self.dry_run:
            return "WOULD BE PROMOTED (dry run)" if passed else "WOULD NOT BE PROMOTED (dry run)"
        return "PROMOTED" if passed else "NOT PROMOTED"


def run_url(tracking_uri: str, experiment_id: str, run_id: str) -> str | None:
    """The MLflow UI page of a run, for a tracking server (never its credentials); None for a
    local store, whose UI a public report cannot link to."""
    uri = redact_url(tracking_uri)
    if urlparse(uri).scheme not in ("http", "https"):
        return None
    return run_page_url(uri, experiment_id, run_id)


def _fmt(value: float | None) -> str:
    return "-" if value is None else f"{value:.4g}"


def render_report(report: GateReport) -> str:
    """The markdown a CI system publishes (GitHub's job summary, a merge-request note)."""
    branch = f"`{report.branch.name}`" if report.branch.name else "unknown"
    mode = (
        "**dry run**: nothing registered, no alias moved"
        if report.dry_run
        else "**promotion**: the registry is updated"
    )
    lines = [
        f"## Model CI gate: {report.title()}",
        "",
        f"Branch {branch} (from {report.branch.source}; main branch `{report.main_branch}`): "
        f"{mode}.",
        "",
        f"**Verdict:** {report.verdict}",
    ]
    if report.champion_note:
        lines.append(f"**Champion:** {report.champion_note}")
    if report.candidate_scores or report.champion_scores:
        better = "lower" if report.direction == "minimize" else "higher"
        champion = (
            f"champion (version {report.champion_version})"
            if report.champion_version
            else "champion"
        )
        candidate = (
            f"candidate (version {report.candidate_version})"
            if report.candidate_version
            else "candidate"
        )
        lines += ["", f"| metric | {candidate} | {champion} |", "| --- | ---: | ---: |"]
        for metric in sorted(set(report.candidate_scores) | set(report.champion_scores)):
            label = f"**{metric}** ({better} is better)" if metric == report.metric else metric
            lines.append(
                f"| {label} | {_fmt(report.candidate_scores.get(metric))} "
                f"| {_fmt(report.champion_scores.get(metric))} |"
            )
    if report.runs:
        lines += ["", f"**MLflow runs** (experiment `{report.experiment_name}`):", ""]
        for run in report.runs:
            where = f"[`{run.run_id}`]({run.url})" if run.url else f"`{run.run_id}`"
            lines.append(f"- {run.label}: {where}")
        if not any(run.url for run in report.runs):
            lines += [
                "",
                "Browse them with "
                f"`mlflow ui --backend-store-uri {redact_url(report.tracking_uri)}`",
            ]
    outcome = "passes" if report.exit_code == EXIT_PASSED else "fails"
    lines += ["", f"Exit code {report.exit_code}: the push {outcome} the gate."]
    return "\n".join(lines) + "\n"


def write_report(text: str, path: Path, env: Mapping[str, str]) -> list[Path]:
    """The report file (replaced) and $GITHUB_STEP_SUMMARY (appended to) when it is set."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    written = [path]
    summary = env.get("GITHUB_STEP_SUMMARY", "").strip()
    if summary and Path(summary).resolve() != path.resolve():
        with open(summary, "a", encoding="utf-8") as handle:
            handle.write(text + "\n")
        written.append(Path(summary))
    return written


def _metrics(metrics: Mapping[str, float], prefix: str) -> dict[str, float]:
    return {
        key[len(prefix) :]: value
        for key, value in metrics.items()
        if key.startswith(f"{prefix}test_")
    }


def gate_report(
    cfg: PipelineConfig,
    branch: Branch,
    dry_run: bool,
    summary: PipelineSummary | None,
    error: str | None = None,
) -> GateReport:
    """Read promote's verdict and both sets of scores back from its MLflow run."""
    base = GateReport(
        branch=branch,
        main_branch=cfg.ci.main_branch,
        dry_run=dry_run,
        outcome=None,
        verdict=f"NOT PROMOTED: the pipeline failed: {error}",
        metric=cfg.promotion.metric,
        direction=cfg.promotion.direction,
        tracking_uri=mlflow.get_tracking_uri(),
        experiment_name=cfg.main.experiment_name,
    )
    if summary is None:
        return base
    client = mlflow.MlflowClient(tracking_uri=summary.tracking_uri)
    parent = client.get_run(summary.parent_run_id)
    experiment_id = parent.info.experiment_id

    def link(label: str, run_id: str) -> RunLink:
        return RunLink(label, run_id, run_url(summary.tracking_uri, experiment_id, run_id))

    runs = [link("pipeline", summary.parent_run_id)]
    runs += [link(line.step, line.run_id) for line in summary.steps if line.step != PROMOTION_STEP]
    promote = next((line for line in summary.steps if line.step == PROMOTION_STEP), None)
    if promote is None:
        raise ConfigError(_NEEDS_PROMOTION)
    run = client.get_run(promote.run_id)
    runs.append(link(PROMOTION_STEP, promote.run_id))
    record = PromotionRecord.from_tags(run.data.tags)
    return replace(
        base,
        outcome=record.outcome,
        verdict=summary.promotion_notes.get(VERDICT_NOTE, "no verdict"),
        champion_note=summary.promotion_notes.get(CHAMPION_NOTE, ""),
        candidate_scores=_metrics(run.data.metrics, "candidate_"),
        champion_scores=_metrics(run.data.metrics, "champion_"),
        champion_version=record.previous_champion,
        candidate_version=record.candidate_version,
        tracking_uri=summary.tracking_uri,
        runs=runs,
    )


_NEEDS_PROMOTION = (
    f"the CI gate needs the {PROMOTION_STEP} step: add {PROMOTION_STEP} to main.steps"
)


def gate_config(overrides: Sequence[str]) -> PipelineConfig:
    """The validated configuration, refused (ConfigError) when it has no promotion to gate."""
    cfg = compose(overrides)
    if PROMOTION_STEP not in cfg.main.steps:
        raise ConfigError(_NEEDS_PROMOTION)
    return cfg


@flow(name="ci_gate")
def ci_gate(
    overrides: list[str] | None = None,
    fail_on_refusal: bool = False,
) -> GateReport:
    """Train and gate; promote only on the main branch. The report is written either way.

    A deployment sets `fail_on_refusal=True` so that a refused candidate fails the flow run.
    """
    log = get_run_logger()
    overrides = list(overrides or [])
    cfg = gate_config(overrides)
    branch = detect_branch(cfg.ci, os.environ)
    dry_run = cfg.promotion.dry_run or not branch.is_main
    log.info(
        "branch %s (from %s), main branch %s: %s",
        branch.name,
        branch.source,
        cfg.ci.main_branch,
        "dry run" if dry_run else "promotion",
    )
    try:
        summary = train_pipeline(overrides=pipeline_overrides(overrides, branch))
        report = gate_report(cfg, branch, dry_run, summary)
    except (StepFailed, PipelineError) as error:
        report = gate_report(cfg, branch, dry_run, None, error=str(error))
    text = render_report(report)
    written = write_report(text, Path(cfg.ci.report_path).expanduser(), os.environ)
    report = replace(report, report_paths=[str(path) for path in written])
    create_markdown_artifact(
        key="ci-gate-report", markdown=text, description="The CI gate's verdict and scores"
    )
    log.info("CI gate: %s (exit code %d)", report.title(), report.exit_code)
    if fail_on_refusal and report.exit_code != EXIT_PASSED:
        raise GateRefused(f"{report.title()}: {report.verdict}")
    return report


def main(argv: Sequence[str] | None = None) -> int:
    def body(cfg: PipelineConfig) -> int:
        report = ci_gate(overrides=overrides)
        sys.stdout.write(render_report(report))
        sys.stdout.write(f"(report written to {', '.join(report.report_paths)})\n")
        return report.exit_code

    overrides = list(sys.argv[1:] if argv is None else argv)
    command = Command("ci gate", body, start=_start, doc=__doc__ or "")
    return run_command(command, overrides)


def _start(overrides: list[str]) -> PipelineConfig:
    if not os.environ.get("MLFLOW_TRACKING_URI", "x").strip():
        # An unset CI variable often arrives as an empty string: it means the default store.
        del os.environ["MLFLOW_TRACKING_URI"]
    return gate_config(overrides)


if __name__ == "__main__":
    sys.exit(main())
