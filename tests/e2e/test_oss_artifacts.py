"""oss:// as MLflow's artifact store (connectors/oss_artifacts.py), on the loopback OSS server.

First the repository in-process, built through MLflow's own registry (so the pyproject entry
point is what is tested) with the real oss2 client: round trips, every listing page, batched
deletes, multipart uploads, and the failures a user meets (a missing object, bad credentials,
missing settings, a dropped connection), each with its error code and a message naming the fix
and no credential. Then `python -m deployments.tracking_server` for real, with
MLFLOW_ARTIFACTS_DESTINATION=oss://bucket/mlflow: a client that has only the server's URL (no
OSS settings) logs an artifact and a model, reads both back and deletes one; the objects are in
the OSS bucket, nothing is on the server's disk, and no credential is in its log or argv. STS
credentials throughout, so the security token is checked on every request too.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import mlflow
import numpy as np
import psutil
import pytest
from mlflow.exceptions import MlflowException
from mlflow.store.artifact.artifact_repository_registry import (
    get_artifact_repository,
    get_registered_artifact_repositories,
)

from connectors.oss_artifacts import OssArtifactRepository
from tests.loopback import free_port, healthy
from tests.oss_server import OssServer

PROJECT_ROOT = Path(__file__).resolve().parents[2]
KEY_ID = "LTAIartifactKeySECRET0xD4"
KEY_SECRET = "artifactSecretSECRET0xE5"
TOKEN = "artifactStsTokenSECRET0xF6"
SECRETS = (KEY_ID, KEY_SECRET, TOKEN)
BUCKET = "bucket"
ROOT = f"oss://{BUCKET}/mlflow"
SERVER_START_TIMEOUT_S = 60.0
IN_DOTENV = ("OSS_ACCESS_KEY_SECRET", "OSS_SECURITY_TOKEN")


@pytest.fixture
def oss(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[OssServer]:
    """The loopback OSS server (STS credentials) and OSS_* pointing at it; HOME in tmp_path, so
    a multipart checkpoint left behind would show."""
    with OssServer(KEY_ID, KEY_SECRET, security_token=TOKEN, buckets=(BUCKET,)) as server:
        monkeypatch.setenv("OSS_ACCESS_KEY_ID", KEY_ID)
        monkeypatch.setenv("OSS_ACCESS_KEY_SECRET", KEY_SECRET)
        monkeypatch.setenv("OSS_SECURITY_TOKEN", TOKEN)
        monkeypatch.setenv("OSS_ENDPOINT", server.endpoint)
        monkeypatch.setenv("HOME", str(tmp_path / "home"))
        yield server


def repository(uri: str = ROOT) -> OssArtifactRepository:
    repo = get_artifact_repository(uri)
    assert isinstance(repo, OssArtifactRepository)
    return repo


def keys(server: OssServer) -> list[str]:
    return sorted(server.buckets[BUCKET])


def assert_no_secret(text: str) -> None:
    for secret in SECRETS:
        assert secret not in text


# --- the repository, in-process --------------------------------------------------------------


def test_mlflow_finds_the_repository_for_oss_uris_through_the_entry_point(oss: OssServer) -> None:
    assert get_registered_artifact_repositories()["oss"] is OssArtifactRepository
    repo = repository(f"{ROOT}/")
    assert repo.artifact_uri == f"{ROOT}/"
    assert_no_secret(repr(repo))


def test_a_file_and_a_nested_directory_round_trip_byte_for_byte(
    oss: OssServer, tmp_path: Path
) -> None:
    note = tmp_path / "note.txt"
    note.write_bytes(b"hello oss\n")
    tree = tmp_path / "tree"
    (tree / "sub" / "deeper").mkdir(parents=True)
    files = {
        "top.txt": b"top\n",
        "sub/blob.bin": os.urandom(300_000),
        "sub/deeper/leaf.json": b'{"a": 1}',
    }
    for name, data in files.items():
        (tree / name).write_bytes(data)
    repo = repository()

    repo.log_artifact(str(note), "notes")
    repo.log_artifacts(str(tree), "tree")

    assert keys(oss) == ["mlflow/notes/note.txt"] + [
        f"mlflow/tree/{name}" for name in sorted(files)
    ]
    listed = [(f.path, f.is_dir, f.file_size) for f in repo.list_artifacts()]
    assert listed == [("notes", True, None), ("tree", True, None)]
    listed = [(f.path, f.is_dir, f.file_size) for f in repo.list_artifacts("tree")]
    assert listed == [("tree/sub", True, None), ("tree/top.txt", False, 4)]
    assert repo.list_artifacts("tree/top.txt") == []  # a file lists as nothing
    back = tmp_path / "back"
    back.mkdir()
    repo.download_artifacts("", str(back))
    assert (back / "notes" / "note.txt").read_bytes() == note.read_bytes()
    for name, data in files.items():
        assert (back / "tree" / name).read_bytes() == data
    assert not list(back.rglob("*.part"))
    single = tmp_path / "single"
    single.mkdir()
    got = repo.download_artifacts("tree/sub/blob.bin", str(single))
    assert Path(got).read_bytes() == files["sub/blob.bin"]


def test_a_listing_follows_every_page(oss: OssServer) -> None:
    for index in range(7):
        oss.put(BUCKET, f"mlflow/many/{index}.txt", b"x" * index)
    oss.put(BUCKET, "mlflow/many/d1/a.txt", b"a")
    oss.put(BUCKET, "mlflow/many/d2/", b"")  # a folder marker, as consoles create them
    oss.put(BUCKET, "mlflow/many/", b"")  # the listed folder's own marker
    repo = repository()
    repo.list_page_size = 2

    listed = [(f.path, f.is_dir, f.file_size) for f in repo.list_artifacts("many")]

    assert listed == [(f"many/{i}.txt", False, i) for i in range(7)] + [
        ("many/d1", True, None),
        ("many/d2", True, None),
    ]
    pages = [r for r in oss.requests if r.key == "" and r.query.get("prefix") == "mlflow/many/"]
    assert len(pages) == 5
    assert {r.query.get("delimiter") for r in pages} == {"/"}
    assert {r.query.get("max-keys") for r in pages} == {"2"}


def test_delete_removes_all_under_a_path_in_batches_and_nothing_beside_it(
    oss: OssServer,
) -> None:
    for index in range(5):
        oss.put(BUCKET, f"mlflow/run/{index // 2}/{index}.txt", b"x")
    oss.put(BUCKET, "mlflow/run2/keep.txt", b"k")
    oss.put(BUCKET, "mlflow/run.txt", b"k")
    repo = repository()
    repo.list_page_size = 2
    repo.delete_batch_size = 2

    repo.delete_artifacts("run")

    assert keys(oss) == ["mlflow/run.txt", "mlflow/run2/keep.txt"]
    batches = [r for r in oss.requests if r.method == "POST" and "delete" in r.query]
    assert len(batches) == 3  # 2 + 2 + 1 keys
    repo.delete_artifacts("run.txt")
    repo.delete_artifacts("never-there")  # nothing to delete is not an error
    assert keys(oss) == ["mlflow/run2/keep.txt"]


def test_large_files_go_up_in_multipart_and_leave_no_checkpoint(
    oss: OssServer, tmp_path: Path
) -> None:
    big = tmp_path / "weights.bin"
    data = os.urandom(3 << 20)
    big.write_bytes(data)
    repo = repository()
    repo.multipart_threshold = repo.part_size = 1 << 20

    repo.log_artifact(str(big), "model")

    stored = oss.get(BUCKET, "mlflow/model/weights.bin")
    assert stored is not None and stored.data == data
    assert stored.kind == "Multipart" and stored.etag.endswith("-3")
    assert sum(1 for r in oss.requests if "partNumber" in r.query) == 3
    assert not (tmp_path / "home").exists()  # no ~/.py-oss-upload left behind


def test_a_missing_object_is_a_404_naming_its_uri_and_leaves_no_file(
    oss: OssServer, tmp_path: Path
) -> None:
    repo = repository()
    with pytest.raises(MlflowException) as missing:
        repo._download_file("runs/nope.txt", str(tmp_path / "nope.txt"))
    assert missing.value.error_code == "RESOURCE_DOES_NOT_EXIST"
    message = missing.value.message
    assert "downloading oss://bucket/mlflow/runs/nope.txt" in message
    assert "NoSuchKey" in message and "the object does not exist" in message
    assert list(tmp_path.iterdir()) == []
    with pytest.raises(MlflowException, match=r"oss://bucket/mlflow/nope\.txt.*NoSuchKey"):
        repo.download_artifacts("nope.txt", str(tmp_path))


@pytest.mark.parametrize(
    ("variable", "value", "code", "named"),
    [
        ("OSS_ACCESS_KEY_SECRET", "wrong-secret", "SignatureDoesNotMatch", "OSS_ACCESS_KEY_SECRET"),
        ("OSS_ACCESS_KEY_ID", "LTAIunknown", "InvalidAccessKeyId", "OSS_ACCESS_KEY_ID"),
        ("OSS_SECURITY_TOKEN", "stale-token", "InvalidSecurityToken", "OSS_SECURITY_TOKEN"),
    ],
)
def test_bad_credentials_are_a_403_naming_the_variable_and_no_secret(
    oss: OssServer,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    variable: str,
    value: str,
    code: str,
    named: str,
) -> None:
    monkeypatch.setenv(variable, value)
    note = tmp_path / "n.txt"
    note.write_text("n")
    repo = repository()
    for attempt in (repo.list_artifacts, lambda: repo.log_artifact(str(note))):
        with pytest.raises(MlflowException) as refused:
            attempt()
        assert refused.value.error_code == "PERMISSION_DENIED"
        message = refused.value.message
        assert code in message and named in message
        assert_no_secret(message)
        assert value not in message and "StringToSign" not in message
        assert refused.value.__cause__ is None and refused.value.__suppress_context__
    assert keys(oss) == []


def test_missing_settings_and_bad_uris_are_refused_naming_the_fix(
    oss: OssServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    with pytest.raises(MlflowException, match="must not carry credentials") as keyed:
        repository(f"oss://{KEY_ID}:{KEY_SECRET}@{BUCKET}/mlflow")
    assert_no_secret(keyed.value.message)
    with pytest.raises(MlflowException, match="not a valid OSS bucket name"):
        repository("oss://Bad_Bucket/mlflow")
    monkeypatch.delenv("OSS_ENDPOINT")
    monkeypatch.delenv("OSS_ACCESS_KEY_SECRET")
    with pytest.raises(MlflowException) as unset:
        repository()
    assert unset.value.error_code == "INVALID_PARAMETER_VALUE"
    assert unset.value.message.startswith(
        f"the artifact store {ROOT} needs OSS_ACCESS_KEY_SECRET, OSS_ENDPOINT: set them in the "
        "environment or in a .env file where the tracking server (make mlflow-server)"
    )


def test_transient_failures_are_a_503_and_leave_no_partial_file(
    oss: OssServer, tmp_path: Path
) -> None:
    oss.put(BUCKET, "mlflow/big.bin", os.urandom(2 << 20))
    oss.fail_next("drop", key_prefix="mlflow/big.bin")
    repo = repository()
    with pytest.raises(MlflowException) as dropped:
        repo._download_file("big.bin", str(tmp_path / "big.bin"))
    assert dropped.value.error_code == "TEMPORARILY_UNAVAILABLE"
    assert "retrying may help" in dropped.value.message
    assert list(tmp_path.iterdir()) == []

    oss.fail_next("503", method="PUT")
    note = tmp_path / "n.txt"
    note.write_text("n")
    with pytest.raises(MlflowException, match="HTTP 503 ServiceUnavailable") as unavailable:
        repo.log_artifact(str(note))
    assert unavailable.value.error_code == "TEMPORARILY_UNAVAILABLE"
    assert sum(1 for r in oss.requests if r.method == "PUT") == 1  # no hidden retry


# --- a real tracking server with MLFLOW_ARTIFACTS_DESTINATION=oss://... ----------------------


def _group_command_lines(group: int) -> list[str]:
    lines = []
    for proc in psutil.process_iter(["pid", "cmdline"]):
        with contextlib.suppress(psutil.Error, ProcessLookupError):
            if os.getpgid(proc.pid) == group:
                lines.append(" ".join(proc.info["cmdline"] or []))
    return lines


@contextlib.contextmanager
def tracking_server(home: Path, oss: OssServer) -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    """`python -m deployments.tracking_server` in its own process group, artifacts on OSS; the
    whole group is stopped afterwards, whatever happened. The key id and endpoint come from the
    environment, the secret and STS token from `.env` where the server starts."""
    port = free_port()
    (home / ".env").write_text(f"{IN_DOTENV[0]}={KEY_SECRET}\n{IN_DOTENV[1]}={TOKEN}\n")
    inherited = {
        name: value
        for name, value in os.environ.items()
        if not name.startswith("MLFLOW_") and name not in IN_DOTENV
    }
    env = inherited | {
        "PYTHONPATH": str(PROJECT_ROOT),
        "MLFLOW_BACKEND_STORE_URI": f"sqlite:///{home / 'mlflow.db'}",
        "MLFLOW_HOST": "127.0.0.1",
        "MLFLOW_PORT": str(port),
        "MLFLOW_ARTIFACTS_DESTINATION": ROOT,
        "OSS_ACCESS_KEY_ID": KEY_ID,
        "OSS_ENDPOINT": oss.endpoint,
    }
    url = f"http://127.0.0.1:{port}"
    with (home / "server.log").open("wb") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "deployments.tracking_server", "tracking.server.workers=1"],
            cwd=home,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        deadline = time.monotonic() + SERVER_START_TIMEOUT_S
        while not healthy(url):
            if process.poll() is not None or time.monotonic() > deadline:
                tail = (home / "server.log").read_text(errors="replace")[-4000:]
                pytest.fail(f"the tracking server did not answer {url}/health:\n{tail}")
            time.sleep(0.3)
        yield url, process
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=10)
        deadline = time.monotonic() + 10
        while _group_command_lines(process.pid) and time.monotonic() < deadline:
            time.sleep(0.2)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)  # workers that outlived the wrapper


def test_the_tracking_server_keeps_artifacts_and_models_on_oss(
    oss: OssServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from sklearn.linear_model import LinearRegression

    home = tmp_path / "server"
    home.mkdir()
    previous_uri = mlflow.get_tracking_uri()
    with tracking_server(home, oss) as (url, process):
        assert_no_secret("\n".join(_group_command_lines(process.pid)))
        # The client has the server's URL and nothing else: no OSS settings at all.
        for name in ("OSS_ACCESS_KEY_ID", "OSS_ACCESS_KEY_SECRET", "OSS_SECURITY_TOKEN"):
            monkeypatch.delenv(name)
        monkeypatch.setenv("MLFLOW_TRACKING_URI", url)
        try:
            mlflow.set_tracking_uri(url)
            note = tmp_path / "hello.txt"
            note.write_bytes(b"served from oss\n")
            x = np.arange(12, dtype=float).reshape(6, 2)
            y = x @ np.array([1.5, -2.0]) + 0.5
            experiment_id = mlflow.create_experiment("oss-artifacts")
            with mlflow.start_run(experiment_id=experiment_id) as run:
                mlflow.log_artifact(str(note), "notes")
                mlflow.log_text("scratch", "scratch/tmp.txt")
                info = mlflow.sklearn.log_model(
                    LinearRegression().fit(x, y), name="model", pip_requirements=["scikit-learn"]
                )
            run_id = run.info.run_id

            loaded = mlflow.sklearn.load_model(info.model_uri)
            np.testing.assert_allclose(loaded.predict(x), y)
            back = tmp_path / "back"
            back.mkdir()
            got = mlflow.artifacts.download_artifacts(
                run_id=run_id, artifact_path="notes/hello.txt", dst_path=str(back)
            )
            assert Path(got).read_bytes() == note.read_bytes()
            listed = {f.path for f in mlflow.MlflowClient().list_artifacts(run_id)}
            assert listed == {"notes", "scratch"}
            run_prefix = f"mlflow/{experiment_id}/{run_id}/artifacts"
            request = urllib.request.Request(
                f"{url}/api/2.0/mlflow-artifacts/artifacts/{run_prefix.removeprefix('mlflow/')}"
                "/scratch",
                method="DELETE",
            )
            with urllib.request.urlopen(request, timeout=10) as response:
                assert response.status == 200
            with pytest.raises(MlflowException):
                mlflow.artifacts.download_artifacts(run_id=run_id, artifact_path="gone.txt")
        finally:
            mlflow.set_tracking_uri(previous_uri)

    stored = keys(oss)
    assert all(key.startswith("mlflow/") for key in stored), stored
    assert f"{run_prefix}/notes/hello.txt" in stored
    assert not any(key.startswith(f"{run_prefix}/scratch") for key in stored)
    model_prefix = f"mlflow/{experiment_id}/models/{info.model_id}/artifacts"
    assert {f"{model_prefix}/MLmodel", f"{model_prefix}/model.skops"} <= set(stored)
    # Nothing on the server's disk but its .env, database and log: no mlartifacts, no mlruns.
    assert sorted(p.name for p in home.rglob("*")) == [".env", "mlflow.db", "server.log"]
    log = (home / "server.log").read_text(errors="replace")
    assert "artifacts oss://bucket/mlflow" in log
    assert '/gone.txt HTTP/1.1" 404' in log  # a missing object is a 404 to clients, not retried
    assert_no_secret(log)
    database = (home / "mlflow.db").read_bytes().decode("latin-1")
    assert_no_secret(database)
