"""The loopback OSS server as an artifact store's backing bucket, with STS test credentials.

Shared by the oss:// artifact store's tests in-process (tests/e2e/test_oss_artifacts.py) and
behind a real tracking server (tests/services/test_oss_artifact_store.py).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.oss_server import OssServer

KEY_ID = "LTAIartifactKeySECRET0xD4"
KEY_SECRET = "artifactSecretSECRET0xE5"
TOKEN = "artifactStsTokenSECRET0xF6"
SECRETS = (KEY_ID, KEY_SECRET, TOKEN)
BUCKET = "bucket"
ROOT = f"oss://{BUCKET}/mlflow"


@contextlib.contextmanager
def loopback_store(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[OssServer]:
    """The loopback OSS server (STS credentials) and OSS_* pointing at it; HOME in tmp_path, so
    a multipart checkpoint left behind would show."""
    with OssServer(KEY_ID, KEY_SECRET, security_token=TOKEN, buckets=(BUCKET,)) as server:
        monkeypatch.setenv("OSS_ACCESS_KEY_ID", KEY_ID)
        monkeypatch.setenv("OSS_ACCESS_KEY_SECRET", KEY_SECRET)
        monkeypatch.setenv("OSS_SECURITY_TOKEN", TOKEN)
        monkeypatch.setenv("OSS_ENDPOINT", server.endpoint)
        monkeypatch.setenv("HOME", str(tmp_path / "home"))
        yield server


def keys(server: OssServer) -> list[str]:
    return sorted(server.buckets[BUCKET])


def assert_no_secret(text: str) -> None:
    for secret in SECRETS:
        assert secret not in text
