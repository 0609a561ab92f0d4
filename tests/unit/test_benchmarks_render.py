"""`python -m benchmarks.render` prints the tables of a benchmark's JSON as its run printed them."""

from __future__ import annotations

from pathlib import Path

import pytest

from benchmarks import render
from benchmarks._report import Report


def _write_results(folder: Path) -> None:
    report = Report("ingest", "python -m benchmarks.ingest --size-mb 1")
    report.table(
        "CSV -> Parquet",
        ["method", "rows exact", "seconds", "x pandas"],
        [["pandas", True, 2.5, 1.0], ["pipeline", True, 1.25, 2.0]],
    )
    report.target("peak RSS MiB", 300.0, "< 512", True)
    report.finish(folder)


def test_the_tables_print_as_the_benchmark_printed_them(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _write_results(tmp_path)
    printed_by_the_run = capsys.readouterr().out
    assert render.main(["--results-dir", str(tmp_path)]) == 0
    rendered = capsys.readouterr().out
    tables = printed_by_the_run.split("\nfigures written to")[0].strip()
    assert tables in rendered
    assert "Targets" in rendered and "peak RSS MiB" in rendered
    assert "measured by: python -m benchmarks.ingest --size-mb 1" in rendered
    assert "measure again: make bench-ingest" in rendered
    assert "python " in rendered.split("machine: ")[1].split("\n")[0]


def test_a_benchmark_without_results_names_the_command_and_fails(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _write_results(tmp_path)
    capsys.readouterr()
    assert render.main(["--results-dir", str(tmp_path), "ingest", "sweep_parallel"]) == 1
    captured = capsys.readouterr()
    assert "== ingest" in captured.out
    assert "no results for sweep_parallel" in captured.err
    assert "make bench-sweep" in captured.err


def test_no_results_at_all_fails(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert render.main(["--results-dir", str(tmp_path)]) == 1
    assert "run make bench" in capsys.readouterr().err


def test_every_benchmark_module_has_its_command() -> None:
    modules = {
        path.stem
        for path in Path(render.__file__).parent.glob("*.py")
        if not path.stem.startswith("_") and path.stem != "render"
    }
    named = {name.removesuffix("_cuda") for name in render.REPRODUCE}
    assert modules <= named, f"benchmarks without a reproduce command: {modules - named}"
