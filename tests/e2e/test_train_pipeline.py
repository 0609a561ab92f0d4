"""The real flow over the real MLflow entry points, on small demo data."""

from __future__ import annotations

import math
from pathlib import Path

import mlflow
import pandas as pd
import pytest

from flows.train_pipeline import PipelineError, main, train_pipeline
from steps.ingest.demo_data import generate_listings
from tests.e2e.conftest import SMALL_DEMO, Workspace


def step_runs(workspace: Workspace, step: str) -> list[mlflow.entities.Run]:
    client = workspace.client()
    experiment = client.get_experiment_by_name("nyc_airbnb_price")
    if experiment is None:
        return []
    return client.search_runs([experiment.experiment_id], f"tags.`pipeline.step` = '{step}'")


def test_full_pipeline_registers_a_champion_that_serves_raw_rows(workspace: Workspace) -> None:
    summary = train_pipeline(overrides=SMALL_DEMO)

    assert [line.step for line in summary.steps] == [
        "get_data",
        "basic_cleaning",
        "data_check",
        "data_split",
        "train",
        "evaluate",
        "promote",
    ]
    assert summary.registered_version == "1"
    assert summary.test_metrics["test_r2"] > 0.3

    # Every step run is a finished child of the parent run and names the Prefect flow run.
    parent = workspace.client().get_run(summary.parent_run_id)
    assert parent.info.status == "FINISHED"
    for line in summary.steps:
        run = workspace.client().get_run(line.run_id)
        assert run.info.status == "FINISHED"
        assert run.data.tags["mlflow.parentRunId"] == summary.parent_run_id
        assert run.data.tags["prefect.flow_run_id"] == parent.data.tags["prefect.flow_run_id"]
    assert "test_mae" in parent.data.metrics

    # The champion takes raw listing rows, as they come from a listings file.
    mlflow.set_tracking_uri(workspace.tracking_uri)
    model = mlflow.pyfunc.load_model("models:/housing_price@champion")
    rows = generate_listings(20, seed=7).drop(columns=["price"])
    prices = model.predict(rows)
    assert len(prices) == 20
    assert all(math.isfinite(p) and 5 < p < 2000 for p in prices)

    # W&B mirrored the steps offline, in the working directory.
    assert list((workspace.root / "wandb").glob("offline-run-*"))

    # Promoting again registers nothing new.
    again = train_pipeline(overrides=["main.steps=promote"])
    assert again.registered_version == "1"
    assert len(workspace.client().search_model_versions("name = 'housing_price'")) == 1


def test_subset_of_steps_reuses_latest_upstream_outputs(workspace: Workspace) -> None:
    first = train_pipeline(overrides=[*SMALL_DEMO, "main.steps=get_data,basic_cleaning"])
    assert [line.step for line in first.steps] == ["get_data", "basic_cleaning"]
    assert step_runs(workspace, "data_split") == []

    second = train_pipeline(overrides=[*SMALL_DEMO, "main.steps=data_check,data_split"])
    assert [line.step for line in second.steps] == ["data_check", "data_split"]
    cleaning_run = step_runs(workspace, "basic_cleaning")[0]
    (split_run,) = step_runs(workspace, "data_split")
    assert split_run.data.params["input_artifact"] == cleaning_run.data.tags["output.clean_data"]
    assert len(step_runs(workspace, "get_data")) == 1  # nothing upstream ran again


def test_subset_without_finished_upstream_fails_before_any_work(workspace: Workspace) -> None:
    with pytest.raises(PipelineError, match="needs the outputs of data_split"):
        train_pipeline(overrides=[*SMALL_DEMO, "main.steps=train,evaluate"])
    assert step_runs(workspace, "train") == []


def test_data_failing_the_check_stops_the_pipeline_and_registers_nothing(
    workspace: Workspace, capsys: pytest.CaptureFixture[str]
) -> None:
    listings = generate_listings(3000, seed=3)
    listings["neighbourhood_group"] = "Staten Island"  # far from the reference distribution
    source = workspace.root / "skewed.csv"
    listings.to_csv(source, index=False)

    exit_code = main([*SMALL_DEMO, f"data.source={source}"])

    assert exit_code != 0
    error = capsys.readouterr().err
    assert "data_check" in error
    assert "KL" in error
    assert step_runs(workspace, "data_split") == []
    assert step_runs(workspace, "train") == []
    assert workspace.client().search_registered_models() == []
    (check_run,) = step_runs(workspace, "data_check")
    assert check_run.info.status == "FAILED"


def test_bad_override_exits_2_before_any_work(
    workspace: Workspace, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["model.alpha=abc"]) == 2
    assert "model.alpha" in capsys.readouterr().err
    assert main(["main.nonsense=1"]) == 2
    assert "allowed: backend, env_manager, experiment_name" in capsys.readouterr().err
    assert not (workspace.root / "mlruns").exists()


def test_relative_source_path_is_read_from_the_start_directory(workspace: Workspace) -> None:
    generate_listings(2000, seed=5).to_csv(workspace.root / "listings.csv", index=False)
    summary = train_pipeline(overrides=["main.steps=get_data", "data.source=listings.csv"])
    (line,) = summary.steps
    assert line.rows_out == 2000
    raw = mlflow.artifacts.download_artifacts(
        workspace.client().get_run(line.run_id).data.tags["output.raw_data"],
        dst_path=str(workspace.root / "out"),
        tracking_uri=workspace.tracking_uri,
    )
    assert len(pd.read_parquet(Path(raw))) == 2000
