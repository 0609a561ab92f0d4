"""Sweeps for real: variants trained on a local Dask cluster, the best one promoted.

Each test runs `python -m flows.train_pipeline --multirun ...` (its `main`) in a fresh workspace:
the shared steps in the flow's process, every variant's train and evaluate as Prefect tasks on
two Dask worker processes, over the real entry points and a temporary tracking store.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from pathlib import Path

import dask
import pytest
import torch
from mlflow.entities import Run

from flows.sweep import main as sweep_main
from flows.train_pipeline import main as pipeline_main
from orchestration.config import load_config
from orchestration.dask_cluster import SweepClusterError, cluster_starting
from tests.e2e.conftest import SMALL_DEMO, Workspace
from tests.loopback import free_port

NAME = "housing_price"


def runs_of(workspace: Workspace, kind: str) -> list[Run]:
    client = workspace.client()
    experiment = client.get_experiment_by_name("nyc_airbnb_price")
    assert experiment is not None
    return client.search_runs(
        [experiment.experiment_id], f"tags.`pipeline.step` = '{kind}'", max_results=100
    )


def children(runs: Sequence[Run], parent: Run) -> list[Run]:
    return [run for run in runs if run.data.tags.get("mlflow.parentRunId") == parent.info.run_id]


def overlap(first: Run, second: Run) -> bool:
    """Whether two runs were running at the same moment."""
    assert first.info.end_time is not None and second.info.end_time is not None
    return (
        first.info.start_time < second.info.end_time
        and second.info.start_time < first.info.end_time
    )


def test_multirun_trains_variants_in_parallel_and_promotes_the_best(
    workspace: Workspace, capsys: pytest.CaptureFixture[str]
) -> None:
    code = pipeline_main(
        ["--multirun", *SMALL_DEMO, "model=torch_lasso,random_forest", "model.alpha=0.003,0.001"]
    )
    out = capsys.readouterr().out
    assert code == 0, out
    assert "Sweep: 3 variants on a local Dask cluster (2 workers in this process" in out

    client = workspace.client()
    (sweep_run,) = runs_of(workspace, "sweep")
    assert sweep_run.info.status == "FINISHED"
    everything = [
        run
        for kind in ("variant", "get_data", "basic_cleaning", "data_check", "data_split",
                     "train", "evaluate", "promote")
        for run in runs_of(workspace, kind)
    ]  # fmt: skip
    variants = children(everything, sweep_run)
    variant_runs = [run for run in variants if run.data.tags["pipeline.step"] == "variant"]
    # The random forest has no alpha: trained once, not once per alpha.
    assert sorted(run.data.params["variant"] for run in variant_runs) == [
        "model=random_forest",
        "model=torch_lasso model.alpha=0.001",
        "model=torch_lasso model.alpha=0.003",
    ]
    shared = sorted(run.data.tags["pipeline.step"] for run in variants if run not in variant_runs)
    assert shared == ["basic_cleaning", "data_check", "data_split", "get_data", "promote"]
    trains = []
    for variant in variant_runs:
        assert variant.info.status == "FINISHED"
        own = children(everything, variant)
        assert sorted(run.data.tags["pipeline.step"] for run in own) == ["evaluate", "train"]
        assert {"val_mae", "test_mae", "test_r2"} <= set(variant.data.metrics)
        trains += [run for run in own if run.data.tags["pipeline.step"] == "train"]
    # Two workers: the first two variants trained at the same time.
    assert any(overlap(a, b) for a in trains for b in trains if a is not b)

    # The champion is the variant with the best validation score, registered once.
    best = min(variant_runs, key=lambda run: run.data.metrics["val_mae"])
    (best_train,) = [
        run for run in trains if run.data.tags["mlflow.parentRunId"] == best.info.run_id
    ]
    champion = client.get_model_version_by_alias(NAME, "champion")
    assert champion.run_id == best_train.info.run_id
    assert len(client.search_model_versions(f"name = '{NAME}'")) == 1
    assert (
        f"best on the validation split (val_mae, lower is better): {best.data.params['variant']}"
        in out
    )
    assert json.loads(best.data.params["model_config"])["name"] in out


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_a_failed_variant_fails_the_sweep_and_a_rerun_trains_only_what_did_not_finish(
    workspace: Workspace, capsys: pytest.CaptureFixture[str]
) -> None:
    # device=cuda on a machine without a GPU: training fails with a permanent error.
    code = pipeline_main(["--multirun", *SMALL_DEMO, "model.device=cpu,cuda"])
    err = capsys.readouterr().err
    assert code == 1
    assert "1 of 2 variants failed, nothing promoted" in err
    assert "variant 'model.device=cuda'" in err and "no CUDA device" in err
    client = workspace.client()
    assert client.search_registered_models() == []
    failed = [run for run in runs_of(workspace, "variant") if run.info.status == "FAILED"]
    assert [run.data.params["variant"] for run in failed] == ["model.device=cuda"]
    assert "no CUDA device" in failed[0].data.tags["step.error_message"]

    code = pipeline_main(["--multirun", *SMALL_DEMO, "model.device=cpu"])
    out = capsys.readouterr().out
    assert code == 0, out
    # One value is no sweep: the variant is the configured model with device=cpu.
    (row,) = [line for line in out.splitlines() if line.startswith("* model=torch_lasso")]
    assert row.rstrip().endswith("cached")  # its train and evaluate runs stood in
    assert str(client.get_model_version_by_alias(NAME, "champion").version) == "1"


def test_a_sweep_that_cannot_run_is_refused_before_any_work(
    workspace: Workspace, capsys: pytest.CaptureFixture[str]
) -> None:
    assert pipeline_main(["--multirun", "model=torch_lasso,xgb"]) == 2
    assert "model=xgb is not an option" in capsys.readouterr().err
    assert sweep_main(["model.alpah=0.1"]) == 2
    assert sweep_main(["--multirun", "data.demo_rows=1000,2000"]) == 2
    assert "changes data.demo_rows" in capsys.readouterr().err
    assert not (workspace.root / "mlruns").exists()
    assert not Path(workspace.root / "wandb").exists()


def test_an_unreachable_dask_scheduler_is_reported_with_what_to_do() -> None:
    address = f"tcp://127.0.0.1:{free_port()}"  # nothing listens there
    settings = load_config([f"sweep.dask.address={address}"]).sweep.dask
    with (
        dask.config.set({"distributed.comm.timeouts.connect": "2s"}),
        cluster_starting(settings, False, logging.getLogger(__name__)) as cluster,
        pytest.raises(SweepClusterError, match=rf"cannot reach the Dask scheduler at {address}"),
    ):
        cluster.ready()
