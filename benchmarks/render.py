"""Print the figures of the latest benchmark runs from their JSON files, as the benchmarks did.

    python -m benchmarks.render                      # every benchmarks/results/*.json
    python -m benchmarks.render ingest lasso         # those benchmarks only
    python -m benchmarks.render --results-dir DIR    # figures written with --results-dir DIR

The docs state no measured figure of their own: figures depend on the machine and its load, and
a number pasted into a page goes stale with the next change. Each benchmark writes its tables to
benchmarks/results/<name>.json (git-ignored); this prints them again, with the command that
produced them, the machine they were measured on and the command that measures them anew.
Exit code 1 when a benchmark asked for (or any, when none is named) has no results yet.
"""

from __future__ import annotations

import argparse
import json
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from benchmarks._report import RESULTS_DIR, format_table, out

# What measures each benchmark's figures anew (docs/benchmarks.md describes each one).
REPRODUCE = {
    "ingest": "make bench-ingest",
    "lasso": "make bench-lasso",
    "lasso_cuda": "python -m benchmarks.lasso --device cuda",
    "model_quality": "make bench-quality",
    "orchestration_overhead": "make bench-overhead",
    "fault_injection": "make bench-faults",
    "sweep_parallel": "make bench-sweep",
    "scale": "make bench-scale",
}


def _machine(environment: dict[str, Any]) -> str:
    """One line naming the machine and the library versions the figures belong to."""
    parts = [f"python {environment.get('python', '?')}", str(environment.get("machine", "?"))]
    if environment.get("cpus"):
        parts.append(f"{environment['cpus']} CPUs")
    parts += [
        f"{module} {environment[module]}"
        for module in ("numpy", "pandas", "pyarrow", "sklearn", "torch")
        if environment.get(module)
    ]
    return ", ".join(parts)


def render(path: Path) -> str:
    """The text of one results file: where it came from, then every table it holds."""
    data: dict[str, Any] = json.loads(path.read_text())
    name = str(data.get("benchmark", path.stem))
    written = datetime.fromtimestamp(path.stat().st_mtime, tz=UTC).strftime("%Y-%m-%d %H:%M UTC")
    lines = [
        f"== {name}",
        f"measured by: {data.get('command', '?')}  (written {written})",
        f"machine: {_machine(data.get('environment', {}))}",
        f"measure again: {REPRODUCE.get(name, 'python -m benchmarks.' + name)}",
    ]
    for title, table in data.get("tables", {}).items():
        lines += ["", title, format_table(table["headers"], table["rows"])]
    return "\n".join(lines)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="benchmarks.render",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("names", nargs="*", help="benchmarks to print (default: every one found)")
    parser.add_argument("--results-dir", type=Path, default=RESULTS_DIR)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    folder: Path = args.results_dir
    if args.names:
        paths = [folder / f"{name}.json" for name in args.names]
    else:
        paths = sorted(folder.glob("*.json"))
    missing = [path for path in paths if not path.is_file()]
    for path in missing:
        how = REPRODUCE.get(path.stem, f"python -m benchmarks.{path.stem}")
        sys.stderr.write(f"no results for {path.stem} in {folder}: run {how} first\n")
    if not paths:
        sys.stderr.write(f"no benchmark results in {folder}: run make bench (or one bench-*)\n")
        return 1
    found = [path for path in paths if path.is_file()]
    for index, path in enumerate(found):
        if index:
            out()
        out(render(path))
    return 1 if missing else 0


if __name__ == "__main__":
    raise SystemExit(main())
