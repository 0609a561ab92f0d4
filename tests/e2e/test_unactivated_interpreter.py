"""The pipeline started as cron or a worker would: the venv's interpreter, venv not activated."""

from __future__ import annotations

import os
import subprocess
import sys

from tests.e2e.conftest import Workspace


def test_entry_points_reach_the_starting_interpreter(workspace: Workspace) -> None:
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("PREFECT_", "VIRTUAL_ENV", "PYTHON"))
    }
    env["PATH"] = "/usr/bin:/bin"  # no venv on PATH: a bare `python` would lack the packages
    completed = subprocess.run(
        [sys.executable, "-m", "flows.train_pipeline", "main.steps=get_data", "data.demo_rows=600"],
        cwd=workspace.root,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert completed.returncode == 0, completed.stderr[-3000:]
    assert "get_data" in completed.stdout
    assert "600" in completed.stdout
