"""What a person sees when `python -m flows.train_pipeline` fails: the cause once, at the end.

Real command-line runs on Prefect's temporary local API. An expected failure (a bad source, bad
data) ends with one line naming the cause and the fix, and no Python traceback anywhere in the
output; an unexpected error keeps its traceback.
"""

from __future__ import annotations

import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.bad_inputs import skewed_boroughs
from tests.services.conftest import base_env

SMALL = ["data.demo_rows=2000", "task.retries=0"]


@dataclass
class Outcome:
    code: int
    stdout: str
    stderr: str


def run_cli(tmp_path: Path, *overrides: str, env: dict[str, str] | None = None) -> Outcome:
    home = tmp_path / "home"
    home.mkdir(exist_ok=True)
    completed = subprocess.run(
        [sys.executable, "-m", "flows.train_pipeline", *SMALL, *overrides],
        cwd=tmp_path,
        env=base_env(home) | {"WANDB_MODE": "disabled"} | (env or {}),
        capture_output=True,
        check=False,
        text=True,
        timeout=600,
    )
    return Outcome(completed.returncode, completed.stdout, completed.stderr)


def assert_reported_once(outcome: Outcome, cause: str) -> None:
    output = outcome.stdout + outcome.stderr
    assert outcome.code == 1, output[-3000:]
    assert "Traceback" not in output, output[-3000:]
    # Everything on the terminal: the flow's lines, Prefect's and the entry points' own logs.
    lines = (outcome.stdout + outcome.stderr).splitlines()
    assert sum(cause in line for line in lines) == 1, "\n".join(lines)
    # The last thing said: "pipeline failed: <message>" (the message may span lines), followed
    # only by Prefect's notice that its temporary server stops.
    [start] = [i for i, line in enumerate(lines) if line.startswith("pipeline failed: ")]
    end = next(
        (i for i, line in enumerate(lines) if "temporary server" in line and i > start), None
    )
    report = lines[start:end]
    assert any(cause in line for line in report), report
    assert all("temporary server" in line for line in lines[len(report) + start :])


def test_a_bad_source_is_reported_once_without_a_traceback(tmp_path: Path) -> None:
    outcome = run_cli(tmp_path, "data.source=/nonexistent/listings.csv")
    assert_reported_once(outcome, "'/nonexistent/listings.csv' does not exist: check the path")


def test_bad_data_is_reported_once_without_a_traceback(tmp_path: Path) -> None:
    overrides = skewed_boroughs(tmp_path)
    outcome = run_cli(tmp_path, *overrides)
    assert_reported_once(outcome, "check 'kl_divergence' failed")


@pytest.mark.parametrize("uri", ["nosuchscheme://nowhere"])
def test_an_unexpected_error_keeps_its_traceback(tmp_path: Path, uri: str) -> None:
    outcome = run_cli(tmp_path, env={"MLFLOW_TRACKING_URI": uri})
    assert outcome.code != 0
    assert "Traceback" in outcome.stderr, outcome.stderr[-3000:]
