"""Fixtures shared by every test tier."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

PROJECT_ROOT = Path(__file__).resolve().parents[1]

# Tests talk to loopback only: nothing phones home, whatever a test starts.
for _name, _value in {
    "DO_NOT_TRACK": "true",
    "MLFLOW_DISABLE_TELEMETRY": "true",
    "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
    "WANDB_DISABLE_STATS": "true",
}.items():
    os.environ.setdefault(_name, _value)
REAL_SAMPLE = PROJECT_ROOT.parent / "shared" / "data" / "nyc_airbnb_sample1.csv"


@pytest.fixture(scope="session")
def real_sample_path() -> Path:
    """The real NYC listing sample beside the project; data tests skip where it is absent."""
    if not REAL_SAMPLE.is_file():
        pytest.skip(f"real listing sample not found at {REAL_SAMPLE} (CI provides ../shared/data)")
    return REAL_SAMPLE


@pytest.fixture(autouse=True)
def _registry_follows_tracking() -> Iterator[None]:
    """No test leaves MLflow's registry pinned for the tests after it (tests/mlflow_uris.py says
    how that happens): a registry URI set during a test, in MLflow or in the environment, is
    unset after it when none was set before."""
    from mlflow.tracking._model_registry import utils as registry_utils

    before = (registry_utils._registry_uri, os.environ.get("MLFLOW_REGISTRY_URI"))
    yield
    if before == (None, None):
        registry_utils._registry_uri = None
        os.environ.pop("MLFLOW_REGISTRY_URI", None)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark each test with its tier from its folder, so `-m unit` etc. select by tier."""
    for item in items:
        tier = Path(str(item.fspath)).parent.name
        if tier in {"unit", "data", "e2e", "services"}:
            item.add_marker(getattr(pytest.mark, tier))
