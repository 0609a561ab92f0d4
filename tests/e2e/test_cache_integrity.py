"""A cache that cannot be fooled: forged runs are not reused, a replaced source fails the step.

Runs are written into a real SQLite tracking store the way an attacker with write access (or a
stray script) would: FINISHED, with a matching `cache.key` tag, but without the parent run's
record, without the outputs, or with outputs whose content no longer matches their digests.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterator
from pathlib import Path

import mlflow
import pytest

from orchestration.config import load_config
from orchestration.step_runner import StepRunner
from steps.contract import CACHE_TAG, DIGEST_TAG_PREFIX, OUTPUT_TAG_PREFIX, PARENT_RUN_TAG, STEP_TAG
from tasks.run_entry_point import run_entry_point
from tasks.step_cache import find_cached_run, vouch_tag, why_not_reusable
from tasks.step_failure import StepFailed
from tasks.tracking_store import ensure_experiment, use_tracking_uri
from tests.e2e.conftest import Workspace, isolate
from tests.e2e.test_reliability import listings_csv

KEY = "f" * 64
OUTPUTS = ("raw_data",)


def _sha256(data: bytes) -> str:
    return f"sha256:{hashlib.sha256(data).hexdigest()}"


def _cached_get_data(
    experiment_id: str,
    tmp_path: Path,
    *,
    parent: bool = True,
    vouched: str | None = KEY,
    output: bool = True,
    recorded_digest: Callable[[bytes], str] = _sha256,
    output_run: str | None = None,
) -> str:
    """A FINISHED get_data run carrying KEY, genuine unless told otherwise; its id."""
    client = mlflow.MlflowClient()
    tags = {STEP_TAG: "get_data", CACHE_TAG: KEY}
    parent_id = None
    if parent:
        parent_id = client.create_run(experiment_id, tags={STEP_TAG: "pipeline"}).info.run_id
        tags[PARENT_RUN_TAG] = parent_id
    run_id = client.create_run(experiment_id, run_name="get_data", tags=tags).info.run_id
    if output:
        data = b"PAR1 a parquet file's bytes"
        (tmp_path / "raw.parquet").write_bytes(data)
        client.log_artifact(run_id, str(tmp_path / "raw.parquet"))
        uri = f"runs:/{output_run or run_id}/raw.parquet"
        client.set_tag(run_id, f"{OUTPUT_TAG_PREFIX}raw_data", uri)
        client.set_tag(run_id, f"{DIGEST_TAG_PREFIX}raw_data", recorded_digest(data))
    if parent_id and vouched:
        client.set_tag(parent_id, vouch_tag(run_id), vouched)
    client.set_terminated(run_id, "FINISHED")
    return run_id


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Workspace]:
    """One tracking store for the module (creating one costs seconds); each test uses its own
    experiment, so no test sees another's runs."""
    previous = mlflow.get_tracking_uri()
    with pytest.MonkeyPatch.context() as monkeypatch:
        workspace = isolate(monkeypatch, tmp_path_factory.mktemp("cache-integrity"))
        use_tracking_uri(workspace.tracking_uri)
        yield workspace
    mlflow.set_tracking_uri(previous)


@pytest.fixture
def experiment(store: Workspace, request: pytest.FixtureRequest) -> str:
    return ensure_experiment(f"cache-integrity-{request.node.name}")


def test_a_genuine_cached_run_is_reused(experiment: str, tmp_path: Path) -> None:
    run_id = _cached_get_data(experiment, tmp_path)
    found = find_cached_run(experiment, KEY, "get_data", OUTPUTS)
    assert found is not None and found.info.run_id == run_id


@pytest.mark.parametrize(
    ("forgery", "reason"),
    [
        ({"parent": False}, "no parent pipeline run"),
        ({"vouched": None}, "did not record it under this key"),
        ({"vouched": "0" * 64}, "did not record it under this key"),
        ({"output": False}, "lacks the outputs ['raw_data']"),
        ({"recorded_digest": lambda data: _sha256(data + b"x")}, "does not match its recorded"),
        ({"output_run": "0123456789abcdef0123456789abcdef"}, "not an artifact or model of the run"),
    ],
)
def test_a_forged_run_with_the_cache_key_is_not_reused(
    experiment: str, tmp_path: Path, forgery: dict[str, object], reason: str
) -> None:
    run_id = _cached_get_data(experiment, tmp_path, **forgery)  # type: ignore[arg-type]
    run = mlflow.MlflowClient().get_run(run_id)
    assert reason in (why_not_reusable(run, KEY, "get_data", OUTPUTS) or "")
    assert find_cached_run(experiment, KEY, "get_data", OUTPUTS) is None


def test_an_artifact_replaced_after_the_run_is_not_reused(experiment: str, tmp_path: Path) -> None:
    run_id = _cached_get_data(experiment, tmp_path)
    replaced = tmp_path / "replacement" / "raw.parquet"
    replaced.parent.mkdir()
    replaced.write_bytes(b"PAR1 poisoned rows")
    mlflow.MlflowClient().log_artifact(run_id, str(replaced))  # overwrites raw.parquet
    assert find_cached_run(experiment, KEY, "get_data", OUTPUTS) is None


def test_a_source_replaced_between_fingerprint_and_read_fails_the_step(
    store: Workspace, experiment: str, tmp_path: Path
) -> None:
    """The flow fingerprints the file for the cache key; the file changes before get_data
    reads it: the step fails with the reason, and nothing is cached under the old digest."""
    source = tmp_path / "listings.csv"
    source.write_bytes(listings_csv(800, seed=3))
    cfg = load_config([f"data.source={source}", "task.retries=0"])
    parent = mlflow.MlflowClient().create_run(experiment, tags={STEP_TAG: "pipeline"})
    runner = StepRunner(cfg, experiment, None, tmp_path)
    arguments = runner.arguments("get_data", {}, parent.info.run_id)
    assert arguments["cache_key"] and arguments["parameters"]["source_sha256"].startswith("sha256:")
    source.write_bytes(listings_csv(800, seed=4))  # replaced after the fingerprint

    with pytest.raises(StepFailed) as failure:
        run_entry_point(**arguments)
    assert "the source changed between the pipeline's fingerprint" in str(failure.value)
    assert find_cached_run(experiment, arguments["cache_key"], "get_data", OUTPUTS) is None
