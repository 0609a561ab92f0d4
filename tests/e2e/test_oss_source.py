"""`data.source=oss://...`: the real pipeline and real oss2 client against a loopback OSS server.

Nothing about oss2 is mocked: tests/oss_server.py speaks the OSS protocol (signed requests,
listing pages, ranged GETs) and injects the faults (503, a connection dropped mid-body, a
response slower than the timeout) whose handling these tests check.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import mlflow
import pandas as pd
import pytest

from flows.train_pipeline import train_pipeline
from steps.ingest.demo_data import generate_listings
from tasks.step_failure import StepFailed
from tests.e2e.conftest import Workspace
from tests.oss_server import OssServer
from tests.wandb_records import offline_runs

KEY_ID = "LTAItestkeyid0001"
KEY_SECRET = "testsecret0001"
BUCKET = "listings"
KEY = "nyc/2019/listings.csv"
ROWS = 1500
# Quick retries: the policy is the pipeline's own (conf/task), only the delays are shortened.
RETRY_ONCE = ["task.retries=1", "task.retry_delay_s=0", "task.retry_jitter=0"]


@pytest.fixture
def oss(workspace: Workspace, monkeypatch: pytest.MonkeyPatch) -> Iterator[OssServer]:
    """The loopback OSS server holding one listings CSV, and OSS_* pointing the pipeline at it."""
    with OssServer(KEY_ID, KEY_SECRET, buckets=(BUCKET,)) as server:
        monkeypatch.setenv("OSS_ACCESS_KEY_ID", KEY_ID)
        monkeypatch.setenv("OSS_ACCESS_KEY_SECRET", KEY_SECRET)
        monkeypatch.setenv("OSS_ENDPOINT", server.endpoint)
        monkeypatch.delenv("OSS_SECURITY_TOKEN", raising=False)
        server.put(BUCKET, "nyc/2019/", b"")  # a folder marker, as consoles create them
        server.put(BUCKET, KEY, listings_csv(ROWS))
        yield server


def listings_csv(rows: int) -> bytes:
    return generate_listings(rows, seed=11).to_csv(index=False).encode()


def get_data_runs(workspace: Workspace) -> list[mlflow.entities.Run]:
    client = workspace.client()
    experiment = client.get_experiment_by_name("nyc_airbnb_price")
    assert experiment is not None
    runs = client.search_runs(
        [experiment.experiment_id],
        "tags.`pipeline.step` = 'get_data'",
        order_by=["attributes.start_time ASC"],
    )
    return list(runs)


def test_pipeline_reads_the_one_object_under_a_prefix(workspace: Workspace, oss: OssServer) -> None:
    summary = train_pipeline(
        overrides=[
            "main.steps=get_data,basic_cleaning,data_check",
            f"data.source=oss://{BUCKET}/nyc/2019/",
            "task.retries=0",
        ]
    )

    assert [line.step for line in summary.steps] == ["get_data", "basic_cleaning", "data_check"]
    assert summary.steps[0].rows_out == ROWS
    (run,) = get_data_runs(workspace)
    stored = oss.get(BUCKET, KEY)
    assert stored is not None
    # Lineage: which object version was read, verified by size and CRC64.
    assert run.data.tags["data.source_kind"] == "oss"
    assert run.data.tags["data.oss_uri"] == f"oss://{BUCKET}/{KEY}"
    assert run.data.tags["data.oss_etag"] == stored.etag
    assert run.data.tags["data.oss_size"] == str(len(stored.data))
    assert run.data.tags["data.oss_crc64"] == str(stored.crc64)
    raw = mlflow.artifacts.download_artifacts(
        run.data.tags["output.raw_data"],
        dst_path=str(workspace.root / "out"),
        tracking_uri=workspace.tracking_uri,
    )
    assert len(pd.read_parquet(Path(raw))) == ROWS
    # The real client signed every request; the server checked each signature.
    assert oss.requests and all(r.status < 400 for r in oss.requests)
    assert [r.key for r in oss.object_requests("GET")] == [KEY]

    # W&B: one group, and each step's upstream artifact is its input, the very version logged.
    runs = {run.job_type: run for run in offline_runs(workspace.root / "wandb")}
    assert set(runs) == {"get_data", "basic_cleaning", "data_check"}
    assert len({run.group for run in runs.values()}) == 1
    (raw_out,) = runs["get_data"].outputs
    (raw_in,) = runs["basic_cleaning"].inputs
    assert (raw_in.name, raw_in.type, raw_in.digest) == (raw_out.name, raw_out.type, raw_out.digest)
    (clean_out,) = runs["basic_cleaning"].outputs
    (clean_in,) = runs["data_check"].inputs
    assert (
        (clean_in.name, clean_in.digest)
        == (clean_out.name, clean_out.digest)
        == (
            "clean_data",
            clean_out.digest,
        )
    )
    assert '"oss://listings/nyc/2019/"' in runs["get_data"].config["source"]


def test_a_503_is_transient_and_the_retry_succeeds(workspace: Workspace, oss: OssServer) -> None:
    oss.fail_next("503", key_prefix=KEY)

    summary = train_pipeline(
        overrides=["main.steps=get_data", f"data.source=oss://{BUCKET}/{KEY}", *RETRY_ONCE]
    )

    assert summary.steps[0].rows_out == ROWS
    first, second = get_data_runs(workspace)
    assert first.info.status == "FAILED"
    assert first.data.tags["step.error_kind"] == "transient"
    assert "HTTP 503 ServiceUnavailable" in first.data.tags["step.error_message"]
    assert second.info.status == "FINISHED"


def test_a_connection_dropped_mid_body_leaves_no_artifact_and_the_retry_succeeds(
    workspace: Workspace, oss: OssServer
) -> None:
    oss.fail_next("drop", key_prefix=KEY)

    summary = train_pipeline(
        overrides=["main.steps=get_data", f"data.source=oss://{BUCKET}/{KEY}", *RETRY_ONCE]
    )

    assert summary.steps[0].rows_out == ROWS
    first, second = get_data_runs(workspace)
    assert first.info.status == "FAILED"
    assert first.data.tags["step.error_kind"] == "transient"
    assert workspace.client().list_artifacts(first.info.run_id) == []
    assert not any(tag.startswith("output.") for tag in first.data.tags)
    assert second.data.tags["output.raw_data"].startswith(f"runs:/{second.info.run_id}/")


def test_a_response_slower_than_the_timeout_is_transient(
    workspace: Workspace, oss: OssServer
) -> None:
    oss.fail_next("slow", key_prefix=KEY, delay_s=4)

    with pytest.raises(StepFailed) as failed:
        train_pipeline(
            overrides=[
                "main.steps=get_data",
                f"data.source=oss://{BUCKET}/{KEY}",
                "data.http_timeout_s=1",
                "task.retries=0",
            ]
        )

    # The task sees the `mlflow run` wrapper's exit code; the kind comes from the step's run.
    assert failed.value.transient
    assert "timed out" in failed.value.message
    (run,) = get_data_runs(workspace)
    assert run.data.tags["step.error_kind"] == "transient"


def test_a_wrong_secret_fails_at_once_naming_the_settings(
    workspace: Workspace,
    oss: OssServer,
    monkeypatch: pytest.MonkeyPatch,
    capfd: pytest.CaptureFixture[str],
) -> None:
    wrong_secret = "not-the-secret-0042"
    monkeypatch.setenv("OSS_ACCESS_KEY_SECRET", wrong_secret)

    with pytest.raises(StepFailed) as failed:
        train_pipeline(
            overrides=["main.steps=get_data", f"data.source=oss://{BUCKET}/{KEY}", *RETRY_ONCE]
        )

    assert not failed.value.transient
    assert "403 SignatureDoesNotMatch" in failed.value.message
    assert "OSS_ACCESS_KEY_ID" in failed.value.message
    assert "OSS_ACCESS_KEY_SECRET" in failed.value.message
    assert len(get_data_runs(workspace)) == 1  # permanent: not retried
    # OSS echoes the key id (and the string to sign) in its error body: none of it is passed on,
    # neither to the message, the logs, nor anything stored in the working directory.
    output = capfd.readouterr()
    stored = b"".join(path.read_bytes() for path in workspace.root.rglob("*") if path.is_file())
    for secret in (KEY_ID, wrong_secret):
        assert secret not in failed.value.message
        assert secret not in output.out + output.err
        assert secret.encode() not in stored
