"""The OSS download and upload code with the real oss2 client against the loopback OSS server.

In-process (no pipeline), so every rule of the download and every answer of the server is
checked in milliseconds: the exactly-one-object rule, verification, cleanup of partial files,
error classes, no hidden retries, and `python -m flows.upload_data` (single PUT and multipart).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import oss2
import pytest

from connectors.oss import OssSettings, make_bucket
from flows.upload_data import main as upload_main
from steps.common.errors import ConfigurationError, SourceError, TransientError
from steps.ingest.oss_source import download_oss, list_objects
from tests.oss_server import OssServer

KEY_ID = "LTAIclientkey0002"
KEY_SECRET = "clientsecret0002"
BUCKET = "listings"


@pytest.fixture
def server(monkeypatch: pytest.MonkeyPatch) -> Iterator[OssServer]:
    with OssServer(KEY_ID, KEY_SECRET, buckets=(BUCKET,)) as running:
        monkeypatch.setenv("OSS_ACCESS_KEY_ID", KEY_ID)
        monkeypatch.setenv("OSS_ACCESS_KEY_SECRET", KEY_SECRET)
        monkeypatch.setenv("OSS_ENDPOINT", running.endpoint)
        monkeypatch.delenv("OSS_SECURITY_TOKEN", raising=False)
        yield running


def bucket_for(
    server: OssServer, secret: str = KEY_SECRET, token: str | None = None
) -> oss2.Bucket:
    settings = OssSettings(server.endpoint, KEY_ID, secret, token)
    return make_bucket(settings, BUCKET, timeout_s=5)


# --- the server speaks the protocol oss2 expects ---------------------------------------------


def test_server_checks_the_v1_signature_of_every_request(server: OssServer) -> None:
    server.put(BUCKET, "a.csv", b"x")
    assert bucket_for(server).get_object("a.csv").read() == b"x"
    assert server.requests[-1].headers["authorization"].startswith(f"OSS {KEY_ID}:")

    with pytest.raises(oss2.exceptions.ServerError) as wrong_secret:
        bucket_for(server, secret="wrong").get_object("a.csv")
    assert (wrong_secret.value.status, wrong_secret.value.code) == (403, "SignatureDoesNotMatch")

    unknown = oss2.Bucket(oss2.Auth("LTAIunknown", KEY_SECRET), server.endpoint, BUCKET)
    with pytest.raises(oss2.exceptions.ServerError) as unknown_key:
        unknown.get_object("a.csv")
    assert unknown_key.value.code == "InvalidAccessKeyId"


def test_server_requires_the_sts_token_when_configured(monkeypatch: pytest.MonkeyPatch) -> None:
    with OssServer(KEY_ID, KEY_SECRET, security_token="sts-token-1", buckets=(BUCKET,)) as sts:
        sts.put(BUCKET, "a.csv", b"x")
        assert bucket_for(sts, token="sts-token-1").get_object("a.csv").read() == b"x"
        assert sts.requests[-1].headers["x-oss-security-token"] == "sts-token-1"
        with pytest.raises(oss2.exceptions.ServerError) as no_token:
            bucket_for(sts).get_object("a.csv")
        assert no_token.value.code == "InvalidSecurityToken"


def test_server_lists_in_pages_v1_and_v2_and_serves_ranges_and_heads(server: OssServer) -> None:
    for index in range(5):
        server.put(BUCKET, f"p/{index}.csv", b"0123456789")
    bucket = bucket_for(server)

    entries, truncated = list_objects(bucket, "p/", page_size=2)
    assert [e.key for e in entries] == [f"p/{i}.csv" for i in range(5)] and not truncated
    markers = [r.query.get("marker") for r in server.requests if r.key == ""]
    assert markers == ["", "p/1.csv", "p/3.csv"]

    v2 = [info.key for info in oss2.ObjectIteratorV2(bucket, prefix="p/", max_keys=2)]
    assert v2 == [f"p/{i}.csv" for i in range(5)]
    assert sum(1 for r in server.requests if r.query.get("list-type") == "2") == 3

    assert bucket.get_object("p/0.csv", byte_range=(2, 5)).read() == b"2345"
    assert bucket.head_object("p/0.csv").content_length == 10


# --- download: the exactly-one-object rule --------------------------------------------------


def test_a_key_equal_to_the_prefix_wins_over_longer_keys(server: OssServer, tmp_path: Path) -> None:
    server.put(BUCKET, "d/listings.csv", b"id\n1\n")
    server.put(BUCKET, "d/listings.csv.bak", b"id\n2\n")

    got = download_oss(f"oss://{BUCKET}/d/listings.csv", tmp_path, 5)

    assert got.path.read_bytes() == b"id\n1\n"
    assert got.lineage()["data.oss_etag"] == server.get(BUCKET, "d/listings.csv").etag  # type: ignore[union-attr]


def test_only_folder_markers_is_an_error_naming_them(server: OssServer, tmp_path: Path) -> None:
    server.put(BUCKET, "empty/", b"")
    with pytest.raises(
        SourceError,
        match=r"no data object under oss://listings/empty/ \(only folder markers: empty/\)",
    ):
        download_oss(f"oss://{BUCKET}/empty/", tmp_path, 5)


def test_several_objects_is_an_error_listing_them(server: OssServer, tmp_path: Path) -> None:
    for index in range(12):
        server.put(BUCKET, f"many/{index:02}.csv", b"x" * index)
    with pytest.raises(SourceError) as error:
        download_oss(f"oss://{BUCKET}/many/", tmp_path, 5)
    message = str(error.value)
    assert "names 12 data objects, not one" in message
    assert "oss://listings/many/00.csv (0 bytes)" in message
    assert "and 2 more" in message
    assert "data.source=oss://listings/many/00.csv" in message


def test_a_missing_bucket_is_permanent_and_names_the_endpoint_setting(
    server: OssServer, tmp_path: Path
) -> None:
    with pytest.raises(SourceError, match=r"NoSuchBucket.*OSS_ENDPOINT"):
        download_oss("oss://no-such-bucket/x.csv", tmp_path, 5)


def test_missing_settings_are_a_configuration_error(
    server: OssServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("OSS_ACCESS_KEY_SECRET")
    monkeypatch.delenv("OSS_ENDPOINT")
    with pytest.raises(ConfigurationError, match="needs OSS_ACCESS_KEY_SECRET, OSS_ENDPOINT"):
        download_oss(f"oss://{BUCKET}/x.csv", tmp_path, 5)


# --- download: transient failures leave nothing behind, and are not retried here -------------


def test_a_dropped_connection_is_transient_and_leaves_no_file(
    server: OssServer, tmp_path: Path
) -> None:
    server.put(BUCKET, "big.csv", os.urandom(3 << 20))
    server.fail_next("drop", key_prefix="big.csv")
    with pytest.raises(TransientError, match=r"connection to OSS .* failed"):
        download_oss(f"oss://{BUCKET}/big.csv", tmp_path, 5)
    assert list(tmp_path.iterdir()) == []


def test_a_crc_mismatch_is_transient_and_leaves_no_file(server: OssServer, tmp_path: Path) -> None:
    stored = server.put(BUCKET, "c.csv", b"id\n1\n")
    stored.crc64 ^= 1  # the service reports a different checksum than the bytes it sends
    with pytest.raises(TransientError, match="CRC64 mismatch"):
        download_oss(f"oss://{BUCKET}/c.csv", tmp_path, 5)
    assert list(tmp_path.iterdir()) == []


def test_a_503_is_transient_and_oss2_does_not_retry_it_behind_the_task(
    server: OssServer, tmp_path: Path
) -> None:
    server.put(BUCKET, "a.csv", b"x")
    server.fail_next("503", key_prefix=None)  # the listing
    with pytest.raises(TransientError, match="HTTP 503 ServiceUnavailable"):
        download_oss(f"oss://{BUCKET}/a.csv", tmp_path, 5)
    assert len(server.requests) == 1  # one request: retries belong to the task's policy


# --- upload: python -m flows.upload_data ------------------------------------------------------


def test_upload_cli_puts_a_file_where_the_pipeline_finds_it(
    server: OssServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    local = tmp_path / "listings.csv"
    local.write_bytes(b"id,name\n1,a\n")

    assert upload_main([str(local), f"oss://{BUCKET}/nyc/"]) == 0

    uri = capsys.readouterr().out.strip()
    assert uri == f"oss://{BUCKET}/nyc/listings.csv"
    back = tmp_path / "back"
    back.mkdir()
    got = download_oss(f"oss://{BUCKET}/nyc/", back, 5)
    assert got.path.read_bytes() == local.read_bytes()


def test_upload_cli_sends_large_files_in_multipart(
    server: OssServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))  # oss2 keeps its resume checkpoints under ~
    local = tmp_path / "big.csv"
    data = os.urandom(3 << 20)
    local.write_bytes(data)

    code = upload_main(
        [
            str(local),
            f"oss://{BUCKET}/big.csv",
            "--multipart-threshold-mb",
            "1",
            "--part-size-mb",
            "1",
        ]
    )

    assert code == 0
    stored = server.get(BUCKET, "big.csv")
    assert stored is not None and stored.data == data
    assert stored.kind == "Multipart" and stored.etag.endswith("-3")
    assert sum(1 for r in server.requests if "partNumber" in r.query) == 3


@pytest.mark.parametrize(
    ("destination", "expected"),
    [
        ("s3://listings/x.csv", "not an oss://BUCKET/PREFIX URI"),
        ("oss://Bad_Bucket/x.csv", "not a valid OSS bucket name"),
        ("oss://key:secret@listings/x.csv", "must not carry credentials"),
    ],
)
def test_upload_cli_refuses_a_bad_destination_with_exit_2(
    server: OssServer,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    destination: str,
    expected: str,
) -> None:
    local = tmp_path / "l.csv"
    local.write_bytes(b"id\n")
    assert upload_main([str(local), destination]) == 2
    error = capsys.readouterr().err
    assert expected in error
    assert "secret" not in error.replace("must not carry credentials", "")


def test_upload_cli_exit_codes_for_credentials_and_transient_failures(
    server: OssServer,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    local = tmp_path / "l.csv"
    local.write_bytes(b"id\n")

    server.fail_next("503", method="PUT")
    assert upload_main([str(local), f"oss://{BUCKET}/l.csv"]) == 75

    monkeypatch.setenv("OSS_ACCESS_KEY_SECRET", "wrong-secret")
    assert upload_main([str(local), f"oss://{BUCKET}/l.csv"]) == 2
    error = capsys.readouterr().err
    assert "OSS_ACCESS_KEY_SECRET" in error
    assert KEY_ID not in error
