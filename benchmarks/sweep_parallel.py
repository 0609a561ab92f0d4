"""Sweep benchmark: the variants on two Dask workers against the same variants one after another.

    python -m benchmarks.sweep_parallel                      # conf/sweep/models.yaml, 20,000 rows
    python -m benchmarks.sweep_parallel --repeats 3          # medians, on a busy machine
    python -m benchmarks.sweep_parallel --sweep lasso_alpha --workers 4

Each run is `python -m flows.sweep` (the flow's own `sweep`) in a fresh process and a fresh
temporary working directory (own SQLite store, offline W&B, no step cache to hit), on the same
variants and data:

* `one after another`: a local Dask cluster of one worker: the variants train and evaluate in
  turn, each step with every core for its math libraries;
* `parallel`: `--workers` workers (2 by default): as many variants at once, the cores shared.

The figure that counts is the variants' part of the sweep (first variant submitted to last one
evaluated, `variants_seconds`); the shared steps, the promotion and the process around them are
the same work in both and are shown apart. Both runs must pick the same winner with the same
scores: the parallel sweep changes when things run, not what they compute.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import tempfile
from pathlib import Path
from typing import Any

from benchmarks._report import (
    Report,
    alternating,
    command_line,
    median,
    out,
    run_fresh_process,
)

# "Clearly less time": at most this share of the one-after-another time.
RATIO_BOUND = 0.8
MODES = ("one after another", "parallel")
# Math libraries sum in another order with another thread count: the last digits may differ.
SCORE_TOLERANCE = 1e-9


def _overrides(sweep: str, demo_rows: int, workers: int) -> list[str]:
    return [f"sweep={sweep}", f"data.demo_rows={demo_rows}", f"sweep.dask.n_workers={workers}"]


def child_sweep(sweep: str, demo_rows: int, workers: int) -> dict[str, Any]:
    """What `python -m flows.sweep ...` does, keeping the summary's figures."""
    from flows.sweep import sweep as sweep_flow
    from orchestration.runtime import prepare_process

    prepare_process()
    summary = sweep_flow(overrides=_overrides(sweep, demo_rows, workers))
    best = summary.best
    return {
        "workers": workers,
        "runner": summary.runner,
        "variants_seconds": summary.variants_seconds,
        "shared_seconds": sum(
            line.wall_seconds
            for line in summary.pipeline.steps
            if line.step not in ("train", "evaluate")
        ),
        "best": best.label if best else None,
        "variants": [
            {
                "label": line.label,
                "score": line.selection_score,
                "test_mae": line.test_metrics.get("test_mae"),
                "wall_seconds": line.wall_seconds,
            }
            for line in summary.variants
        ],
    }


def report_figures(
    report: Report, runs: dict[str, list[dict[str, Any]]], workers: int
) -> dict[str, float]:
    """The tables and targets from every run of both modes; the medians by mode."""
    medians = {
        mode: {
            key: median([run[key] for run in figures])
            for key in ("variants_seconds", "shared_seconds", "process_seconds")
        }
        for mode, figures in runs.items()
    }
    sequential, parallel = (medians[mode] for mode in MODES)
    ratio = parallel["variants_seconds"] / sequential["variants_seconds"]
    report.table(
        f"Sweep of {len(runs[MODES[0]][0]['variants'])} variants (median of "
        f"{len(runs[MODES[0]])})",
        ["mode", "workers", "variants s", "x one after another", "shared steps s", "process s"],
        [
            [mode, runs[mode][0]["workers"], m["variants_seconds"],
             m["variants_seconds"] / sequential["variants_seconds"], m["shared_seconds"],
             m["process_seconds"]]
            for mode, m in medians.items()
        ],
    )  # fmt: skip
    first = {mode: figures[0] for mode, figures in runs.items()}
    report.table(
        "Variants (first run of each mode; score = the validation metric that picks the winner)",
        ["variant", "score", "test_mae", "wall s one after another", "wall s parallel"],
        [
            [a["label"], a["score"], a["test_mae"], a["wall_seconds"], b["wall_seconds"]]
            for a, b in zip(first[MODES[0]]["variants"], first[MODES[1]]["variants"], strict=True)
        ],
    )
    reference = first[MODES[0]]
    same = all(
        run["best"] == reference["best"]
        and all(
            math.isclose(mine["score"], theirs["score"], rel_tol=SCORE_TOLERANCE)
            for mine, theirs in zip(run["variants"], reference["variants"], strict=True)
        )
        for figures in runs.values()
        for run in figures
    )
    report.target(
        f"variants on {workers} workers / one after another",
        ratio,
        f"<= {RATIO_BOUND}",
        ratio <= RATIO_BOUND,
    )
    report.target("same winner and scores in both modes", same, "yes", same)
    return {"ratio": ratio}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="benchmarks.sweep_parallel", description=__doc__)
    parser.add_argument("--sweep", default="models", help="a sweep of conf/sweep/ (>= 4 variants)")
    parser.add_argument("--demo-rows", type=int, default=20_000)
    parser.add_argument("--workers", type=int, default=2, help="Dask workers of the parallel run")
    parser.add_argument("--repeats", type=int, default=1, help="medians over this many runs")
    parser.add_argument("--results-dir", type=Path, default=None)
    parser.add_argument("--check", action="store_true", help="exit 1 when a target is missed")
    parser.add_argument("--verbose", action="store_true", help="show the runs' own output")
    parser.add_argument("--child-workers", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--figures", type=Path, help=argparse.SUPPRESS)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.child_workers:
        figures = child_sweep(args.sweep, args.demo_rows, args.child_workers)
        args.figures.write_text(json.dumps(figures, indent=2))
        return 0

    report = Report("sweep_parallel", command_line())
    workers = {MODES[0]: 1, MODES[1]: args.workers}
    runs: dict[str, list[dict[str, Any]]] = {mode: [] for mode in MODES}
    for repeat, mode in alternating(MODES, args.repeats):
        with tempfile.TemporaryDirectory(prefix="bench-sweep-") as work_dir:
            out(f"run {repeat + 1}/{args.repeats}: {mode} ({workers[mode]} workers) ...")
            arguments = ["--sweep", args.sweep, "--demo-rows", str(args.demo_rows)]
            arguments += ["--child-workers", str(workers[mode])]
            figures = run_fresh_process(
                "benchmarks.sweep_parallel", arguments, Path(work_dir), args.verbose
            )
            figures["load_average_1min"] = os.getloadavg()[0]
            runs[mode].append(figures)
            out(
                f"  {mode}: variants {figures['variants_seconds']:.1f} s, "
                f"process {figures['process_seconds']:.1f} s"
            )
    report.extra |= report_figures(report, runs, args.workers)
    report.extra |= {"demo_rows": args.demo_rows, "sweep": args.sweep, "runs": runs}
    report.finish(args.results_dir)
    return 1 if args.check and not report.all_met else 0


if __name__ == "__main__":
    sys.exit(main())
