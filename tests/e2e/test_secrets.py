"""Secrets stay secret: the whole pipeline, then a search for them everywhere it leaves traces.

Recognisable fake credentials are set in the environment and in `.env`; the pipeline reads from
the loopback OSS server with them (STS token included) and mirrors to W&B offline. Then the
MLflow store (params, tags, artifacts, the database file itself), the W&B offline files, the
Prefect API's flow and task runs (parameters, states, results, logs) and everything printed or
logged are searched for each secret.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
from prefect.client.orchestration import get_client
from prefect.client.schemas.sorting import FlowRunSort, LogSort, TaskRunSort

from flows.train_pipeline import main
from steps.ingest.demo_data import generate_listings
from tests.e2e.conftest import Workspace
from tests.oss_server import OssServer
from tests.wandb_records import offline_runs

BUCKET = "listings"
IN_ENVIRONMENT = {
    "OSS_ACCESS_KEY_ID": "LTAIfakeKeyIdSECRET0xA1",
    "WANDB_API_KEY": "fakewandbkey" + "5ec2e7" * 4 + "0a1b",
}
IN_DOTENV = {
    "OSS_ACCESS_KEY_SECRET": "fakeOssSecretSECRET0xB2",
    "OSS_SECURITY_TOKEN": "fakeStsTokenSECRET0xC3",
}
SECRETS = {**IN_ENVIRONMENT, **IN_DOTENV}
_PAGE = 200


@pytest.fixture
def oss_with_secrets(workspace: Workspace, monkeypatch: pytest.MonkeyPatch) -> Iterator[OssServer]:
    with OssServer(
        SECRETS["OSS_ACCESS_KEY_ID"],
        SECRETS["OSS_ACCESS_KEY_SECRET"],
        security_token=SECRETS["OSS_SECURITY_TOKEN"],
        buckets=(BUCKET,),
    ) as server:
        server.put(BUCKET, "nyc/listings.csv", generate_listings(1500, seed=13).to_csv().encode())
        for name, value in IN_ENVIRONMENT.items():
            monkeypatch.setenv(name, value)
        dotenv = {**IN_DOTENV, "OSS_ENDPOINT": server.endpoint}
        (workspace.root / ".env").write_text("".join(f"{k}={v}\n" for k, v in dotenv.items()))
        for name in dotenv:  # main() loads .env into os.environ: undo that after the test
            monkeypatch.setenv(name, "placeholder")
            monkeypatch.delenv(name)
        yield server


def _prefect_records() -> list[str]:
    """Flow runs, task runs (parameters, states, results) and logs, as the Prefect API has them."""
    texts: list[str] = []
    with get_client(sync_client=True) as client:
        flow_runs = client.read_flow_runs(limit=_PAGE, sort=FlowRunSort.START_TIME_DESC)
        task_runs = client.read_task_runs(limit=_PAGE, sort=TaskRunSort.EXPECTED_START_TIME_DESC)
        assert flow_runs and task_runs
        runs: list[Any] = [*flow_runs, *task_runs]
        for run in runs:
            texts.append(run.model_dump_json())
            if run.state is not None:
                texts.append(repr(_result(run.state)))
        offset = 0
        while logs := client.read_logs(limit=_PAGE, offset=offset, sort=LogSort.TIMESTAMP_ASC):
            texts.extend(log.model_dump_json() for log in logs)
            offset += len(logs)
    return texts


def _result(state: Any) -> Any:
    try:
        return state.result(raise_on_failure=False)
    except Exception as error:  # not persisted (results stay in the flow's process)
        return f"<no stored result: {type(error).__name__}>"


def _mlflow_records(workspace: Workspace) -> list[str]:
    client = workspace.client()
    texts = []
    for experiment in client.search_experiments():
        texts.append(json.dumps(dict(experiment.tags)))
        for run in client.search_runs([experiment.experiment_id]):
            texts.append(json.dumps([run.data.params, run.data.tags, list(run.data.metrics)]))
    for version in client.search_model_versions():
        texts.append(json.dumps([version.tags, version.description, version.source]))
    return texts


def test_no_secret_appears_in_tracking_results_or_logs(
    workspace: Workspace,
    oss_with_secrets: OssServer,
    capfd: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    exit_code = main([f"data.source=oss://{BUCKET}/nyc/", "task.retries=0"])

    output = capfd.readouterr()
    assert exit_code == 0, output.err[-3000:]
    # The pipeline really used the secrets: every request carried the key and the STS token.
    requests = oss_with_secrets.requests
    assert requests and all(r.status == 200 for r in requests)
    assert all(r.headers["x-oss-security-token"] == SECRETS["OSS_SECURITY_TOKEN"] for r in requests)
    # This suite's one full run also checks the W&B lineage of the later steps: their inputs.
    mirrored = {run.job_type: run for run in offline_runs(workspace.root / "wandb")}
    assert {a.name for a in mirrored["train"].inputs} == {"train_data", "val_data"}
    assert {a.name for a in mirrored["evaluate"].inputs} == {"test_data", "model"}
    outputs = {(a.name, a.digest) for run in mirrored.values() for a in run.outputs}
    assert {(a.name, a.digest) for a in mirrored["train"].inputs} <= outputs

    stored = {
        path: path.read_bytes()
        for path in workspace.root.rglob("*")
        if path.is_file() and path.name != ".env"
    }
    assert any(path.suffix == ".wandb" for path in stored)
    assert any(path.name == "mlflow.db" for path in stored)
    texts = {
        "MLflow params and tags": "\n".join(_mlflow_records(workspace)),
        "Prefect API": "\n".join(_prefect_records()),
        "stdout": output.out,
        "stderr": output.err,
        "captured logs": caplog.text,
    }
    # The search reads the right places: the source URI is a parameter in both stores.
    assert f"oss://{BUCKET}/nyc/" in texts["MLflow params and tags"]
    assert f"oss://{BUCKET}/nyc/" in texts["Prefect API"]
    for name, secret in SECRETS.items():
        for where, text in texts.items():
            assert secret not in text, f"{name} appears in {where}"
        leaked = [
            str(path.relative_to(workspace.root))
            for path, data in stored.items()
            if secret.encode() in data
        ]
        assert not leaked, f"{name} appears in {leaked}"


SIGNED = (
    "https://listings-user:Pw0rdSECRETq7Zk2@127.0.0.1:9/listings.csv"
    "?X-Amz-Credential=AKIAFAKESECRET42&X-Amz-Signature=5ig5ECRET9f8e7d6"
)


@pytest.mark.parametrize("written", [f"data.source='{SIGNED}'", f"data.source={SIGNED}"])
def test_a_secret_url_written_out_is_refused_before_anything_is_stored(
    workspace: Workspace, capfd: pytest.CaptureFixture[str], written: str
) -> None:
    """Quoted, the URL is refused for its credentials; unquoted, Hydra cannot parse it: either
    way exit 2, the message names the environment reference, and no store holds anything.
    (tests/services/test_secret_sources.py runs the pipeline from the reference itself.)"""
    exit_code = main([written])

    output = capfd.readouterr()
    assert exit_code == 2
    assert "data.source='${oc.env:" in output.err
    for secret in ("Pw0rdSECRETq7Zk2", "5ig5ECRET9f8e7d6", "AKIAFAKESECRET42"):
        assert secret not in output.out + output.err
    assert not (workspace.root / "mlruns").exists()
    assert not list(workspace.root.rglob("*.wandb"))
