"""Orchestration overhead benchmark: the pipeline per backend against the steps called in-process.

    python -m benchmarks.orchestration_overhead                    # 20,000 demo rows
    python -m benchmarks.orchestration_overhead --demo-rows 3000   # quicker
    python -m benchmarks.orchestration_overhead --repeats 3        # medians, on a busy machine

Three runs, each a fresh process in a fresh temporary working directory (own SQLite tracking
store, offline W&B, no step cache to hit):

* `local`: `python -m flows.train_pipeline main.backend=local` (what `make run` runs), every
  entry point through MLflow's local backend (`mlflow run` in a subprocess, then the command);
* `warm-fork`: the same with `main.backend=warm-fork` (warm_backend);
* `baseline`: the same seven entry points called in one process, in order, with no Prefect and
  no subprocess: each step's MLflow run is created as the task creates it, and the entry point's
  own `main(parsed args)` is called with the arguments its MLproject command would receive,
  the outputs handed on from the finished runs exactly as the flow hands them on.

Per step: `wall` is the step as the flow saw it (Prefect task, mlflow.projects.run, process
start, imports, the step's work, the hand-off), `work` the entry point's own `work_seconds`
(inside main), `overhead` = wall - work. The end-to-end table is the whole process
(`python -m flows.train_pipeline`, Prefect's temporary API included) and each step's share.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from benchmarks._report import (
    PROJECT_ROOT,
    Report,
    alternating,
    command_line,
    median,
    out,
    run_fresh_process,
)

BACKENDS = ("local", "warm-fork")
OVERHEAD_BOUND_S = 1.5
RATIO_BOUND = 2.0


def run_child(mode: str, demo_rows: int, work_dir: Path, verbose: bool) -> dict[str, Any]:
    """One fresh process in `work_dir`; its figures plus the process's own wall time."""
    arguments = ["--child", mode, "--demo-rows", str(demo_rows)]
    return run_fresh_process("benchmarks.orchestration_overhead", arguments, work_dir, verbose)


# -- the child processes ----------------------------------------------------------------------


def _overrides(demo_rows: int, backend: str | None) -> list[str]:
    overrides = [f"data.demo_rows={demo_rows}"]
    return [*overrides, f"main.backend={backend}"] if backend else overrides


def child_pipeline(backend: str, demo_rows: int) -> dict[str, Any]:
    """What `python -m flows.train_pipeline main.backend=...` does, keeping the summary."""
    from flows.train_pipeline import train_pipeline
    from orchestration.runtime import prepare_process

    prepare_process()
    started = time.perf_counter()
    summary = train_pipeline(overrides=_overrides(demo_rows, backend))
    flow_seconds = time.perf_counter() - started
    steps = [
        {"step": line.step, "wall": line.wall_seconds, "work": line.work_seconds}
        for line in summary.steps
    ]
    return {"mode": backend, "flow_seconds": flow_seconds, "steps": steps}


def child_baseline(demo_rows: int) -> dict[str, Any]:
    """The same entry points' `main(args)`, one after another, in this one process."""
    import importlib

    import mlflow
    from mlflow.projects.utils import load_project

    from orchestration.config import load_config
    from orchestration.runtime import configure_services, prepare_process
    from orchestration.step_runner import step_parameters
    from orchestration.step_table import SPEC_BY_NAME
    from steps.contract import normalize
    from tasks.tracking_store import ensure_experiment, outputs_of
    from warm_backend.protocol import parse_module_command

    prepare_process()
    started = time.perf_counter()
    cfg = load_config(_overrides(demo_rows, None))
    start_dir = Path.cwd()
    configure_services(cfg, start_dir, group="baseline")
    experiment_id = ensure_experiment(cfg.main.experiment_name)
    client = mlflow.MlflowClient()
    project = load_project(str(PROJECT_ROOT))
    outputs: dict[str, dict[str, str]] = {}
    steps = []
    for step in cfg.main.steps:
        step_started = time.perf_counter()
        parameters = step_parameters(step, cfg, start_dir)
        for parameter, (upstream, output) in SPEC_BY_NAME[step].inputs.items():
            parameters[parameter] = outputs[upstream][output]
        normalized = normalize(parameters)
        run_id = client.create_run(experiment_id, run_name=step).info.run_id
        command = project.get_entry_point(step).compute_command(normalized, tempfile.mkdtemp())
        parsed = parse_module_command(command)
        assert parsed is not None, command
        module = importlib.import_module(parsed.module)
        os.environ["MLFLOW_RUN_ID"] = run_id
        args = module.build_parser().parse_args(list(parsed.args))
        work_started = time.perf_counter()
        module.main(args)
        work = time.perf_counter() - work_started
        os.environ.pop("MLFLOW_RUN_ID", None)  # start_run consumes it
        outputs[step] = outputs_of(client.get_run(run_id))
        steps.append({"step": step, "wall": time.perf_counter() - step_started, "work": work})
    return {"mode": "baseline", "flow_seconds": time.perf_counter() - started, "steps": steps}


# -- the report -------------------------------------------------------------------------------


def _after_first(figures: dict[str, Any]) -> list[dict[str, Any]]:
    return figures["steps"][1:]


def _overhead(step: dict[str, Any]) -> float:
    return float(step["wall"] - (step["work"] or 0.0))


def report_figures(report: Report, runs: dict[str, dict[str, Any]], demo_rows: int) -> None:
    baseline = runs["baseline"]
    names = [step["step"] for step in baseline["steps"]]
    headers = ["step"]
    for mode in (*BACKENDS, "baseline"):
        headers += [f"{mode} wall s", f"{mode} work s"]
        if mode != "baseline":
            headers.append(f"{mode} overhead s")
    rows = []
    for index, name in enumerate(names):
        row: list[Any] = [name]
        for mode in (*BACKENDS, "baseline"):
            step = runs[mode]["steps"][index]
            row += [step["wall"], step["work"]]
            if mode != "baseline":
                row.append(_overhead(step))
        rows.append(row)
    report.table(f"Per step ({demo_rows:,} demo rows)", headers, rows)

    summary_rows = []
    for mode in (*BACKENDS, "baseline"):
        figures = runs[mode]
        steps_total = sum(step["wall"] for step in figures["steps"])
        later = [_overhead(step) for step in _after_first(figures)]
        summary_rows.append(
            [
                mode,
                _overhead(figures["steps"][0]) if mode != "baseline" else None,
                sum(later) / len(later) if mode != "baseline" else None,
                max(later) if mode != "baseline" else None,
                steps_total,
                steps_total / sum(step["wall"] for step in baseline["steps"]),
                figures["process_seconds"],
                figures["process_seconds"] / baseline["process_seconds"],
            ]
        )
    report.table(
        "Totals (overhead = wall - work; steps = sum of step walls; process = whole command)",
        [
            "run",
            "1st step overhead s",
            "mean overhead after 1st s",
            "max overhead after 1st s",
            "steps s",
            "steps / baseline",
            "process s",
            "process / baseline",
        ],
        summary_rows,
    )
    warm = runs["warm-fork"]
    warm_max = max(_overhead(step) for step in _after_first(warm))
    steps_ratio = sum(s["wall"] for s in warm["steps"]) / sum(s["wall"] for s in baseline["steps"])
    report.target(
        "warm-fork: max overhead per step after the first (s)",
        warm_max,
        f"<= {OVERHEAD_BOUND_S}",
        warm_max <= OVERHEAD_BOUND_S,
    )
    report.target(
        "warm-fork pipeline steps / in-process baseline",
        steps_ratio,
        f"<= {RATIO_BOUND}",
        steps_ratio <= RATIO_BOUND,
    )

    for mode in BACKENDS:
        figures = runs[mode]
        process = figures["process_seconds"]
        share_rows = [
            [step["step"], step["wall"], 100.0 * step["wall"] / process]
            for step in figures["steps"]
        ]
        steps_total = sum(step["wall"] for step in figures["steps"])
        share_rows.append(
            ["(outside the steps)", process - steps_total, 100 * (1 - steps_total / process)]
        )
        share_rows.append(["total: python -m flows.train_pipeline", process, 100.0])
        report.table(
            f"End to end, main.backend={mode}: share of the wall time",
            ["part", "wall s", "share %"],
            share_rows,
        )


def median_run(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """Per step, the median wall and work over the repeats; the median process time."""
    steps = []
    for index, step in enumerate(runs[0]["steps"]):
        works = [run["steps"][index]["work"] for run in runs]
        steps.append(
            {
                "step": step["step"],
                "wall": median([run["steps"][index]["wall"] for run in runs]),
                "work": median(works) if None not in works else None,
            }
        )
    return {"steps": steps, "process_seconds": median([run["process_seconds"] for run in runs])}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="benchmarks.orchestration_overhead", description=__doc__)
    parser.add_argument("--demo-rows", type=int, default=20_000)
    parser.add_argument("--repeats", type=int, default=1, help="medians over this many runs")
    parser.add_argument("--results-dir", type=Path, default=None)
    parser.add_argument("--check", action="store_true", help="exit 1 when a target is missed")
    parser.add_argument("--verbose", action="store_true", help="show the runs' own output")
    parser.add_argument("--child", choices=[*BACKENDS, "baseline"], help=argparse.SUPPRESS)
    parser.add_argument("--figures", type=Path, help=argparse.SUPPRESS)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.child:
        if args.child == "baseline":
            figures = child_baseline(args.demo_rows)
        else:
            figures = child_pipeline(args.child, args.demo_rows)
        args.figures.write_text(json.dumps(figures, indent=2))
        return 0

    report = Report("orchestration_overhead", command_line())
    every: dict[str, list[dict[str, Any]]] = {mode: [] for mode in ("baseline", *BACKENDS)}
    order = list(every)
    for repeat, mode in alternating(order, args.repeats):
        with tempfile.TemporaryDirectory(prefix=f"bench-{mode}-") as work_dir:
            out(f"run {repeat + 1}/{args.repeats}: {mode} in {work_dir} ...")
            figures = run_child(mode, args.demo_rows, Path(work_dir), args.verbose)
            figures["load_average_1min"] = os.getloadavg()[0]
            every[mode].append(figures)
            out(f"  {mode}: {figures['process_seconds']:.1f} s")
    runs = {mode: median_run(figures) for mode, figures in every.items()}
    report_figures(report, runs, args.demo_rows)
    report.extra["demo_rows"] = args.demo_rows
    report.extra["repeats"] = args.repeats
    report.extra["load_average_1min"] = [f["load_average_1min"] for f in every["warm-fork"]]
    report.extra["runs"] = every
    report.finish(args.results_dir)
    return 1 if args.check and not report.all_met else 0


if __name__ == "__main__":
    sys.exit(main())
