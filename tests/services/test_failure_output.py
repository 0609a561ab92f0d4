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
# The step's own log line (the entry point's stderr) names the cause too; everything the flow
# process prints (Prefect's console records, the final line) names it once.
STEP_LOG = "steps.common.entrypoint"


@dataclass
class Outcome:
    code: int
    stdout: str
    stderr: str

    def flow_lines(self) -> list[str]:
        return [line for line in self.stderr.splitlines() if STEP_LOG not in line]


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
    lines = outcome.flow_lines()
    assert sum(cause in line for line in lines) == 1, "\n".join(lines)
    [final] = [line for line in lines if cause in line]
    assert final.startswith("pipeline failed: "), final
    # At the end: only Prefect's own shutdown notice may follow it.
    after = lines[lines.index(final) + 1 :]
    assert all("temporary server" in line for line in after), after


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
