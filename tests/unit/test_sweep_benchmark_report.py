"""The sweep benchmark's tables and targets from given figures (no sweep is run)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from benchmarks._report import Report
from benchmarks.sweep_parallel import MODES, report_figures


def _run(workers: int, variants_s: float, scores: list[float], best: str = "a") -> dict[str, Any]:
    return {
        "workers": workers,
        "variants_seconds": variants_s,
        "shared_seconds": 5.0,
        "process_seconds": variants_s + 20.0,
        "best": best,
        "variants": [
            {"label": label, "score": score, "test_mae": score, "wall_seconds": 1.0}
            for label, score in zip("abcd", scores, strict=True)
        ],
    }


def _targets(runs: dict[str, list[dict[str, Any]]], tmp_path: Path) -> dict[str, Any]:
    report = Report("sweep_parallel", "test")
    figures = report_figures(report, runs, workers=2)
    report.finish(tmp_path)
    written = json.loads((tmp_path / "sweep_parallel.json").read_text())
    assert written["targets"]
    return {"ratio": figures["ratio"], **{t.name: t for t in report.targets}}


def test_the_medians_ratio_decides_and_last_digit_noise_is_the_same_score(tmp_path: Path) -> None:
    scores = [25.384173766333603, 25.36, 32.2, 25.6]
    noisy = [25.38417376633356, 25.36, 32.2, 25.6]  # another thread count's summation order
    runs = {
        MODES[0]: [_run(1, 20.0, scores), _run(1, 22.0, scores), _run(1, 30.0, scores)],
        MODES[1]: [_run(2, 14.0, noisy), _run(2, 13.0, noisy), _run(2, 40.0, noisy)],
    }
    targets = _targets(runs, tmp_path)
    assert abs(targets["ratio"] - 14.0 / 22.0) < 1e-12
    assert targets["variants on 2 workers / one after another"].met
    assert targets["same winner and scores in both modes"].met


def test_a_slow_parallel_sweep_or_another_winner_misses_the_targets(tmp_path: Path) -> None:
    scores = [25.4, 25.3, 32.2, 25.6]
    runs = {
        MODES[0]: [_run(1, 20.0, scores, best="b")],
        MODES[1]: [_run(2, 19.0, [25.4, 25.3, 32.2, 25.2], best="d")],
    }
    targets = _targets(runs, tmp_path)
    assert not targets["variants on 2 workers / one after another"].met
    assert not targets["same winner and scores in both modes"].met


def test_runs_alternate_the_order_of_the_modes() -> None:
    from benchmarks._report import alternating

    assert list(alternating(("a", "b"), 3)) == [
        (0, "a"), (0, "b"), (1, "b"), (1, "a"), (2, "a"), (2, "b"),
    ]  # fmt: skip
