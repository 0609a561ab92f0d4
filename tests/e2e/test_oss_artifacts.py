"""oss:// as MLflow's artifact store (connectors/oss_artifacts.py), on the loopback OSS server.

First the repository in-process, built through MLflow's own registry (so the pyproject entry
point is what is tested) with the real oss2 client: round trips, every listing page, batched
deletes, multipart uploads, and the failures a user meets (a missing object, bad credentials,
missing settings, a dropped connection), each with its error code and a message naming the fix
and no credential. STS credentials throughout, so the security token is checked on every
request too. A real tracking server on this store is in the services tier
(tests/services/test_oss_artifact_store.py).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from mlflow.exceptions import MlflowException
from mlflow.store.artifact.artifact_repository_registry import (
    get_artifact_repository,
    get_registered_artifact_repositories,
)

from connectors.oss_artifacts import OssArtifactRepository
from tests.oss_server import OssServer
from tests.oss_store import (
    BUCKET,
    KEY_ID,
    KEY_SECRET,
    ROOT,
    assert_no_secret,
    keys,
    loopback_store,
)


@pytest.fixture
def oss(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[OssServer]:
    with loopback_store(tmp_path, monkeypatch) as server:
        yield server


def repository(uri: str = ROOT) -> OssArtifactRepository:
    repo = get_artifact_repository(uri)
    assert isinstance(repo, OssArtifactRepository)
    return repo


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
