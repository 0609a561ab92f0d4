"""The pure rules of OSS sources: URIs, settings, the one-object rule, error kinds, redaction."""

from __future__ import annotations

from pathlib import Path

import oss2
import pytest
import requests

from connectors.oss import (
    OssLocation,
    OssSettingError,
    OssSettings,
    classify,
    normalize_endpoint,
    parse_oss_uri,
)
from connectors.oss_upload import destination_key
from orchestration.config import DataConfig
from steps.common.errors import SourceError
from steps.common.url_secrets import redact_url
from steps.common.wandb_mirror import public_config
from steps.ingest.oss_source import ObjectEntry, choose_object
from steps.ingest.sources import redact_source, source_kind

LOCATION = OssLocation("listings", "nyc/")


def entry(key: str, size: int = 10) -> ObjectEntry:
    return ObjectEntry(key=key, size=size, etag="E")


def test_parse_oss_uri() -> None:
    assert parse_oss_uri("oss://listings/nyc/2019/a.csv") == OssLocation(
        "listings", "nyc/2019/a.csv"
    )
    assert parse_oss_uri("OSS://my-bucket") == OssLocation("my-bucket", "")


@pytest.mark.parametrize(
    ("uri", "message"),
    [
        ("s3://listings/a.csv", "not an oss://"),
        ("oss://AK:SK@listings/a.csv", "must not carry credentials"),
        ("oss://listings/a.csv?Signature=x", "no query"),
        ("oss://Listings_1/a.csv", "not a valid OSS bucket name"),
        ("oss:///a.csv", "not a valid OSS bucket name"),
    ],
)
def test_parse_oss_uri_refuses(uri: str, message: str) -> None:
    with pytest.raises(OssSettingError, match=message) as error:
        parse_oss_uri(uri)
    assert "SK" not in str(error.value).replace("OSS_ACCESS_KEY", "")


def test_redact_url_and_redact_source_drop_credentials_and_queries() -> None:
    assert redact_url("oss://AK:SK@listings/a.csv?x=1") == "oss://listings/a.csv"
    assert redact_source("oss://listings/a.csv") == "oss://listings/a.csv"
    assert source_kind("oss://listings/a.csv") == "oss"


def test_settings_from_env_name_every_missing_variable() -> None:
    with pytest.raises(OssSettingError, match="needs OSS_ACCESS_KEY_ID, OSS_ENDPOINT"):
        OssSettings.from_env({"OSS_ACCESS_KEY_SECRET": "s"})


def test_settings_repr_shows_no_secret() -> None:
    settings = OssSettings.from_env(
        {
            "OSS_ACCESS_KEY_ID": "id-123",
            "OSS_ACCESS_KEY_SECRET": "secret-456",
            "OSS_SECURITY_TOKEN": "token-789",
            "OSS_ENDPOINT": "oss-cn-hangzhou.aliyuncs.com",
        }
    )
    assert settings.endpoint == "https://oss-cn-hangzhou.aliyuncs.com"
    assert settings.security_token == "token-789"
    for secret in ("id-123", "secret-456", "token-789"):
        assert secret not in repr(settings)


def test_normalize_endpoint() -> None:
    assert normalize_endpoint("http://127.0.0.1:9000/") == "http://127.0.0.1:9000"
    with pytest.raises(OssSettingError, match="OSS_ENDPOINT"):
        normalize_endpoint("ftp://example.org")


def test_one_object_under_the_prefix_is_chosen_and_folder_markers_are_ignored() -> None:
    chosen = choose_object(LOCATION, [entry("nyc/", 0), entry("nyc/a.csv")], truncated=False)
    assert chosen.key == "nyc/a.csv"


def test_a_key_equal_to_the_prefix_wins() -> None:
    location = OssLocation("listings", "nyc/a.csv")
    entries = [entry("nyc/a.csv"), entry("nyc/a.csv.bak")]
    assert choose_object(location, entries, truncated=False).key == "nyc/a.csv"


def test_zero_objects_names_the_folder_markers_and_the_upload_command() -> None:
    with pytest.raises(SourceError, match=r"only folder markers: nyc/.*flows.upload_data"):
        choose_object(LOCATION, [entry("nyc/", 0)], truncated=False)


def test_several_objects_lists_them_and_how_to_narrow() -> None:
    with pytest.raises(SourceError) as error:
        choose_object(LOCATION, [entry("nyc/a.csv"), entry("nyc/b.csv", 5)], truncated=False)
    assert "names 2 data objects" in str(error.value)
    assert "oss://listings/nyc/b.csv (5 bytes)" in str(error.value)
    assert "data.source=oss://listings/nyc/a.csv" in str(error.value)


def test_a_truncated_listing_is_never_taken_as_one_object() -> None:
    with pytest.raises(SourceError, match="more than 1 data objects"):
        choose_object(LOCATION, [entry("nyc/a.csv")], truncated=True)


def _server_error(status: int, code: str) -> oss2.exceptions.ServerError:
    body = f"<Error><Code>{code}</Code><OSSAccessKeyId>id-123</OSSAccessKeyId></Error>".encode()
    details = {"Code": code, "OSSAccessKeyId": "id-123"}
    return oss2.exceptions.ServerError(status, {"x-oss-request-id": "R1"}, body, details)


@pytest.mark.parametrize(
    ("error", "kind", "names"),
    [
        (_server_error(503, "ServiceUnavailable"), "transient", "HTTP 503"),
        (_server_error(500, "InternalError"), "transient", "HTTP 500"),
        (_server_error(403, "InvalidAccessKeyId"), "credentials", "OSS_ACCESS_KEY_ID"),
        (_server_error(403, "SignatureDoesNotMatch"), "credentials", "OSS_ACCESS_KEY_SECRET"),
        (_server_error(403, "SecurityTokenExpired"), "credentials", "OSS_SECURITY_TOKEN"),
        (_server_error(404, "NoSuchBucket"), "not_found", "OSS_ENDPOINT"),
        (_server_error(400, "InvalidArgument"), "permanent", "HTTP 400"),
        (oss2.exceptions.RequestError(requests.ReadTimeout("t")), "transient", "timed out"),
        (requests.exceptions.ChunkedEncodingError("cut"), "transient", "ChunkedEncodingError"),
        (oss2.exceptions.InconsistentError("crc"), "transient", "CRC64"),
        (ValueError("x"), "permanent", "ValueError"),
    ],
)
def test_classify(error: BaseException, kind: str, names: str) -> None:
    failure = classify(error, "listing oss://listings/", "http://127.0.0.1:1")
    assert failure.kind == kind
    assert names in failure.message
    assert "id-123" not in failure.message  # OSS echoes the key id; it is never passed on


@pytest.mark.parametrize(
    ("source", "ok"),
    [
        ("oss://listings/nyc/", True),
        ("oss://listings", True),
        ("oss://AK:SK@listings/a.csv", False),
        ("oss://listings/a.csv?Signature=1", False),
        ("oss:///a.csv", False),
        ("s3://listings/a.csv", False),
    ],
)
def test_config_accepts_oss_sources_without_credentials(source: str, ok: bool) -> None:
    values = {
        "source": source,
        "demo_rows": 10,
        "demo_seed": 1,
        "compression": "zstd",
        "http_timeout_s": 1,
    }
    if ok:
        assert DataConfig.model_validate(values).source == source
    else:
        with pytest.raises(ValueError, match="oss://"):
            DataConfig.model_validate(values)


def test_wandb_config_drops_keys_naming_credentials() -> None:
    config = {"source": "oss://b/p", "api_key": "x", "OSS_ACCESS_KEY_SECRET": "y", "token": "z"}
    assert public_config(config) == {"source": "oss://b/p"}


def test_upload_destination_key() -> None:
    assert destination_key("nyc/", Path("/tmp/l.csv")) == "nyc/l.csv"
    assert destination_key("", Path("/tmp/l.csv")) == "l.csv"
    assert destination_key("nyc/listings.csv", Path("/tmp/l.csv")) == "nyc/listings.csv"
