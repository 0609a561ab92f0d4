"""The closing report lists each step, its rows and times, the promoted model and the UI command."""

from __future__ import annotations

import pytest

from reporting.summary import PipelineSummary, StepLine, step_line
from tasks.step_result import StepResult

TRACKING_URI = "sqlite:////tmp/mlruns/mlflow.db"


def _line(
    step: str,
    *,
    run_id: str = "0123456789abcdef",
    reused: bool = False,
    wall: float = 5.0,
    work: float | None = 3.0,
    rows_in: int | None = None,
    rows_out: int | None = None,
) -> StepLine:
    return StepLine(step, run_id, reused, wall, work, rows_in, rows_out)


def _summary(**kwargs: object) -> PipelineSummary:
    defaults: dict[str, object] = {
        "parent_run_id": "parent0123",
        "experiment_name": "nyc_airbnb_price",
        "tracking_uri": TRACKING_URI,
    }
    return PipelineSummary(**(defaults | kwargs))  # type: ignore[arg-type]


def _full_summary() -> PipelineSummary:
    return _summary(
        steps=[
            _line("get_data", run_id="aaaaaaaa1111", wall=4.0, work=1.5, rows_out=20000),
            _line("basic_cleaning", run_id="bbbbbbbb2222", rows_in=20000, rows_out=19500),
            _line("train", run_id="cccccccc3333", reused=True, wall=0.0, work=None),
            _line("evaluate", run_id="dddddddd4444", wall=10.0, work=6.0, rows_in=3900),
        ],
        test_metrics={"test_r2": 0.56789, "test_mae": 31.25},
        registered_model="housing_price",
        registered_version="3",
        alias="champion",
    )


def _row(text: str, step: str) -> str:
    rows = [line for line in text.splitlines() if line.startswith(f"{step} ")]
    assert len(rows) == 1, f"expected one row for {step} in:\n{text}"
    return rows[0]


def test_render_shows_each_step_with_short_run_id() -> None:
    text = _full_summary().render()
    for step, run_id in [
        ("get_data", "aaaaaaaa"),
        ("basic_cleaning", "bbbbbbbb"),
        ("train", "cccccccc"),
        ("evaluate", "dddddddd"),
    ]:
        row = _row(text, step)
        assert run_id in row
        assert f"{run_id}1" not in row


def test_render_shows_rows_with_thousands_separators() -> None:
    text = _full_summary().render()
    assert "20,000" in _row(text, "get_data")
    cleaning = _row(text, "basic_cleaning")
    assert "20,000" in cleaning
    assert "19,500" in cleaning
    assert "3,900" in _row(text, "evaluate")


def test_render_shows_wall_and_work_seconds() -> None:
    row = _row(_full_summary().render(), "get_data")
    assert "4.0" in row
    assert "1.5" in row


def test_reused_step_says_reused() -> None:
    text = _full_summary().render()
    assert "reused" in _row(text, "train")
    assert "reused" not in _row(text, "get_data")


def test_render_shows_registered_model_uri() -> None:
    text = _full_summary().render()
    assert "registered model: housing_price version 3" in text
    assert "models:/housing_price@champion" in text


def test_render_without_promotion_has_no_registered_model_line() -> None:
    text = _summary(steps=[_line("get_data")]).render()
    assert "registered model" not in text
    assert "models:/" not in text


def test_render_shows_mlflow_ui_command_and_parent_run() -> None:
    text = _full_summary().render()
    assert f"mlflow ui --backend-store-uri {TRACKING_URI}" in text
    assert "parent0123" in text
    assert "nyc_airbnb_price" in text
    assert text.endswith("\n")


def test_render_shows_sorted_test_metrics() -> None:
    text = _full_summary().render()
    assert "test metrics: test_mae=31.25, test_r2=0.5679" in text


def test_empty_summary_renders() -> None:
    text = _summary().render()
    assert "Pipeline summary" in text
    assert "mlflow ui --backend-store-uri" in text
    assert "overhead" not in text


def test_overhead_is_wall_minus_work_for_steps_that_ran() -> None:
    summary = _full_summary()
    # get_data 4.0 - 1.5, basic_cleaning 5.0 - 3.0, evaluate 10.0 - 6.0; train was reused.
    assert summary.overhead_seconds == pytest.approx([2.5, 2.0, 4.0])
    assert "(wall - work): 2.83 s on average" in summary.render()


def test_overhead_skips_steps_without_work_seconds() -> None:
    summary = _summary(steps=[_line("a", wall=2.0, work=None), _line("b", wall=3.0, work=1.0)])
    assert summary.overhead_seconds == pytest.approx([2.0])


def test_step_line_reads_rows_and_work_from_metrics() -> None:
    result = StepResult(
        step="basic_cleaning",
        run_id="r" * 32,
        metrics={"rows_in": 20000.0, "rows_out": 19500.0, "work_seconds": 1.25},
        wall_seconds=4.0,
    )
    line = step_line(result)
    assert line == StepLine("basic_cleaning", "r" * 32, False, 4.0, 1.25, 20000, 19500)
    assert isinstance(line.rows_in, int)


def test_step_line_of_reused_result_is_reused() -> None:
    line = step_line(StepResult(step="get_data", run_id="x", reused=True))
    assert line.reused
    assert (line.rows_in, line.rows_out, line.work_seconds) == (None, None, None)


def test_step_line_of_step_without_rows() -> None:
    line = step_line(StepResult(step="promote", run_id="x", metrics={"work_seconds": 0.5}))
    assert (line.rows_in, line.rows_out, line.work_seconds) == (None, None, 0.5)


@pytest.mark.parametrize("uri", ["http://127.0.0.1:5000", "https://mlflow.example.org"])
def test_a_tracking_server_is_opened_in_a_browser_not_with_mlflow_ui(uri: str) -> None:
    text = _summary(tracking_uri=uri).render()
    assert text.splitlines()[-1] == f"look at it all: {uri}"
    assert "mlflow ui" not in text


def test_the_ui_hint_never_shows_a_password() -> None:
    local = _summary(tracking_uri="postgresql://ml:s3cret@db:5432/mlflow").render()
    assert (
        "look at it all: mlflow ui --backend-store-uri postgresql://ml:***@db:5432/mlflow" in local
    )
    served = _summary(tracking_uri="https://ml:s3cret@mlflow.example.org").render()
    assert served.splitlines()[-1] == "look at it all: https://ml:***@mlflow.example.org"
    assert "s3cret" not in local + served
