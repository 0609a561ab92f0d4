"""What every benchmark shares: the figures table, the JSON file, and the machine it ran on.

Tables go to stdout (they are the benchmark's output, not log lines); figures go to
benchmarks/results/<name>.json (git-ignored), or to the folder named by --results-dir.
"""

from __future__ import annotations

import json
import os
import platform
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

PROJECT_ROOT = Path(__file__).resolve().parents[1]
RESULTS_DIR = PROJECT_ROOT / "benchmarks" / "results"


def out(text: str = "") -> None:
    """Write one line of benchmark output to stdout."""
    sys.stdout.write(text + "\n")
    sys.stdout.flush()


def _cell(value: Any) -> str:
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        if value != 0 and (abs(value) < 1e-3 or abs(value) >= 1e6):
            return f"{value:.3e}"
        return f"{value:,.3f}" if abs(value) < 100 else f"{value:,.1f}"
    if isinstance(value, int):
        return f"{value:,}"
    return "" if value is None else str(value)


def format_table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """A plain-text table, numbers right-aligned, as in the README."""
    cells = [[_cell(v) for v in row] for row in rows]
    widths = [max(len(h), *(len(r[i]) for r in cells)) for i, h in enumerate(headers)]
    numeric = [
        all(isinstance(row[i], int | float) and not isinstance(row[i], bool) for row in rows)
        for i in range(len(headers))
    ]

    def line(values: Sequence[str]) -> str:
        return "  ".join(
            v.rjust(w) if num else v.ljust(w)
            for v, w, num in zip(values, widths, numeric, strict=True)
        ).rstrip()

    return "\n".join([line(headers), "-" * len(line(headers)), *(line(r) for r in cells)])


@dataclass
class Target:
    """One goal of the issue: what was measured against what bound, and whether it held."""

    name: str
    measured: float | bool
    bound: str
    met: bool


@dataclass
class Report:
    """Figures of one benchmark run, printed as tables and written as one JSON file."""

    name: str
    command: str
    tables: dict[str, dict[str, Any]] = field(default_factory=dict)
    targets: list[Target] = field(default_factory=list)
    extra: dict[str, Any] = field(default_factory=dict)

    def table(self, title: str, headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
        self.tables[title] = {"headers": list(headers), "rows": [list(r) for r in rows]}
        out()
        out(title)
        out(format_table(headers, rows))

    def target(self, name: str, measured: float | bool, bound: str, met: bool) -> None:
        self.targets.append(Target(name, measured, bound, bool(met)))

    def finish(self, results_dir: Path | None) -> Path:
        """Print the targets, write the JSON file, return its path."""
        if self.targets:
            self.table(
                "Targets",
                ["target", "measured", "bound", "met"],
                [[t.name, t.measured, t.bound, t.met] for t in self.targets],
            )
        folder = results_dir or RESULTS_DIR
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / f"{self.name}.json"
        payload = {
            "benchmark": self.name,
            "command": self.command,
            "environment": environment(),
            "tables": self.tables,
            "targets": [t.__dict__ for t in self.targets],
            **self.extra,
        }
        path.write_text(json.dumps(payload, indent=2, default=str) + "\n")
        out()
        out(f"figures written to {path}")
        return path

    @property
    def all_met(self) -> bool:
        return all(t.met for t in self.targets)


def command_line() -> str:
    """How this benchmark was started, for the JSON and the README."""
    module = sys.modules["__main__"].__spec__
    name = module.name if module is not None else sys.argv[0]
    return " ".join(["python -m", name, *sys.argv[1:]])


def environment() -> dict[str, Any]:
    """The machine and library versions the figures belong to."""
    info: dict[str, Any] = {
        "python": platform.python_version(),
        "machine": platform.machine(),
        "cpus": os.cpu_count(),
        "openblas_coretype": os.environ.get("OPENBLAS_CORETYPE"),
    }
    for module in ("numpy", "pandas", "pyarrow", "sklearn", "torch"):
        try:
            info[module] = __import__(module).__version__
        except ImportError:  # pragma: no cover - every benchmark imports what it measures
            continue
    try:
        from threadpoolctl import threadpool_info

        info["blas"] = [
            {k: pool.get(k) for k in ("internal_api", "architecture", "num_threads", "version")}
            for pool in threadpool_info()
        ]
    except ImportError:  # pragma: no cover
        pass
    return info


def child_env() -> dict[str, str]:
    """A benchmark run's environment: no tracking store or run inherited, W&B offline,
    telemetry off, this checkout importable and this interpreter first on PATH."""
    env = os.environ.copy()
    for name in ("MLFLOW_TRACKING_URI", "MLFLOW_RUN_ID", "MLFLOW_EXPERIMENT_ID", "WANDB_DIR"):
        env.pop(name, None)
    env.update(
        {
            "WANDB_MODE": "offline",
            "MLFLOW_DISABLE_TELEMETRY": "true",
            "DO_NOT_TRACK": "true",
            "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
            "PYTHONPATH": str(PROJECT_ROOT),
        }
    )
    bin_dir = str(Path(sys.executable).parent)
    env["PATH"] = os.pathsep.join([bin_dir, env.get("PATH", "")])
    return env


def run_fresh_process(
    module: str, arguments: Sequence[str], work_dir: Path, verbose: bool
) -> dict[str, Any]:
    """`python -m module arguments --figures F` in `work_dir` (its own stores there); the
    figures it wrote to F, plus the process's own wall time as `process_seconds`."""
    figures_path = work_dir / "figures.json"
    command = [sys.executable, "-m", module, *arguments, "--figures", str(figures_path)]
    started = time.perf_counter()
    completed = subprocess.run(
        command,
        cwd=work_dir,
        env=child_env(),
        stdout=None if verbose else subprocess.DEVNULL,
        stderr=None if verbose else subprocess.PIPE,
        text=True,
        check=False,
    )
    wall = time.perf_counter() - started
    if completed.returncode != 0:
        sys.stderr.write(completed.stderr or "")
        raise RuntimeError(f"{' '.join(arguments)} failed with exit code {completed.returncode}")
    figures: dict[str, Any] = json.loads(figures_path.read_text())
    figures["process_seconds"] = wall
    return figures


def alternating(modes: Sequence[str], repeats: int) -> Iterator[tuple[int, str]]:
    """(repeat, mode) for every run: the order of the modes reverses on every other repeat, so
    that a load change on a shared machine hits every mode alike."""
    for repeat in range(repeats):
        for mode in modes if repeat % 2 == 0 else modes[::-1]:
            yield repeat, mode


def median(values: Sequence[float]) -> float:
    return float(statistics.median(values))
