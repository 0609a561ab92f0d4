"""Scale benchmark: each step's wall time and peak memory as the demo data grows.

    python -m benchmarks.scale                                  # 100k, 1M, 5M rows, both models
    python -m benchmarks.scale --rows 20000 100000 --models torch_lasso

Each run is `python -m flows.train_pipeline data.demo_rows=N model=M` (the flow's own
`train_pipeline`) in a fresh process and a fresh temporary working directory (own SQLite store,
offline W&B, no step cache to hit), one size and model after another (a 5M-row run needs the
machine's memory to itself). Per step it reads back from the step's MLflow run what the entry
point recorded about itself (steps/common/entrypoint.py):

* `work_seconds`: the step's own work, without process start and imports;
* `peak_rss_mb`: the peak resident memory of the step's own process (`ru_maxrss`). On the
  warm-fork backend that process is a child forked from the server, so its peak includes the
  server's preloaded libraries it inherited (`start_rss_mb`, what was resident when the step's
  work began, is that baseline);

and the flow process's own peak, which holds no data. The work exponent of a step is the slope
of log(work) against log(rows) over the sizes measured (least squares): 1 is linear. Fixed costs
(a model's logging, MLflow calls) weigh at the smallest size, so a step's exponent is usually
below its asymptotic one; the bound allows measurement noise on a shared machine.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from benchmarks._report import Report, command_line, out, run_fresh_process

DEFAULT_ROWS = (100_000, 1_000_000, 5_000_000)
DEFAULT_MODELS = ("torch_lasso", "hist_gradient_boosting")
# Peak RSS of every step's process, MiB, per model (issue 18: 4 GiB and 8 GiB at 5M rows).
MEMORY_BOUND_MB: dict[str, float] = {"torch_lasso": 4096.0, "hist_gradient_boosting": 8192.0}
# "Grows at most linearly": the fitted exponent of work against rows, with room for noise.
EXPONENT_BOUND = 1.1
# Steps whose work below this many seconds at the largest size is fixed cost, not growth: their
# exponent is printed but not held to the bound (a 2 s step's noise is its whole slope).
MIN_SECONDS_FOR_EXPONENT = 5.0


# -- the child process ------------------------------------------------------------------------


def child_pipeline(rows: int, model: str) -> dict[str, Any]:
    """What `python -m flows.train_pipeline data.demo_rows=N model=M` does; then each step's own
    figures, read back from its MLflow run."""
    import resource
    import time

    import mlflow

    from flows.train_pipeline import train_pipeline
    from orchestration.runtime import prepare_process

    prepare_process()
    started = time.perf_counter()
    summary = train_pipeline(overrides=[f"data.demo_rows={rows}", f"model={model}"])
    flow_seconds = time.perf_counter() - started
    client = mlflow.MlflowClient()
    steps = []
    for line in summary.steps:
        metrics = client.get_run(line.run_id).data.metrics
        steps.append(
            {
                "step": line.step,
                "wall": line.wall_seconds,
                "work": metrics.get("work_seconds"),
                "peak_rss_mb": metrics.get("peak_rss_mb"),
                "start_rss_mb": metrics.get("start_rss_mb"),
            }
        )
    return {
        "rows": rows,
        "model": model,
        "flow_seconds": flow_seconds,
        "flow_peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0,
        "test_metrics": summary.test_metrics,
        "steps": steps,
    }


# -- the report -------------------------------------------------------------------------------


def fitted_exponent(rows: Sequence[float], seconds: Sequence[float]) -> float | None:
    """Least-squares slope of log(seconds) on log(rows); None with fewer than two sizes."""
    points = [(math.log(r), math.log(s)) for r, s in zip(rows, seconds, strict=True) if s > 0]
    if len({x for x, _ in points}) < 2:
        return None
    mean_x = sum(x for x, _ in points) / len(points)
    mean_y = sum(y for _, y in points) / len(points)
    sxx = sum((x - mean_x) ** 2 for x, _ in points)
    sxy = sum((x - mean_x) * (y - mean_y) for x, y in points)
    return sxy / sxx


def report_figures(report: Report, runs: list[dict[str, Any]]) -> None:
    """Per model: a table of every step at every size, the exponents and the targets."""
    for model in dict.fromkeys(run["model"] for run in runs):
        mine = sorted((run for run in runs if run["model"] == model), key=lambda r: r["rows"])
        sizes = [run["rows"] for run in mine]
        names = [step["step"] for step in mine[0]["steps"]]
        headers = ["step"]
        for size in sizes:
            headers += [f"{size:,} wall s", f"{size:,} work s", f"{size:,} peak MiB"]
        headers.append("work exponent")
        table_rows = []
        exponents: dict[str, float | None] = {}
        for index, name in enumerate(names):
            row: list[Any] = [name]
            works = []
            for run in mine:
                step = run["steps"][index]
                row += [step["wall"], step["work"], step["peak_rss_mb"]]
                works.append(step["work"] or 0.0)
            exponents[name] = fitted_exponent(sizes, works)
            row.append(exponents[name])
            table_rows.append(row)
        flow_row: list[Any] = ["(flow process)"]
        for run in mine:
            flow_row += [run["flow_seconds"], None, run["flow_peak_rss_mb"]]
        table_rows.append([*flow_row, None])
        report.table(f"{model}: per step (peak = the step's own process)", headers, table_rows)

        baseline = [[run["rows"], *(s["start_rss_mb"] for s in run["steps"])] for run in mine]
        report.table(
            f"{model}: resident MiB when each step's work began (inherited from the fork server)",
            ["rows", *names],
            baseline,
        )
        scores = [[run["rows"], *run["test_metrics"].values()] for run in mine]
        report.table(f"{model}: test scores", ["rows", *mine[0]["test_metrics"]], scores)

        bound = MEMORY_BOUND_MB.get(model, min(MEMORY_BOUND_MB.values()))
        largest = mine[-1]
        peak_step = max(largest["steps"], key=lambda s: s["peak_rss_mb"] or 0.0)
        peak = float(peak_step["peak_rss_mb"] or 0.0)
        report.target(
            f"{model}: peak RSS of every step at {largest['rows']:,} rows (MiB, "
            f"{peak_step['step']})",
            peak,
            f"<= {bound:,.0f}",
            peak <= bound,
        )
        if len(sizes) < 2:
            continue
        held = [
            (name, value)
            for index, (name, value) in enumerate(exponents.items())
            if value is not None
            and (largest["steps"][index]["work"] or 0.0) >= MIN_SECONDS_FOR_EXPONENT
        ]
        if held:
            name, steepest = max(held, key=lambda item: item[1])
            report.target(
                f"{model}: steepest work exponent of a step ({name})",
                steepest,
                f"<= {EXPONENT_BOUND}",
                steepest <= EXPONENT_BOUND,
            )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="benchmarks.scale",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--rows", type=int, nargs="+", default=list(DEFAULT_ROWS))
    parser.add_argument("--models", nargs="+", default=list(DEFAULT_MODELS))
    parser.add_argument("--results-dir", type=Path, default=None)
    parser.add_argument("--check", action="store_true", help="exit 1 when a target is missed")
    parser.add_argument("--verbose", action="store_true", help="show the runs' own output")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--figures", type=Path, help=argparse.SUPPRESS)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.child:
        figures = child_pipeline(args.rows[0], args.models[0])
        args.figures.write_text(json.dumps(figures, indent=2))
        return 0

    report = Report("scale", command_line())
    runs = []
    for model in args.models:
        for rows in sorted(args.rows):
            with tempfile.TemporaryDirectory(prefix=f"bench-scale-{model}-") as work_dir:
                out(f"{model}, {rows:,} rows in {work_dir} ...")
                arguments = ["--child", "--rows", str(rows), "--models", model]
                figures = run_fresh_process(
                    "benchmarks.scale", arguments, Path(work_dir), args.verbose
                )
                figures["load_average_1min"] = os.getloadavg()[0]
                runs.append(figures)
                peak = max(step["peak_rss_mb"] or 0.0 for step in figures["steps"])
                out(f"  {figures['process_seconds']:.1f} s, largest step peak {peak:,.0f} MiB")
    report_figures(report, runs)
    report.extra["runs"] = runs
    report.finish(args.results_dir)
    return 1 if args.check and not report.all_met else 0


if __name__ == "__main__":
    sys.exit(main())
