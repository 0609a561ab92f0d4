"""A test that points MLflow at a server for a while leaves no URI behind for the next test."""

from __future__ import annotations

import os
from pathlib import Path

import mlflow

from tests.mlflow_uris import pointed_at, restore, snapshot


def test_the_registry_follows_tracking_again_after_a_pointed_block(tmp_path: Path) -> None:
    saved = snapshot()
    try:
        with pointed_at("http://127.0.0.1:9"):
            assert mlflow.get_registry_uri() == "http://127.0.0.1:9"
            assert os.environ["MLFLOW_REGISTRY_URI"] == "http://127.0.0.1:9"
        later = f"sqlite:///{tmp_path / 'later.db'}"
        mlflow.set_tracking_uri(later)
        # What broke the serving and race tests: the registry stayed on the stopped server.
        assert mlflow.get_registry_uri() == later
        assert os.environ.get("MLFLOW_REGISTRY_URI") == saved["MLFLOW_REGISTRY_URI"]
    finally:
        restore(saved)
