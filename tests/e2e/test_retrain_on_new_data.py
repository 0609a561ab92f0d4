"""The retrain flow's claim, in the flow itself: a run for an object another flow run holds
trains nothing and says who holds it; a run refused by its configuration claims nothing.

The training path (a claimed object trained and promoted) runs against a real Prefect server in
tests/services/test_new_data_retrain.py.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from prefect.states import State

from flows.retrain_on_new_data import retrain_on_new_data
from orchestration.config import ConfigError
from orchestration.events import ListingsObject
from orchestration.source_ledger import claim
from steps.ingest.demo_data import generate_listings
from tests.e2e.conftest import Workspace


def _listings(workspace: Workspace) -> ListingsObject:
    path = workspace.root / "listings.csv"
    generate_listings(600, seed=7).to_csv(path, index=False)
    return ListingsObject(str(path), f"size:{path.stat().st_size};mtime_ns:1")


def test_an_object_held_by_another_run_is_not_trained_again(workspace: Workspace) -> None:
    subject = _listings(workspace)
    assert claim(subject, "the-run-that-trained-it").mine
    outcome = retrain_on_new_data(
        source=subject.source, fingerprint=subject.fingerprint, origin="watcher", return_state=True
    )
    assert isinstance(outcome, State) and outcome.is_completed()
    assert "the-run-that-trained-it" in (outcome.message or "")
    assert "never trained twice" in (outcome.message or "")
    # Nothing ran: no MLflow run of any step was made.
    assert not workspace.client().search_runs(
        [e.experiment_id for e in workspace.client().search_experiments()]
    )


def test_a_refused_configuration_claims_nothing(workspace: Workspace, tmp_path: Path) -> None:
    subject = _listings(workspace)
    with pytest.raises(ConfigError, match="model=xgb is not an option"):
        retrain_on_new_data(
            source=subject.source, fingerprint=subject.fingerprint, overrides=["model=xgb"]
        )
    assert claim(subject, "a-later-run").mine, "the refused run must not hold the object"
