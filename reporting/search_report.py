"""What a search reports to people: its optimisation history and its parameter importances, as a
plot and tables, on the sweep's MLflow parent run (`search/`) and its Prefect flow run
(`search-history`, a markdown artifact with the plot and the importances; `search-trials`, a
table of every trial).

Importances are computed per model (fANOVA over that model's completed trials): the study
searches several models at once, and one model's settings mean nothing for another's score.
"""

from __future__ import annotations

import base64
import csv
import logging
import math
import tempfile
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from steps.common.url_secrets import hide_password

if TYPE_CHECKING:
    import optuna
    from optuna.trial import FrozenTrial

    from flows.search import TrialOutcome

logger = logging.getLogger(__name__)

HISTORY_KEY = "search-history"
TRIALS_KEY = "search-trials"
ARTIFACT_DIR = "search"
PLOT_FILE = "optimization_history.png"
TRIALS_FILE = "trials.csv"
IMPORTANCES_FILE = "param_importances.csv"


def _model(trial: FrozenTrial) -> str:
    return str(trial.params.get("model", ""))


def _settings(trial: FrozenTrial) -> dict[str, Any]:
    model = _model(trial)
    return {k.removeprefix(f"{model}."): v for k, v in trial.params.items() if k != "model"}


def trial_rows(study: optuna.Study) -> list[dict[str, Any]]:
    """Every trial of the study: its model, settings, how it ended, its validation score."""
    rows = []
    for trial in study.get_trials(deepcopy=False):
        seconds = trial.duration.total_seconds() if trial.duration else None
        last = trial.intermediate_values.get(max(trial.intermediate_values, default=-1))
        rows.append(
            {
                "trial": trial.number,
                "model": _model(trial),
                "state": trial.state.name,
                "value": trial.value,
                "last_intermediate": last,
                "stages_reported": len(trial.intermediate_values),
                "settings": " ".join(f"{k}={v}" for k, v in _settings(trial).items()),
                "seconds": round(seconds, 1) if seconds is not None else None,
                "train_run": trial.user_attrs.get("train_run_id"),
            }
        )
    return rows


def importance_rows(study: optuna.Study) -> list[dict[str, Any]]:
    """Each model's hyperparameters by their fANOVA importance over its completed trials; a
    model with too few trials says so instead."""
    import optuna
    from optuna.importance import FanovaImportanceEvaluator, get_param_importances
    from optuna.trial import TrialState

    complete = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    rows: list[dict[str, Any]] = []
    for model in sorted({_model(trial) for trial in complete}):
        own = [trial for trial in complete if _model(trial) == model]
        names = sorted({name for trial in own for name in trial.params if name != "model"})
        if len(own) < 2 or not names:
            rows.append({"model": model, "parameter": "", "importance": None, "trials": len(own)})
            continue
        try:
            with warnings.catch_warnings():
                # Optuna calls its importance evaluators experimental, once per call.
                warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
                found = get_param_importances(
                    study, evaluator=FanovaImportanceEvaluator(seed=0), params=names
                )
        except (ValueError, RuntimeError, ZeroDivisionError) as error:
            logger.info("no importances for %s: %s", model, error)
            found = {}
        if not found:
            rows.append({"model": model, "parameter": "", "importance": None, "trials": len(own)})
        for name, importance in found.items():
            rows.append(
                {
                    "model": model,
                    "parameter": name.removeprefix(f"{model}."),
                    "importance": round(float(importance), 4),
                    "trials": len(own),
                }
            )
    return rows


def history_plot(
    study: optuna.Study, importances: Sequence[dict[str, Any]], minimize: bool, path: Path
) -> Path:
    """Left: every trial's validation score by trial number (pruned ones at their last
    reported score) and the best so far; right: each model's parameter importances."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from optuna.trial import TrialState

    trials = study.get_trials(deepcopy=False)
    figure, (history, bars) = plt.subplots(1, 2, figsize=(12, 4.5))
    models = sorted({_model(trial) for trial in trials})
    for model in models:
        done = [t for t in trials if _model(t) == model and t.state == TrialState.COMPLETE]
        history.scatter([t.number for t in done], [t.value for t in done], s=18, label=model)
        cut = [
            t
            for t in trials
            if _model(t) == model and t.state == TrialState.PRUNED and t.intermediate_values
        ]
        if cut:
            history.scatter(
                [t.number for t in cut],
                [t.intermediate_values[max(t.intermediate_values)] for t in cut],
                marker="x",
                s=18,
                label=f"{model} (pruned)",
            )
    best: list[tuple[int, float]] = []
    for trial in sorted(trials, key=lambda t: t.number):
        if trial.state != TrialState.COMPLETE or trial.value is None:
            continue
        if not best or (trial.value < best[-1][1] if minimize else trial.value > best[-1][1]):
            best.append((trial.number, trial.value))
        else:
            best.append((trial.number, best[-1][1]))
    if best:
        history.step([n for n, _ in best], [v for _, v in best], where="post", color="black",
                     linewidth=1, label="best so far")  # fmt: skip
    history.set_xlabel("trial")
    history.set_ylabel("validation score")
    history.set_title("Optimisation history")
    history.legend(fontsize=7)
    shown = [row for row in importances if row["importance"] is not None]
    names = [f"{row['model']}.{row['parameter']}" for row in shown]
    bars.barh(names, [row["importance"] for row in shown])
    bars.invert_yaxis()
    bars.set_xlabel("importance (fANOVA, per model)")
    bars.set_title("Parameter importances")
    bars.tick_params(axis="y", labelsize=7)
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)
    return path


def _write_csv(rows: Sequence[dict[str, Any]], path: Path) -> Path:
    with path.open("w", newline="") as handle:
        if rows:
            writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
            writer.writeheader()
            writer.writerows(rows)
    return path


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return "" if math.isnan(value) else f"{value:.4g}"
    return str(value)


def history_markdown(
    study_name: str, png: bytes, importances: Sequence[dict[str, Any]], counts: str
) -> str:
    encoded = base64.b64encode(png).decode("ascii")
    lines = [
        f"# Search: study `{study_name}`",
        "",
        counts,
        "",
        f"![optimisation history and parameter importances](data:image/png;base64,{encoded})",
        "",
        "## Parameter importances (per model)",
        "",
        "| model | parameter | importance | complete trials |",
        "| --- | --- | --- | --- |",
    ]
    lines += [
        f"| {row['model']} | {row['parameter'] or '(too few trials)'} | "
        f"{_cell(row['importance'])} | {row['trials']} |"
        for row in importances
    ]
    return "\n".join(lines) + "\n"


def state_counts(study: optuna.Study) -> str:
    from collections import Counter

    counts = Counter(trial.state.name.lower() for trial in study.get_trials(deepcopy=False))
    parts = ", ".join(f"{count} {state}" for state, count in sorted(counts.items()))
    return f"{sum(counts.values())} trials ({parts or 'none'})"


def search_notes(
    study: optuna.Study, study_name: str, storage: str, trials: Sequence[TrialOutcome]
) -> list[str]:
    """The report's lines about the search: the study, where it lives, what it holds."""
    this_run = len(trials)
    pruned = sum(1 for trial in trials if trial.state is not None and trial.state.name == "PRUNED")
    return [
        f"search: study {study_name} in {hide_password(storage)}: {state_counts(study)}; "
        f"{this_run} trial{'' if this_run == 1 else 's'} in this run ({pruned} pruned)"
    ]


def publish_search_report(
    study: optuna.Study, study_name: str, parent_run_id: str, minimize: bool
) -> None:
    """The plot and tables on the sweep's MLflow parent run and its Prefect flow run."""
    import mlflow
    from prefect.artifacts import create_markdown_artifact, create_table_artifact

    importances = importance_rows(study)
    trials = trial_rows(study)
    with tempfile.TemporaryDirectory(prefix="search-report-") as scratch:
        folder = Path(scratch)
        plot = history_plot(study, importances, minimize, folder / PLOT_FILE)
        _write_csv(trials, folder / TRIALS_FILE)
        _write_csv(importances, folder / IMPORTANCES_FILE)
        mlflow.MlflowClient().log_artifacts(parent_run_id, str(folder), ARTIFACT_DIR)
        png = plot.read_bytes()
    create_markdown_artifact(
        key=HISTORY_KEY,
        markdown=history_markdown(study_name, png, importances, state_counts(study)),
        description="The search's optimisation history and parameter importances",
    )
    create_table_artifact(
        key=TRIALS_KEY,
        table=trials,
        description="Every trial of the study: model, settings, state, validation score",
    )
