"""What listings files the watched places hold now: OSS prefixes and local folders, listed.

A file is named by its source (`oss://BUCKET/KEY`, or an absolute local path) and a fingerprint
of its content that changes when the file does: the OSS ETag (an MD5 of the bytes, or of the
parts of a multipart upload), or a local file's size and modification time in nanoseconds.
`flows.upload_data` fingerprints what it uploads the same way (`etag_fingerprint`), so an
upload and the watcher's next pass name one object alike.
"""

from __future__ import annotations

import fnmatch
import os
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

from connectors.oss import OssSettings, is_oss_uri, make_bucket, parse_oss_uri
from orchestration.events import ListingsObject


def etag_fingerprint(etag: str) -> str:
    """An OSS ETag as a fingerprint: quotes dropped, upper case (listing and PUT agree)."""
    return "etag:" + etag.strip().strip('"').upper()


def file_fingerprint(stat: os.stat_result) -> str:
    return f"size:{stat.st_size};mtime_ns:{stat.st_mtime_ns}"


def _matches(name: str, patterns: Sequence[str]) -> bool:
    return any(fnmatch.fnmatchcase(name, pattern) for pattern in patterns)


def list_oss(
    uri: str, patterns: Sequence[str], timeout_s: float, settings: OssSettings | None = None
) -> Iterator[ListingsObject]:
    """Every object under `uri`'s prefix whose last path segment matches `patterns`."""
    import oss2

    location = parse_oss_uri(uri)
    bucket = make_bucket(settings or OssSettings.from_env(), location.bucket, timeout_s)
    for info in oss2.ObjectIteratorV2(bucket, prefix=location.prefix):
        key = str(info.key)
        if key.endswith("/") or not _matches(key.rsplit("/", 1)[-1], patterns):
            continue
        yield ListingsObject(
            source=location.key_uri(key),
            fingerprint=etag_fingerprint(str(info.etag)),
            size=int(info.size),
        )


def list_folder(
    folder: Path, patterns: Sequence[str], settle_s: float, now: float | None = None
) -> Iterator[ListingsObject]:
    """Every file directly in `folder` matching `patterns` and unchanged for `settle_s`
    seconds: a file still being written (copied, exported) waits for the next pass."""
    if not folder.is_dir():
        raise FileNotFoundError(
            f"watched folder {folder} does not exist or is not a folder; create it or remove it "
            "from watch.sources"
        )
    moment = time.time() if now is None else now
    for entry in sorted(os.scandir(folder), key=lambda item: item.name):
        if not entry.is_file() or not _matches(entry.name, patterns):
            continue
        stat = entry.stat()
        if moment - stat.st_mtime < settle_s:
            continue
        yield ListingsObject(
            source=str(Path(entry.path).resolve()),
            fingerprint=file_fingerprint(stat),
            size=stat.st_size,
        )


def list_source(
    source: str, patterns: Sequence[str], settle_s: float, timeout_s: float
) -> list[ListingsObject]:
    """The listings files at one watched place, sorted by source."""
    if is_oss_uri(source):
        found = list(list_oss(source, patterns, timeout_s))
    else:
        found = list(list_folder(Path(source), patterns, settle_s))
    return sorted(found, key=lambda item: item.source)
