"""The orchestration benchmark's tables and targets from given figures (no pipeline is run)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from benchmarks._report import Report
from benchmarks.orchestration_overhead import report_figures

STEPS = ("get_data", "basic_cleaning", "train")


def _run(walls: tuple[float, ...], works: tuple[float, ...], process: float) -> dict[str, Any]:
    return {
        "steps": [
            {"step": name, "wall": wall, "work": work}
            for name, wall, work in zip(STEPS, walls, works, strict=True)
        ],
        "process_seconds": process,
    }


def test_overhead_after_the_first_step_and_ratios_decide_the_targets(tmp_path: Path) -> None:
    runs = {
        "local": _run((6.0, 6.0, 8.0), (1.0, 1.0, 2.0), 60.0),
        "warm-fork": _run((6.0, 1.2, 2.3), (1.0, 1.0, 2.0), 25.0),
        "baseline": _run((1.0, 1.0, 2.0), (1.0, 1.0, 2.0), 10.0),
    }
    report = Report("orchestration_overhead", "test")
    report_figures(report, runs, demo_rows=100)
    report.finish(tmp_path)

    targets = {t.name: t for t in report.targets}
    overhead = targets["warm-fork: max overhead per step after the first (s)"]
    assert abs(float(overhead.measured) - 0.3) < 1e-9  # the 5 s of the first step is left out
    assert overhead.met
    ratio = targets["warm-fork pipeline steps / in-process baseline"]
    assert abs(float(ratio.measured) - 9.5 / 4.0) < 1e-9
    assert not ratio.met

    data = json.loads((tmp_path / "orchestration_overhead.json").read_text())
    shares = data["tables"]["End to end, main.backend=warm-fork: share of the wall time"]["rows"]
    assert shares[-1] == ["total: python -m flows.train_pipeline", 25.0, 100.0]
    assert abs(sum(row[2] for row in shares[:-1]) - 100.0) < 1e-9
