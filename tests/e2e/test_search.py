"""A hyperparameter search for real: `python -m flows.sweep sweep=search` on small demo data, its
trials on a local Dask cluster of two workers, over the real entry points, a temporary tracking
store and the study's SQLite database beside it."""

from __future__ import annotations

from typing import Any

import optuna
import pytest
from mlflow.entities import Run
from optuna.trial import TrialState
from prefect.client.orchestration import get_client
from prefect.client.schemas.objects import Artifact

from flows.sweep import main as sweep_main
from tests.e2e.conftest import SMALL_DEMO, Workspace
from tests.e2e.test_sweep import NAME, children, runs_of

# Few, small trials; a pruning rule strict enough to cut a trial on tiny data: one finished peer
# suffices, no warm-up, pruned unless within the best tenth of its peers.
SMALL_SEARCH = [
    "sweep=search",
    *SMALL_DEMO,
    "sweep.optuna.n_trials=6",
    "sweep.optuna.startup_trials=3",
    "sweep.optuna.pruning.startup_trials=1",
    "sweep.optuna.pruning.warmup_stages=0",
    "sweep.optuna.pruning.percentile=10",
    "sweep.optuna.pruning.stages=3",
    "sweep.optuna.space.random_forest.n_estimators.low=10",
    "sweep.optuna.space.random_forest.n_estimators.high=40",
    "sweep.optuna.space.random_forest.n_estimators.step=10",
    "sweep.optuna.space.hist_gradient_boosting.max_iter.low=20",
    "sweep.optuna.space.hist_gradient_boosting.max_iter.high=60",
    "sweep.optuna.space.hist_gradient_boosting.max_iter.step=10",
]


def the_study(workspace: Workspace) -> optuna.Study:
    storage = f"sqlite:///{workspace.root / 'mlruns' / 'optuna.db'}"
    (summary,) = optuna.get_all_study_summaries(storage)
    return optuna.load_study(study_name=summary.study_name, storage=storage)


def prefect_artifacts(flow_run_id: str) -> dict[str, Artifact]:
    """The flow run's artifacts by key, through the HTTP API (tests/services/conftest.py says
    why not the client's read_artifacts)."""
    with get_client(sync_client=True) as client:
        response = client.request(
            "POST",
            "/artifacts/filter",
            json={
                "artifacts": {"flow_run_id": {"any_": [flow_run_id]}},
                "sort": "CREATED_DESC",
                "limit": 50,
                "offset": 0,
            },
        )
    found = [Artifact.model_validate(item) for item in response.json()]
    return {str(artifact.key): artifact for artifact in found if artifact.key}


def trial_runs(workspace: Workspace, parent: Run) -> list[Run]:
    return children(runs_of(workspace, "variant"), parent)


def test_a_search_runs_its_trials_prunes_promotes_the_best_and_resumes(
    workspace: Workspace, capsys: pytest.CaptureFixture[str]
) -> None:
    assert sweep_main(SMALL_SEARCH) == 0, capsys.readouterr().err
    out = capsys.readouterr().out
    assert "search: study search-" in out and "6 trials in this run" in out

    # The study: n_trials trials, one at least pruned by its train step.
    study = the_study(workspace)
    states = [trial.state for trial in study.trials]
    assert len(states) == 6 and TrialState.PRUNED in states
    assert set(states) <= {TrialState.COMPLETE, TrialState.PRUNED}

    # Every trial is a run under the sweep's parent, holding its own train (and evaluate) run,
    # with its validation score.
    (sweep_run,) = runs_of(workspace, "sweep")
    assert sweep_run.info.status == "FINISHED"
    trials = trial_runs(workspace, sweep_run)
    assert sorted(int(run.data.tags["search.trial"]) for run in trials) == list(range(6))
    steps = [*runs_of(workspace, "train"), *runs_of(workspace, "evaluate")]
    for run in trials:
        assert run.info.status == "FINISHED"
        assert "val_mae" in run.data.metrics
        own = sorted(child.data.tags["pipeline.step"] for child in children(steps, run))
        pruned = run.data.tags["search.state"] == "PRUNED"
        assert own == (["train"] if pruned else ["evaluate", "train"])
    pruned_train = [run for run in runs_of(workspace, "train") if "note.pruned" in run.data.tags]
    assert (
        pruned_train
        and "worse than the 10th percentile" in pruned_train[0].data.tags["note.pruned"]
    )

    # The best trial on validation went through the gate and is the champion.
    best = study.best_trial
    champion = workspace.client().get_model_version_by_alias(NAME, "champion")
    assert champion.run_id == best.user_attrs["train_run_id"]
    best_run = next(run for run in trials if run.data.tags["search.trial"] == str(best.number))
    assert best_run.data.metrics["val_mae"] == pytest.approx(best.value)

    # The history and importances, as a plot and tables, in MLflow and Prefect.
    listed = {
        item.path for item in workspace.client().list_artifacts(sweep_run.info.run_id, "search")
    }
    assert listed == {
        "search/optimization_history.png",
        "search/trials.csv",
        "search/param_importances.csv",
    }
    artifacts = prefect_artifacts(sweep_run.data.tags["prefect.flow_run_id"])
    history: Any = artifacts["search-history"].data
    assert "data:image/png;base64," in history and "Parameter importances" in history
    table: Any = artifacts["search-trials"].data
    assert "PRUNED" in str(table) and "hist_gradient_boosting" in str(table)

    # A search killed mid-trial left one RUNNING; the next run marks it FAIL, keeps the finished
    # trials and adds only what is missing to reach n_trials.
    study.ask()
    assert sweep_main([*SMALL_SEARCH, "sweep.optuna.n_trials=7"]) == 0
    out = capsys.readouterr().out
    assert "1 trial in this run" in out
    resumed = the_study(workspace)
    states = [trial.state for trial in resumed.trials]
    assert states.count(TrialState.FAIL) == 1 and len(states) == 8
    assert sum(state in (TrialState.COMPLETE, TrialState.PRUNED) for state in states) == 7
    first = sweep_run.info.run_id
    (second,) = [run for run in runs_of(workspace, "sweep") if run.info.run_id != first]
    assert len(trial_runs(workspace, second)) == 1
