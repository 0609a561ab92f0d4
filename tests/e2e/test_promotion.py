"""Champion/challenger promotion, history, rollback, stages, concurrency and serving, for real.

One module-scoped store holds the demo data split and two trained candidates (a random forest
and a better torch lasso); each test promotes them in its own copy of the tracking database.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import mlflow
import pandas as pd
import pytest
from prefect import flow
from prefect.runtime import flow_run

from flows.promotion import main as promotion_cli
from flows.train_pipeline import train_pipeline
from orchestration.config import load_config
from orchestration.runtime import configure_services
from orchestration.step_runner import step_parameters
from tasks.run_entry_point import run_entry_point
from tasks.step_result import StepResult
from tasks.tracking_store import ensure_experiment, latest_finished_run
from tests.e2e.conftest import SMALL_DEMO, Workspace, copy_of, isolate
from tests.loopback import free_port

NAME = "housing_price"


@pytest.fixture(scope="module")
def seeded_store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Data split once, then two candidates trained and evaluated on it."""
    root = tmp_path_factory.mktemp("promotion-seed")
    with pytest.MonkeyPatch.context() as monkeypatch:
        isolate(monkeypatch, root)
        train_pipeline(
            overrides=[
                *SMALL_DEMO,
                "model=random_forest",
                "main.steps="
                + ",".join(["get_data", "basic_cleaning", "data_check", "data_split", "train"]),
            ]
        )
        train_pipeline(overrides=[*SMALL_DEMO, "main.steps=train"])
    return root


@pytest.fixture
def store(
    seeded_store: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Workspace]:
    """A private copy of the seeded tracking database (artifacts stay shared and read-only)."""
    with copy_of(seeded_store, tmp_path, monkeypatch) as workspace:
        yield workspace


def candidates(workspace: Workspace) -> dict[str, str]:
    """Model URI of each seeded candidate, by model name."""
    mlflow.set_tracking_uri(workspace.tracking_uri)
    client = workspace.client()
    experiment = client.get_experiment_by_name("nyc_airbnb_price")
    assert experiment is not None
    runs = client.search_runs(
        [experiment.experiment_id],
        "tags.`pipeline.step` = 'train' and attributes.status = 'FINISHED'",
    )
    return {
        json.loads(run.data.params["model_config"])["name"]: run.data.tags["output.model"]
        for run in runs
    }


@flow(name="promote-candidate")
def promote_candidate(model_uri: str, overrides: list[str]) -> StepResult:
    """The pipeline's own promote task and parameters, for one chosen candidate."""
    cfg = load_config(overrides)
    configure_services(cfg, Path.cwd(), group="promotion-test")
    experiment_id = ensure_experiment(cfg.main.experiment_name)
    split = latest_finished_run(experiment_id, "data_split")
    assert split is not None
    parameters = step_parameters("promote", cfg, Path.cwd()) | {
        "model": model_uri,
        "test_data": split.data.tags["output.test_data"],
    }
    return run_entry_point(
        "promote",
        parameters,
        (),
        experiment_id,
        flow_run_id=flow_run.get_id(),
        timeout_s=600,
    )


def champion(workspace: Workspace) -> str | None:
    try:
        return str(workspace.client().get_model_version_by_alias(NAME, "champion").version)
    except mlflow.exceptions.MlflowException:
        return None


def history(workspace: Workspace) -> list[dict[str, Any]]:
    tags = workspace.client().get_registered_model(NAME).tags
    return [json.loads(v) for k, v in sorted(tags.items()) if k.startswith("history.")]


def versions(workspace: Workspace) -> list[str]:
    found = workspace.client().search_model_versions(f"name = '{NAME}'")
    return sorted(str(v.version) for v in found)


def test_champion_challenger_history_rollback_and_stages(
    store: Workspace, capsys: pytest.CaptureFixture[str]
) -> None:
    models = candidates(store)
    stages = ["promotion.use_stages=true"]

    # First promotion: no champion yet, the quality gate decides.
    first = promote_candidate(models["random_forest"], stages)
    assert "PROMOTED: first model" in first.notes["verdict"]
    assert champion(store) == "1"
    version_1 = store.client().get_model_version(NAME, "1")
    assert version_1.current_stage == "Production"
    for tag in ("data_sha256", "git_commit", "prefect_flow_run_id", "parent_run_id", "test_mae"):
        assert version_1.tags.get(tag), tag

    # Idempotent: the same run again registers nothing and moves nothing.
    again = promote_candidate(models["random_forest"], stages)
    assert "already the champion" in again.notes["verdict"]
    assert versions(store) == ["1"]
    assert len(history(store)) == 1

    # A better candidate wins on the same test rows; the old champion is archived.
    better = promote_candidate(models["torch_lasso"], stages)
    assert better.notes["verdict"].startswith("PROMOTED: beats the champion")
    assert better.metrics["champion_score"] > better.metrics["candidate_test_mae"]
    assert champion(store) == "2"
    assert store.client().get_model_version(NAME, "2").current_stage == "Production"
    assert store.client().get_model_version(NAME, "1").current_stage == "Archived"

    # The worse one, offered again, is refused: it becomes the challenger, the champion stays.
    worse = promote_candidate(models["random_forest"], [])
    assert worse.notes["verdict"].startswith("NOT PROMOTED: does not beat the champion")
    assert champion(store) == "2"
    assert str(store.client().get_model_version_by_alias(NAME, "challenger").version) == "1"
    assert versions(store) == ["1", "2"]

    moves = history(store)
    assert [(m["action"], m["alias"], m["from_version"], m["to_version"]) for m in moves] == [
        ("promote", "champion", None, "1"),
        ("promote", "champion", "1", "2"),
        ("promote", "challenger", None, "1"),
    ]
    assert all(m["prefect_flow_run_id"] and m["time"] for m in moves)

    # Rollback goes to the previous champion, then to a chosen version; both are recorded.
    assert promotion_cli(["rollback"]) == 0
    assert champion(store) == "1"
    assert promotion_cli(["rollback", "--to-version", "2"]) == 0
    assert champion(store) == "2"
    assert [m["action"] for m in history(store)][-2:] == ["rollback", "rollback"]

    capsys.readouterr()
    assert promotion_cli(["history"]) == 0
    printed = capsys.readouterr().out
    assert "rollback from version 2 to version 1" in printed
    assert "beats the champion" in printed


def test_candidate_failing_the_gate_registers_nothing(store: Workspace) -> None:
    refused = promote_candidate(
        candidates(store)["torch_lasso"], ["promotion.gate.test_r2.min=0.99"]
    )
    assert refused.notes["verdict"].startswith("NOT PROMOTED: fails the quality gate: test_r2")
    assert store.client().search_model_versions(f"name = '{NAME}'") == []


def test_rollback_without_history_fails_clearly(
    store: Workspace, capsys: pytest.CaptureFixture[str]
) -> None:
    promote_candidate(candidates(store)["torch_lasso"], [])
    assert promotion_cli(["rollback"]) == 1
    assert "records no champion before version 1" in capsys.readouterr().err
    assert champion(store) == "1"


def test_concurrent_promotions_end_with_one_champion_and_consistent_history(
    store: Workspace,
) -> None:
    models = candidates(store)
    errors: list[BaseException] = []

    def promote(uri: str) -> None:
        try:
            promote_candidate(uri, [])
        except BaseException as error:  # surfaced by the assertion below
            errors.append(error)

    threads = [threading.Thread(target=promote, args=(uri,)) for uri in models.values()]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=600)
    assert not errors

    assert versions(store) == ["1", "2"]
    lasso_run = mlflow.models.get_model_info(models["torch_lasso"]).run_id
    (lasso,) = store.client().search_model_versions(f"name = '{NAME}' and run_id = '{lasso_run}'")
    lasso_version = str(lasso.version)
    assert champion(store) == lasso_version
    moves = history(store)
    assert [m["sequence"] for m in moves] == list(range(1, len(moves) + 1))
    holder = None
    for move in (m for m in moves if m["alias"] == "champion"):
        assert move["from_version"] == holder  # each move starts from the champion it replaced
        holder = move["to_version"]
    assert holder == lasso_version


def test_champion_serves_raw_rows_over_http(store: Workspace) -> None:
    promote_candidate(candidates(store)["torch_lasso"], [])
    split = latest_finished_run(
        str(store.client().get_experiment_by_name("nyc_airbnb_price").experiment_id),  # type: ignore[union-attr]
        "data_split",
    )
    assert split is not None
    test_rows = pd.read_parquet(
        mlflow.artifacts.download_artifacts(
            split.data.tags["output.test_data"], dst_path=str(store.root / "test")
        )
    )
    typical = test_rows[test_rows["price"].between(50, 200)].head(5).drop(columns=["price"])
    typical["last_review"] = typical["last_review"].dt.strftime("%Y-%m-%d")
    records = json.loads(typical.to_json(orient="records"))

    port = free_port()
    bin_dir = str(Path(sys.executable).parent)
    env = os.environ | {"PATH": f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}"}
    server = subprocess.Popen(
        [
            f"{bin_dir}/mlflow",
            "models",
            "serve",
            "-m",
            f"models:/{NAME}@champion",
            "--env-manager",
            "local",
            "-h",
            "127.0.0.1",
            "-p",
            str(port),
        ],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/ping", timeout=2)
                break
            except OSError:
                assert server.poll() is None, "mlflow models serve exited"
                assert time.monotonic() < deadline, "the model server did not start in 120 s"
                time.sleep(1)
        request = urllib.request.Request(
            f"http://127.0.0.1:{port}/invocations",
            data=json.dumps({"dataframe_records": records}).encode(),
            headers={"Content-Type": "application/json"},
        )
        with urllib.request.urlopen(request, timeout=30) as response:
            predictions = json.loads(response.read())["predictions"]
    finally:
        os.killpg(server.pid, 15)
        server.wait(timeout=30)
    assert len(predictions) == len(records) == 5
    assert all(10 <= price <= 350 for price in predictions)
