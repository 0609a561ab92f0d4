"""The scale benchmark's tables, exponents and targets from given figures (no pipeline is run)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from benchmarks._report import Report
from benchmarks.scale import MEMORY_BOUND_MB, fitted_exponent, report_figures

STEPS = ("get_data", "train")


def _run(model: str, rows: int, works: tuple[float, float], peaks: tuple[float, float]) -> Any:
    return {
        "rows": rows,
        "model": model,
        "flow_seconds": sum(works) + 10,
        "flow_peak_rss_mb": 300.0,
        "test_metrics": {"test_mae": 25.0, "test_r2": 0.77},
        "steps": [
            {"step": name, "wall": work + 1, "work": work, "peak_rss_mb": peak, "start_rss_mb": 400}
            for name, work, peak in zip(STEPS, works, peaks, strict=True)
        ],
    }


def test_the_exponent_is_the_slope_on_log_scales() -> None:
    assert abs(fitted_exponent([1e5, 1e6, 5e6], [1.0, 10.0, 50.0]) - 1.0) < 1e-12  # type: ignore[operator]
    assert abs(fitted_exponent([1e5, 1e6], [1.0, 100.0]) - 2.0) < 1e-12  # type: ignore[operator]
    assert fitted_exponent([1e5], [3.0]) is None


def test_memory_at_the_largest_size_and_the_steepest_exponent_decide(tmp_path: Path) -> None:
    bound = MEMORY_BOUND_MB["torch_lasso"]
    runs = [
        _run("torch_lasso", 100_000, (2.0, 3.0), (600.0, 900.0)),
        # get_data grows linearly but train quadratically; train's peak passes the bound.
        _run("torch_lasso", 1_000_000, (20.0, 300.0), (700.0, bound + 1)),
    ]
    report = Report("scale", "test")
    report_figures(report, runs)
    report.finish(tmp_path)

    memory, exponent = report.targets
    assert "train" in memory.name and memory.measured == bound + 1 and not memory.met
    assert "(train)" in exponent.name and abs(float(exponent.measured) - 2.0) < 1e-9
    assert not exponent.met

    data = json.loads((tmp_path / "scale.json").read_text())
    table = data["tables"]["torch_lasso: per step (peak = the step's own process)"]
    assert [row[0] for row in table["rows"]] == [*STEPS, "(flow process)"]
    assert abs(table["rows"][0][-1] - 1.0) < 1e-9  # get_data's exponent


def test_steps_with_little_work_are_not_held_to_the_exponent(tmp_path: Path) -> None:
    runs = [
        _run("hist_gradient_boosting", 100_000, (0.5, 3.0), (600.0, 900.0)),
        _run("hist_gradient_boosting", 1_000_000, (2.0, 30.0), (700.0, 2000.0)),
    ]
    report = Report("scale", "test")
    report_figures(report, runs)
    memory, exponent = report.targets
    assert memory.met and exponent.met
    assert "(train)" in exponent.name  # get_data's 0.6 slope at 2 s of work is not counted
