"""What a search shows people: every trial, each model's parameter importances and the plot."""

from __future__ import annotations

from pathlib import Path

import optuna
from optuna.trial import TrialState

from reporting.search_report import (
    history_markdown,
    history_plot,
    importance_rows,
    state_counts,
    trial_rows,
)


def a_study() -> optuna.Study:
    """Two models, their own settings, a pruned trial among them."""
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=1))
    for number in range(12):
        trial = study.ask()
        model = trial.suggest_categorical("model", ["random_forest", "torch_lasso"])
        if model == "random_forest":
            depth = trial.suggest_int("random_forest.max_depth", 2, 20)
            leaf = trial.suggest_int("random_forest.min_samples_leaf", 1, 10)
            score = 40.0 - depth + 0.01 * leaf
        else:
            alpha = trial.suggest_float("torch_lasso.alpha", 1e-5, 1e-2, log=True)
            score = 35.0 + 100 * alpha
        trial.report(score + 5, 0)
        if number == 3:
            study.tell(trial, state=TrialState.PRUNED)
        else:
            study.tell(trial, score)
    return study


def test_importances_are_per_model_and_name_only_its_settings() -> None:
    rows = importance_rows(a_study())
    by_model = {(row["model"], row["parameter"]): row["importance"] for row in rows}
    assert set(by_model) == {
        ("random_forest", "max_depth"),
        ("random_forest", "min_samples_leaf"),
        ("torch_lasso", "alpha"),
    }
    # The score follows max_depth almost alone.
    forest = {name: value for (model, name), value in by_model.items() if model == "random_forest"}
    assert forest["max_depth"] > forest["min_samples_leaf"]


def test_every_trial_is_a_row_with_its_state_and_settings() -> None:
    study = a_study()
    rows = trial_rows(study)
    assert [row["trial"] for row in rows] == list(range(12))
    assert rows[3]["state"] == "PRUNED" and rows[3]["stages_reported"] == 1
    assert all("model=" not in row["settings"] for row in rows)
    assert state_counts(study) == "12 trials (11 complete, 1 pruned)"


def test_the_plot_and_its_markdown(tmp_path: Path) -> None:
    study = a_study()
    importances = importance_rows(study)
    plot = history_plot(study, importances, True, tmp_path / "history.png")
    png = plot.read_bytes()
    assert png.startswith(b"\x89PNG")
    text = history_markdown("search-x", png, importances, state_counts(study))
    assert "data:image/png;base64," in text and "| torch_lasso | alpha |" in text
