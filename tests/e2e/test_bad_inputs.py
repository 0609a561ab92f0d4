"""Every bad input in the corpus: a non-zero exit, a message naming the problem, and nothing
lost or half-written: no new model version, no champion change, no output of a failed step.

Extra columns are the one accepted oddity (the stated rule: columns beyond the 16 of the
listing contract are dropped with a warning), tested here too.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import mlflow
import pandas as pd
import pytest

from fault_injection.http_source import Behaviour, http_source
from flows.train_pipeline import main, train_pipeline
from steps.ingest.demo_data import generate_listings
from tests.bad_inputs import CORPUS, BadInput
from tests.e2e.conftest import SMALL_DEMO, Workspace, copy_of, isolate

NAME = "housing_price"


@pytest.fixture(scope="module")
def store_with_champion(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("bad-input-seed")
    with pytest.MonkeyPatch.context() as monkeypatch:
        isolate(monkeypatch, root)
        summary = train_pipeline(overrides=SMALL_DEMO)
    assert summary.promotion_notes["verdict"].startswith("PROMOTED")
    return root


@pytest.fixture
def store(
    store_with_champion: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Workspace]:
    with copy_of(store_with_champion, tmp_path, monkeypatch) as workspace:
        yield workspace


def registry_state(workspace: Workspace) -> tuple[list[str], str]:
    client = workspace.client()
    versions = sorted(str(v.version) for v in client.search_model_versions(f"name = '{NAME}'"))
    return versions, str(client.get_model_version_by_alias(NAME, "champion").version)


def assert_nothing_half_written(workspace: Workspace) -> None:
    """No failed run announces an output, and none left a table behind in the store."""
    client = workspace.client()
    experiment = client.get_experiment_by_name("nyc_airbnb_price")
    assert experiment is not None
    for run in client.search_runs([experiment.experiment_id], "attributes.status = 'FAILED'"):
        assert not [key for key in run.data.tags if key.startswith("output.")], run.info.run_id
        artifacts = Path(run.info.artifact_uri.removeprefix("file://"))
        assert not list(artifacts.rglob("*.parquet")), run.info.run_id


def check_refused(
    workspace: Workspace,
    overrides: list[str],
    message: str,
    exit_code: int,
    capsys: pytest.CaptureFixture[str],
) -> None:
    before = registry_state(workspace)
    code = main([*overrides, "task.retries=0"])
    error = capsys.readouterr().err
    assert code == exit_code, error[-2000:]
    assert message in error, error[-2000:]
    assert registry_state(workspace) == before
    assert_nothing_half_written(workspace)


@pytest.mark.parametrize("case", CORPUS, ids=[case.name for case in CORPUS])
def test_bad_input_is_refused_with_a_clear_message(
    case: BadInput, store: Workspace, capsys: pytest.CaptureFixture[str]
) -> None:
    inputs = store.root / "inputs"
    inputs.mkdir()
    check_refused(store, case.build(inputs), case.message, case.exit_code, capsys)


@pytest.mark.parametrize(
    ("behaviour", "message"),
    [
        (Behaviour(faults=[404]), "HTTP 404"),
        (Behaviour(body=b"<html><body>Sign in</body></html>", content_type="text/html"), "HTML"),
    ],
    ids=["url returning 404", "url returning an HTML page"],
)
def test_bad_url_is_refused_with_a_clear_message(
    behaviour: Behaviour, message: str, store: Workspace, capsys: pytest.CaptureFixture[str]
) -> None:
    with http_source(behaviour) as url:
        check_refused(store, [f"data.source={url}"], message, 1, capsys)


def test_extra_columns_are_dropped_and_the_pipeline_goes_on(store: Workspace) -> None:
    source = store.root / "extra.csv"
    generate_listings(1200, seed=4).assign(license="n/a", host_since="2015").to_csv(
        source, index=False
    )
    summary = train_pipeline(overrides=[f"data.source={source}", "main.steps=get_data"])
    raw = store.client().get_run(summary.steps[0].run_id).data.tags["output.raw_data"]
    columns = pd.read_parquet(
        mlflow.artifacts.download_artifacts(raw, dst_path=str(store.root / "raw"))
    ).columns
    assert "license" not in columns
    assert len(columns) == 16
