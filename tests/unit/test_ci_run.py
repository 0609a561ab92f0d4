"""`.ci/run`: `make test` always, the services tier only when the CI time budget still allows.

The real script runs with a stand-in `make` first on PATH that records its targets, so the
budget arithmetic and the exit codes are checked without running any tier.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

PROJECT_ROOT = Path(__file__).resolve().parents[2]
CI_RUN = PROJECT_ROOT / ".ci" / "run"


def _run(
    tmp_path: Path, env: dict[str, str], make_test_code: int = 0
) -> tuple[int, str, list[str]]:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    calls = tmp_path / "make-calls"
    fake = bin_dir / "make"
    fake.write_text(
        "#!/bin/sh\n"
        f'echo "$*" >> "{calls}"\n'
        f'if [ "$1" = test ]; then exit {make_test_code}; fi\n'
        "exit 0\n"
    )
    fake.chmod(0o755)
    budget = ("CI_TIME_BUDGET_S", "SERVICES_TIER_ESTIMATE_S")
    base = {k: v for k, v in os.environ.items() if k not in budget}
    done = subprocess.run(
        ["bash", str(CI_RUN)],
        env=base | {"PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}"} | env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    made = calls.read_text().split("\n")[:-1] if calls.exists() else []
    return done.returncode, done.stdout + done.stderr, made


def test_the_script_stops_at_the_first_failure() -> None:
    assert "set -euo pipefail" in CI_RUN.read_text()


def test_with_time_left_both_tiers_run(tmp_path: Path) -> None:
    code, output, made = _run(tmp_path, {})
    assert (code, made) == (0, ["test", "test-services"]), output
    assert "of the 5400 s budget left; running the services tier (up to 2100 s)" in output


def test_without_time_for_it_the_services_tier_is_skipped_with_the_reason(tmp_path: Path) -> None:
    code, output, made = _run(tmp_path, {"CI_TIME_BUDGET_S": "1000"})
    assert (code, made) == (0, ["test"]), output
    assert "ci: services tier skipped:" in output
    assert "of the 1000 s budget (CI_TIME_BUDGET_S) left" in output
    assert "needs up to 2100 s (SERVICES_TIER_ESTIMATE_S)" in output


def test_the_estimate_can_be_set(tmp_path: Path) -> None:
    code, output, made = _run(
        tmp_path, {"CI_TIME_BUDGET_S": "1000", "SERVICES_TIER_ESTIMATE_S": "60"}
    )
    assert (code, made) == (0, ["test", "test-services"]), output


def test_a_failing_make_test_fails_the_run_and_skips_the_services_tier(tmp_path: Path) -> None:
    code, _, made = _run(tmp_path, {}, make_test_code=3)
    assert (code, made) == (3, ["test"])


@pytest.mark.parametrize("value", ["90m", "-1", ""])
def test_a_budget_that_is_not_whole_seconds_is_refused(tmp_path: Path, value: str) -> None:
    code, output, made = _run(tmp_path, {"CI_TIME_BUDGET_S": value})
    if value == "":
        # Empty is unset: the default budget.
        assert (code, made) == (0, ["test", "test-services"]), output
        return
    assert (code, made) == (2, []), output
    assert "must be whole seconds" in output
