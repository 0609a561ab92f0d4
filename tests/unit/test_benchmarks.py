"""Each benchmark runs end to end at a tiny size and writes its JSON (no timing is asserted)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from benchmarks import ingest, lasso, model_quality
from benchmarks._report import format_table


def _figures(folder: Path, name: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((folder / f"{name}.json").read_text())
    assert data["benchmark"] == name
    assert data["tables"] and data["targets"]
    assert "python" in data["environment"]
    return data


def test_ingest_benchmark_runs_and_counts_rows_exactly(tmp_path: Path) -> None:
    argv = ["--size-mb", "1", "--repeats", "1", "--tmp-dir", str(tmp_path)]
    assert ingest.main([*argv, "--results-dir", str(tmp_path / "results")]) == 0
    data = _figures(tmp_path / "results", "ingest")
    assert data["generated"]["names_with_line_break"] > 0
    assert data["summary"]["pipeline"]["rows_exact"] is True
    assert data["summary"]["pandas"]["rows_exact"] is True
    assert [p.name for p in tmp_path.iterdir()] == ["results"]  # the CSV is gone


def test_generated_csv_keeps_the_quirks_and_its_row_count(tmp_path: Path) -> None:
    import pandas as pd

    facts = ingest.generate_csv(tmp_path / "x.csv", 0.5)
    frame = pd.read_csv(tmp_path / "x.csv")
    assert len(frame) == facts["rows"]
    assert frame["name"].str.contains("\n").any()
    assert frame["name"].str.contains(",").any()
    assert frame["last_review"].isna().any()


def test_lasso_benchmark_runs(tmp_path: Path) -> None:
    argv = ["--sizes", "3000x20", "--repeats", "1", "--results-dir", str(tmp_path)]
    assert lasso.main(argv) == 0
    figure = _figures(tmp_path, "lasso")["figures"][0]
    assert figure["relative_gap"] < 1e-6
    assert figure["same_support"] is True


def test_model_quality_benchmark_runs_on_demo_data(tmp_path: Path) -> None:
    argv = ["--data", "demo", "--rows", "1500", "--quick", "--results-dir", str(tmp_path)]
    assert model_quality.main(argv) == 0
    data = _figures(tmp_path, "model_quality")
    assert set(data["chosen"]) == {p.stem for p in model_quality.MODEL_DIR.glob("*.yaml")}
    assert data["best_model"] in data["chosen"]


def test_model_quality_without_data_says_where(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert model_quality.main(["--data", str(tmp_path / "none.csv")]) == 2
    assert "no listings file" in capsys.readouterr().out


def test_table_aligns_numbers() -> None:
    text = format_table(["a", "b"], [["x", 1.5], ["yy", 1234.0]])
    lines = text.splitlines()
    assert lines[0].startswith("a")
    assert lines[2].endswith("1.500") and lines[3].endswith("1,234.0")
