"""Scoring with the champion, for real: the pipeline trains and promotes on demo listings, then
`python -m flows.score` prices other listings, writes them, tags its run and reports drift.

One module-scoped store holds the trained champion; each test scores in its own copy of the
tracking database.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from uuid import UUID

import mlflow
import numpy as np
import pandas as pd
import pytest

from flows.score import main as score_cli
from flows.train_pipeline import train_pipeline
from orchestration.events import DRIFT_DETECTED, ListingsObject, drift
from steps.contract import NOTE_TAG_PREFIX, SCORED_VERSION_TAG, STEP_TAG
from steps.ingest.demo_data import generate_listings
from tests.e2e.conftest import Workspace, copy_of, isolate

NAME = "housing_price"
SCORING_EXPERIMENT = "nyc_airbnb_price-scoring"
TRAINING = ["data.demo_rows=2000", "task.retries=0"]
QUIET = ["task.retries=0"]


@pytest.fixture(scope="module")
def trained_store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The whole pipeline once on 2,000 demo listings: version 1 is the champion."""
    root = tmp_path_factory.mktemp("score-seed")
    previous = mlflow.get_tracking_uri()
    with pytest.MonkeyPatch.context() as monkeypatch:
        isolate(monkeypatch, root)
        try:
            train_pipeline(overrides=TRAINING)
        finally:
            mlflow.set_tracking_uri(previous)
    return root


@pytest.fixture
def store(
    trained_store: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Workspace]:
    """A private copy of the trained store (its artifacts stay shared and are only read)."""
    with copy_of(trained_store, tmp_path, monkeypatch) as workspace:
        yield workspace


def listings_csv(path: Path, rows: int, seed: int, **changes: Any) -> Path:
    """Demo listings other than the training ones; `price=None` drops the price column."""
    frame = generate_listings(rows, seed)
    for column, value in changes.items():
        if value is None:
            frame = frame.drop(columns=[column])
        elif callable(value):
            frame[column] = value(frame[column])
        else:
            frame[column] = value
    frame.to_csv(path, index=False)
    return path


def champion(workspace: Workspace) -> str:
    return str(workspace.client().get_model_version_by_alias(NAME, "champion").version)


def scoring_runs(workspace: Workspace) -> list[Any]:
    client = workspace.client()
    experiment = client.get_experiment_by_name(SCORING_EXPERIMENT)
    assert experiment is not None, "the scoring flow made no experiment of its own"
    return list(client.search_runs([experiment.experiment_id], f"tags.`{STEP_TAG}` = 'score'"))


def drift_events(expected_id: str, timeout_s: float = 30.0) -> list[Any]:
    """The drift events with this id that the Prefect API has stored (they land shortly after
    they are sent)."""
    from prefect.client.orchestration import get_client
    from prefect.events.filters import EventFilter, EventIDFilter, EventNameFilter

    wanted = EventFilter(
        event=EventNameFilter(name=[DRIFT_DETECTED]), id=EventIDFilter(id=[UUID(expected_id)])
    )
    deadline = time.monotonic() + timeout_s
    while True:
        with get_client(sync_client=True) as client:
            found = list(client.read_events(filter=wanted, limit=10).events)
        if found or time.monotonic() > deadline:
            return found
        time.sleep(0.5)


def test_every_listing_is_priced_by_the_champion(
    store: Workspace, capsys: pytest.CaptureFixture[str]
) -> None:
    source = listings_csv(store.root / "new.csv", 1500, 7, price=None)
    assert score_cli(["data.source=new.csv", "scoring.output=out.parquet", *QUIET]) == 0

    version = champion(store)
    predictions = pd.read_parquet(store.root / "out.parquet")
    listed = pd.read_csv(source)
    assert list(predictions.columns) == ["id", "predicted_price", "model_version"]
    assert predictions["id"].tolist() == listed["id"].tolist()
    assert np.isfinite(predictions["predicted_price"]).all()
    assert set(predictions["model_version"].astype(str)) == {version}

    (run,) = scoring_runs(store)
    assert run.info.status == "FINISHED"
    assert run.data.tags[SCORED_VERSION_TAG] == version
    assert run.data.tags[f"{NOTE_TAG_PREFIX}has_price"] == "false"
    assert run.data.tags[f"{NOTE_TAG_PREFIX}drifted"] == ""
    assert run.data.metrics["rows_scored"] == 1500
    artifact = mlflow.artifacts.download_artifacts(
        run_id=run.info.run_id, artifact_path="predictions.parquet", dst_path=str(store.root)
    )
    assert pd.read_parquet(artifact).equals(predictions)

    printed = capsys.readouterr().out
    assert "rows scored: 1,500" in printed
    assert f"version {version}" in printed
    assert str(store.root / "out.parquet") in printed
    assert "drifted features: none" in printed


def test_listings_unlike_the_training_data_are_reported_as_drifted(
    store: Workspace, capsys: pytest.CaptureFixture[str]
) -> None:
    source = listings_csv(
        store.root / "shifted.csv",
        800,
        11,
        neighbourhood_group="Staten Island",
        price=lambda prices: prices * 3,
    )
    assert score_cli([f"data.source={source}", *QUIET]) == 0

    (run,) = scoring_runs(store)
    drifted = run.data.tags[f"{NOTE_TAG_PREFIX}drifted"].split(",")
    assert "neighbourhood_group" in drifted
    assert run.data.metrics["drift.neighbourhood_group"] > 0.25
    assert run.data.tags[f"{NOTE_TAG_PREFIX}has_price"] == "true"
    assert "drifted features: neighbourhood_group" in capsys.readouterr().out

    digest = "sha256:" + hashlib.sha256(source.read_bytes()).hexdigest()
    expected = drift(ListingsObject(str(source), digest), details={})
    (event,) = drift_events(str(expected.id))
    assert event.payload["source"] == str(source)
    assert event.payload["fingerprint"] == digest
    assert event.payload["size"] == source.stat().st_size
    assert event.payload["model_version"] == champion(store)
    assert "neighbourhood_group" in event.payload["drifted"]
    assert event.payload["scores"]["neighbourhood_group"] > event.payload["threshold"]
    assert event.resource["listings.has-price"] == "true"


def test_without_a_champion_nothing_is_scored(
    workspace: Workspace, capsys: pytest.CaptureFixture[str]
) -> None:
    listings_csv(workspace.root / "new.csv", 300, 7)
    code = score_cli(["data.source=new.csv", "scoring.output=out.parquet", *QUIET])
    assert code == 5
    assert (
        f"no version of {NAME} has alias champion: run the pipeline first"
        in capsys.readouterr().err
    )
    assert not (workspace.root / "out.parquet").exists()
    assert sorted(p.name for p in workspace.root.iterdir() if p.suffix == ".parquet") == []


def test_listings_missing_a_column_are_refused_by_name(
    store: Workspace, capsys: pytest.CaptureFixture[str]
) -> None:
    listings_csv(store.root / "broken.csv", 300, 7, room_type=None)
    code = score_cli(["data.source=broken.csv", "scoring.output=out.parquet", *QUIET])
    assert code == 4  # the source is not a listings file
    error = capsys.readouterr().err
    assert "room_type" in error and "lacks required column" in error
    assert not (store.root / "out.parquet").exists()
    assert [run.info.status for run in scoring_runs(store)] == []
