"""What a pipeline run publishes to Prefect: the markdown summary and the step table."""

from __future__ import annotations

import base64

import pytest

from reporting.prefect_artifacts import (
    mlflow_ui_base,
    plot_markdown,
    plot_url,
    run_link,
    step_rows,
    summary_markdown,
)
from reporting.summary import PipelineSummary, StepLine


def _summary(tracking_uri: str = "sqlite:////tmp/mlruns/mlflow.db") -> PipelineSummary:
    return PipelineSummary(
        parent_run_id="parent01",
        experiment_name="nyc_airbnb_price",
        tracking_uri=tracking_uri,
        steps=[
            StepLine("get_data", "run0001", False, 4.04, 1.51, None, 2000),
            StepLine("train", "run0002", True, 0.0, None, 1200, 1200),
        ],
        test_metrics={"test_mae": 29.9214, "test_r2": 0.7091},
        registered_model="housing_price",
        registered_version="3",
        alias="champion",
        promotion_notes={"verdict": "PROMOTED: beats version 2", "champion": "version 3"},
    )


def test_step_table_has_durations_and_row_counts_per_step() -> None:
    assert step_rows(_summary()) == [
        {
            "step": "get_data",
            "status": "ran",
            "wall_s": 4.04,
            "work_s": 1.51,
            "rows_in": None,
            "rows_out": 2000,
            "mlflow_run": "run0001",
        },
        {
            "step": "train",
            "status": "reused",
            "wall_s": None,
            "work_s": None,
            "rows_in": 1200,
            "rows_out": 1200,
            "mlflow_run": "run0002",
        },
    ]


def test_markdown_has_metrics_verdict_version_and_run_links(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("MLFLOW_UI_URL", raising=False)
    text = summary_markdown(_summary(), "7")
    assert "| test_mae | 29.92 |" in text
    assert "**Champion/challenger verdict:** PROMOTED: beats version 2" in text
    assert "`housing_price` version 3" in text
    # A local store: no UI is known to serve it, so ids and how to open one, not dead links.
    assert "- get_data: `run0001`" in text and "- pipeline (parent): `parent01`" in text
    assert "](http" not in text.split("```")[0]
    assert "mlflow ui --backend-store-uri sqlite:////tmp/mlruns/mlflow.db" in text
    assert "http://127.0.0.1:5000/#/experiments/7/runs/parent01" in text


def test_a_local_store_is_linked_where_mlflow_ui_url_says_a_ui_runs(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("MLFLOW_UI_URL", "http://127.0.0.1:5001")
    text = summary_markdown(_summary(), "7")
    assert "[run0001](http://127.0.0.1:5001/#/experiments/7/runs/run0001)" in text
    assert "[parent01](http://127.0.0.1:5001/#/experiments/7/runs/parent01)" in text


def test_a_tracking_server_links_every_run(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MLFLOW_UI_URL", raising=False)
    text = summary_markdown(_summary("http://10.0.0.5:5000/"), "7")
    assert "[parent01](http://10.0.0.5:5000/#/experiments/7/runs/parent01)" in text
    assert "- train: [run0002](http://10.0.0.5:5000/#/experiments/7/runs/run0002) (reused)" in text
    assert "mlflow ui" not in text


def test_the_evaluation_plot_is_served_by_the_tracking_server_or_carried_inline() -> None:
    url = plot_url("http://10.0.0.5:5000/", "abc123")
    assert url == ("http://10.0.0.5:5000/get-artifact?path=predicted_vs_actual.png&run_uuid=abc123")
    png = b"\x89PNG\r\n\x1a\nfake"
    text = plot_markdown(png, "`abc123`")
    assert f"](data:image/png;base64,{base64.b64encode(png).decode()})" in text
    assert "`abc123`" in text


def test_links_go_to_the_tracking_server_when_it_is_one(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MLFLOW_UI_URL", "http://elsewhere:9999/")
    assert mlflow_ui_base("http://mlflow.internal:5000/") == "http://mlflow.internal:5000"
    assert mlflow_ui_base("sqlite:///x.db") == "http://elsewhere:9999"
    assert run_link("https://m.example", "1", "abc") == "https://m.example/#/experiments/1/runs/abc"
    assert "mlflow ui" not in summary_markdown(_summary("https://m.example"), "1")


def test_no_link_or_hint_carries_the_tracking_servers_password(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A tracking URI with credentials (http://user:PASSWORD@host) reaches the run page and the
    printed summary only without its password: every link, the plot's address, the UI hint."""
    monkeypatch.delenv("MLFLOW_UI_URL", raising=False)
    uri = "http://pipeline:Pw0rdSECRET7@10.0.0.5:5000/"
    texts = {
        "run page": summary_markdown(_summary(uri), "7"),
        "run link": run_link(uri, "7", "abc"),
        "plot": plot_url(uri, "abc"),
        "summary": _summary(uri).render(),
    }
    assert "10.0.0.5:5000/#/experiments/7/runs/parent01" in texts["run page"]
    for where, text in texts.items():
        assert "Pw0rdSECRET7" not in text, where
