"""What a pipeline run publishes to Prefect: a markdown summary with links to its MLflow runs,
a table of its steps and the evaluation plot; and what a scoring run publishes: its summary and
the drift report.

They show on the flow run's Artifacts tab in the Prefect UI, under fixed keys so the UI also
lists every run's version of them (`pipeline-summary`, `pipeline-steps`, `evaluation-plot`,
`scoring-summary`, `drift-report`).
"""

from __future__ import annotations

import base64
import logging
import os
import tempfile
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

from prefect.artifacts import (
    create_image_artifact,
    create_markdown_artifact,
    create_table_artifact,
)

from orchestration.step_table import EVALUATION_STEP
from reporting.scoring_summary import ScoringSummary
from reporting.summary import PipelineSummary, StepLine
from reporting.sweep_summary import SweepSummary
from steps.common.url_secrets import hide_password, redact_url
from steps.contract import (
    CHAMPION_NOTE,
    EVALUATION_PLOT_FILE,
    VERDICT_NOTE,
    is_tracking_server,
    run_page_url,
)

logger = logging.getLogger(__name__)

SUMMARY_KEY = "pipeline-summary"
STEPS_KEY = "pipeline-steps"
PLOT_KEY = "evaluation-plot"
# The step whose run holds the evaluation plot.
SWEEP_SUMMARY_KEY = "sweep-summary"
SWEEP_VARIANTS_KEY = "sweep-variants"
SCORING_SUMMARY_KEY = "scoring-summary"
DRIFT_REPORT_KEY = "drift-report"
# Where an MLflow UI for a non-HTTP store (SQLite, files) is expected: `mlflow ui` defaults.
DEFAULT_MLFLOW_UI = "http://127.0.0.1:5000"


def mlflow_ui_base(tracking_uri: str) -> str:
    """The MLflow UI's address: the tracking server itself, else MLFLOW_UI_URL or mlflow ui's."""
    if is_tracking_server(tracking_uri):
        return redact_url(tracking_uri).rstrip("/")  # a link never carries a password
    return os.environ.get("MLFLOW_UI_URL", DEFAULT_MLFLOW_UI).rstrip("/")


def has_ui(tracking_uri: str) -> bool:
    """Whether an MLflow UI is known to serve this store: a tracking server is its own UI;
    a local store (SQLite, files) has one only where MLFLOW_UI_URL says `mlflow ui` runs."""
    return is_tracking_server(tracking_uri) or bool(os.environ.get("MLFLOW_UI_URL"))


def run_link(tracking_uri: str, experiment_id: str, run_id: str) -> str:
    """A run's page in the MLflow UI that serves this tracking store."""
    return run_page_url(mlflow_ui_base(tracking_uri), experiment_id, run_id)


def _run_ref(tracking_uri: str, experiment_id: str, run_id: str, label: str | None = None) -> str:
    """A markdown link to the run where an MLflow UI serves the store, else its id."""
    if has_ui(tracking_uri):
        return f"[{label or run_id}]({run_link(tracking_uri, experiment_id, run_id)})"
    return f"`{label or run_id}`"


def step_rows(summary: PipelineSummary) -> list[dict[str, Any]]:
    """One row per step: how it ran, its durations and row counts (None where not applicable)."""
    return [
        {
            "step": line.step,
            "status": _status(line),
            "wall_s": round(line.wall_seconds, 2) if _ran(line) else None,
            "work_s": round(line.work_seconds, 2)
            if _ran(line) and line.work_seconds is not None
            else None,
            "rows_in": line.rows_in,
            "rows_out": line.rows_out,
            "mlflow_run": line.run_id,
        }
        for line in summary.steps
    ]


def summary_markdown(summary: PipelineSummary, experiment_id: str) -> str:
    """Metrics, the champion/challenger verdict, the registered version and MLflow links."""
    uri = summary.tracking_uri
    lines = ["# Pipeline run", ""]
    if summary.test_metrics:
        lines += ["| metric | value |", "| --- | --- |"]
        lines += [f"| {k} | {v:.4g} |" for k, v in sorted(summary.test_metrics.items())]
        lines.append("")
    verdict = summary.promotion_notes.get(VERDICT_NOTE)
    lines.append(f"**Champion/challenger verdict:** {verdict or 'no promotion in this run'}")
    if CHAMPION_NOTE in summary.promotion_notes:
        lines.append(f"\n**Champion now:** {summary.promotion_notes[CHAMPION_NOTE]}")
    if summary.registered_version:
        lines.append(
            f"\n**Registered model:** `{summary.registered_model}` version "
            f"{summary.registered_version} (alias: `models:/{summary.registered_model}@"
            f"{summary.alias}`)"
        )
    else:
        lines.append("\n**Registered model:** none in this run")
    lines += [
        "",
        "## MLflow runs",
        "",
        f"- pipeline (parent): {_run_ref(uri, experiment_id, summary.parent_run_id)}",
    ]
    lines += [
        f"- {line.step}: {_run_ref(uri, experiment_id, line.run_id)}"
        + ("" if _ran(line) else f" ({_status(line)})")
        for line in summary.steps
    ]
    if not is_tracking_server(uri):
        lines += ["", _open_local_ui(uri, experiment_id, summary.parent_run_id)]
    lines += ["", "```", summary.render().strip("\n"), "```", ""]
    return "\n".join(lines)


def _open_local_ui(tracking_uri: str, experiment_id: str, parent_run_id: str) -> str:
    """How to see a local store's runs: start `mlflow ui` on it (links need MLFLOW_UI_URL)."""
    store = hide_password(tracking_uri)
    base = mlflow_ui_base(tracking_uri)
    if has_ui(tracking_uri):
        return f"Links open the MLflow UI at {base} (MLFLOW_UI_URL) on `{store}`."
    return (
        f"This run's store is local (`{store}`): open its runs with "
        f"`mlflow ui --backend-store-uri {store}`, then "
        f"{run_page_url(base, experiment_id, parent_run_id)} (set MLFLOW_UI_URL to have the "
        "ids above linked)."
    )


def plot_url(tracking_uri: str, run_id: str) -> str:
    """The evaluation plot as the tracking server serves it to a browser."""
    query = urlencode({"path": EVALUATION_PLOT_FILE, "run_uuid": run_id})
    return f"{mlflow_ui_base(tracking_uri)}/get-artifact?{query}"  # no password in a link


def plot_markdown(png: bytes, run_ref: str) -> str:
    """The plot inline (a data URI: a local store has no address a browser could load)."""
    encoded = base64.b64encode(png).decode("ascii")
    return (
        f"# Evaluation: predicted vs actual price\n\nTest split, from the evaluate run "
        f"{run_ref}.\n\n![predicted vs actual](data:image/png;base64,{encoded})\n"
    )


def publish_evaluation_plot(summary: PipelineSummary, experiment_id: str) -> None:
    """The evaluate run's plot as a Prefect artifact: an image artifact pointing at the
    tracking server, or, for a local store, a markdown artifact that carries the picture."""
    line = next((line for line in summary.steps if line.step == EVALUATION_STEP), None)
    if line is None:
        return
    uri = summary.tracking_uri
    if is_tracking_server(uri):
        create_image_artifact(
            image_url=plot_url(uri, line.run_id),
            key=PLOT_KEY,
            description=f"Predicted vs actual price on the test split (run {line.run_id})",
        )
        return
    import mlflow
    from mlflow.exceptions import MlflowException

    with tempfile.TemporaryDirectory(prefix="evaluation-plot-") as scratch:
        try:
            path = mlflow.artifacts.download_artifacts(
                run_id=line.run_id, artifact_path=EVALUATION_PLOT_FILE, dst_path=scratch
            )
            png = Path(path).read_bytes()
        except (MlflowException, OSError) as error:
            # The run's other artifacts stand; a missing picture is no reason to fail it.
            logger.warning("no evaluation plot for run %s: %s", line.run_id, error)
            return
    create_markdown_artifact(
        key=PLOT_KEY,
        markdown=plot_markdown(png, _run_ref(uri, experiment_id, line.run_id)),
        description="Predicted vs actual price on the test split",
    )


def publish_run_artifacts(summary: PipelineSummary, experiment_id: str) -> None:
    """Create the run's markdown summary, its step table and its evaluation plot (inside a
    flow run)."""
    create_markdown_artifact(
        key=SUMMARY_KEY,
        markdown=summary_markdown(summary, experiment_id),
        description="Test metrics, promotion verdict, registered version and MLflow run links",
    )
    create_table_artifact(
        key=STEPS_KEY,
        table=step_rows(summary),
        description="Each step's wall and work seconds and row counts",
    )
    publish_evaluation_plot(summary, experiment_id)


def variant_rows(summary: SweepSummary) -> list[dict[str, Any]]:
    """One row per variant: its settings, scores, time and MLflow run."""
    return [
        {
            "best": line.best,
            "variant": line.label,
            "model": line.model,
            summary.selection_metric: line.selection_score,
            "test_mae": line.test_metrics.get("test_mae"),
            "test_r2": line.test_metrics.get("test_r2"),
            "wall_s": round(line.wall_seconds, 2),
            "status": line.status,
            "mlflow_run": line.run_id,
        }
        for line in summary.variants
    ]


def sweep_markdown(summary: SweepSummary, experiment_id: str) -> str:
    """The variants side by side with links to their runs, then the pipeline summary."""
    uri = summary.pipeline.tracking_uri
    metric = summary.selection_metric
    lines = [
        "# Sweep",
        "",
        f"{len(summary.variants)} variants on {summary.runner}, "
        f"{summary.variants_seconds:.1f} s for all of them. The winner is chosen on the "
        f"validation split (`{metric}`, {'lower' if summary.minimize else 'higher'} is better).",
        "",
        f"| | variant | model | {metric} | test_mae | test_r2 | status | MLflow run |",
        "| --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for line in summary.variants:
        link = _run_ref(uri, experiment_id, line.run_id, line.run_id[:8])
        scores = [
            line.selection_score,
            *(line.test_metrics.get(k) for k in ("test_mae", "test_r2")),
        ]
        cells = ["" if value is None else f"{value:.4g}" for value in scores]
        lines.append(
            f"| {'**best**' if line.best else ''} | `{line.label}` | {line.model} | "
            + " | ".join(cells)
            + f" | {line.status} | {link} |"
        )
    failures = [line for line in summary.variants if line.error]
    if failures:
        lines += ["", *(f"- `{line.label}`: {line.error}" for line in failures)]
    pipeline = summary_markdown(summary.pipeline, experiment_id)
    return (
        "\n".join(lines)
        + "\n\n"
        + pipeline.replace("# Pipeline run", "## Shared steps, winner and promotion", 1)
    )


def publish_sweep_artifacts(summary: SweepSummary, experiment_id: str) -> None:
    """The sweep's markdown summary and its variants table (inside the sweep's flow run)."""
    create_markdown_artifact(
        key=SWEEP_SUMMARY_KEY,
        markdown=sweep_markdown(summary, experiment_id),
        description="Every variant's validation and test scores, the winner and its promotion",
    )
    create_table_artifact(
        key=SWEEP_VARIANTS_KEY,
        table=variant_rows(summary),
        description="Each variant's settings, scores, wall seconds and MLflow run",
    )


def scoring_markdown(summary: ScoringSummary, experiment_id: str) -> str:
    """What was scored with which version, where the predictions are, and what drifted."""
    uri = summary.tracking_uri
    lines = [
        "# Scoring run",
        "",
        f"**Model:** `{summary.registered_model}` version {summary.model_version} "
        f"(`models:/{summary.registered_model}@{summary.alias}`)",
        "",
        f"**Rows scored:** {summary.rows_scored:,}"
        f" (price column {'present' if summary.has_price else 'absent'})",
        "",
        f"**Predictions:** `{summary.output}`"
        if summary.output
        else "**Predictions:** the scoring run's `predictions.parquet` artifact",
        "",
        f"**Drift:** {summary.drift_note or 'not measured'}",
        "",
    ]
    if summary.drifted:
        lines += [f"**Drifted features:** {', '.join(summary.drifted)}", ""]
    rows = summary.drift_rows()
    if rows:
        lines += [
            "| feature | measure | score | threshold | drifted |",
            "| --- | --- | --- | --- | --- |",
        ]
        lines += [
            f"| {row['feature']} | {row['measure']} | {row['score']:.4f} | {row['threshold']:g} | "
            f"{'**yes**' if row['drifted'] else 'no'} |"
            for row in rows
        ]
        lines.append("")
    lines += [
        "## MLflow runs",
        "",
        f"- scoring (parent): {_run_ref(uri, experiment_id, summary.parent_run_id)}",
        f"- score: {_run_ref(uri, experiment_id, summary.score_run_id)}",
        "",
        f"Input: `{summary.input_digest}`",
        "",
    ]
    return "\n".join(lines)


def publish_scoring_artifacts(summary: ScoringSummary, experiment_id: str) -> None:
    """The scoring run's markdown summary and its drift report (inside its flow run)."""
    create_markdown_artifact(
        key=SCORING_SUMMARY_KEY,
        markdown=scoring_markdown(summary, experiment_id),
        description="Rows scored, the model version, the output and the drifted features",
    )
    create_table_artifact(
        key=DRIFT_REPORT_KEY,
        table=summary.drift_rows(),
        description="Each model-input feature's drift score (PSI) against its threshold",
    )


def _cached(line: StepLine) -> bool:
    # getattr: `cached` arrives with the step cache (tasks/step_cache.py), committed separately.
    return bool(getattr(line, "cached", False))


def _ran(line: StepLine) -> bool:
    return not (line.reused or _cached(line))


def _status(line: StepLine) -> str:
    if line.reused:
        return "reused"
    if _cached(line):
        return "cached"
    return "ran"
