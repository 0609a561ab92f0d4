"""`oss://BUCKET/PREFIX` sources: the one data object under a prefix, streamed to disk, verified.

The prefix must name exactly one data object (folder markers, zero-byte keys ending in '/', are
ignored; a key equal to the prefix wins over longer keys sharing it). The object streams to a
`.part` file in 1 MiB reads, never whole into memory, and takes its final name only once its size
and, where OSS returns one, its CRC64 match, so a half-downloaded file can never be converted or
published. Failures are classified (`connectors.oss.classify`): timeouts, dropped connections
and 5xx raise `TransientError` (exit 75, retried by the task's retry policy; nothing here retries
on its own), bad credentials and 403 raise `ConfigurationError` naming the variable to check,
and 404 or a prefix naming zero or several objects raise `SourceError` with what was found.
"""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from connectors.oss import (
    OssLocation,
    OssSettingError,
    OssSettings,
    classify,
    make_bucket,
    parse_oss_uri,
)
from steps.common.errors import ConfigurationError, SourceError, StepError, TransientError
from steps.ingest.source_limits import Deadline, SourceLimits

if TYPE_CHECKING:
    import oss2

logger = logging.getLogger(__name__)

CHUNK_BYTES = 1 << 20
# How many entries a listing gathers before it stops: enough to explain an ambiguous prefix
# without walking a whole bucket.
MAX_LISTED = 1000
LIST_PAGE = 1000
_SHOWN = 10
_LOG_EVERY_S = 5.0


@dataclass(frozen=True)
class ObjectEntry:
    key: str
    size: int
    etag: str

    @property
    def is_folder_marker(self) -> bool:
        return self.key.endswith("/") and self.size == 0


@dataclass(frozen=True)
class DownloadedObject:
    """The verified local copy of one OSS object, and what identifies the version read."""

    path: Path
    uri: str
    size: int
    etag: str
    crc64: int | None
    seconds: float

    def lineage(self) -> dict[str, str]:
        tags = {
            "data.oss_uri": self.uri,
            "data.oss_etag": self.etag,
            "data.oss_size": str(self.size),
        }
        if self.crc64 is not None:
            tags["data.oss_crc64"] = str(self.crc64)
        return tags


def choose_object(
    location: OssLocation, entries: Iterable[ObjectEntry], truncated: bool
) -> ObjectEntry:
    """The one data object the prefix names, or a SourceError listing what was found."""
    listed = list(entries)
    data = [entry for entry in listed if not entry.is_folder_marker]
    exact = [entry for entry in data if entry.key == location.prefix]
    if exact:
        return exact[0]
    if len(data) == 1 and not truncated:
        return data[0]
    if not data:
        markers = [entry.key for entry in listed]
        found = f" (only folder markers: {', '.join(markers[:_SHOWN])})" if markers else ""
        raise SourceError(
            f"no data object under {location.uri}{found}: check data.source's bucket and prefix, "
            f"or upload the file with `python -m flows.upload_data FILE {location.uri}`"
        )
    shown = "; ".join(f"{location.key_uri(e.key)} ({e.size:,} bytes)" for e in data[:_SHOWN])
    more = len(data) - _SHOWN
    count = f"more than {len(data)}" if truncated else str(len(data))
    tail = f"; and {more} more" if more > 0 else ""
    raise SourceError(
        f"{location.uri} names {count} data objects, not one: {shown}{tail}. Narrow the prefix "
        f"to one object, e.g. data.source={location.key_uri(data[0].key)}"
    )


def list_objects(
    bucket: oss2.Bucket, prefix: str, *, limit: int = MAX_LISTED, page_size: int = LIST_PAGE
) -> tuple[list[ObjectEntry], bool]:
    """Up to `limit` entries under `prefix` (all pages), and whether more were left unlisted."""
    import oss2

    entries: list[ObjectEntry] = []
    # max_retries=1: one request per page; a failed page is the step's failure to retry.
    for info in oss2.ObjectIterator(bucket, prefix=prefix, max_keys=page_size, max_retries=1):
        if len(entries) >= limit:
            return entries, True
        entries.append(ObjectEntry(key=info.key, size=int(info.size), etag=str(info.etag)))
    return entries, False


class _Progress:
    """A tqdm bar on a terminal (when tqdm is installed), periodic log lines otherwise."""

    def __init__(self, total: int, label: str) -> None:
        self.total = total
        self.label = label
        self.done = 0
        self.started = time.monotonic()
        self._last_log = self.started
        self._bar: Any = None
        if sys.stderr.isatty():
            try:
                from tqdm import tqdm
            except ImportError:
                pass
            else:
                self._bar = tqdm(total=total, unit="B", unit_scale=True, desc=label, leave=False)

    def update(self, count: int) -> None:
        self.done += count
        if self._bar is not None:
            self._bar.update(count)
            return
        now = time.monotonic()
        if now - self._last_log >= _LOG_EVERY_S:
            self._last_log = now
            share = self.done / self.total if self.total else 1.0
            rate = self.done / max(now - self.started, 1e-9) / 1e6
            logger.info(
                "%s: %.0f%% (%d of %d bytes, %.1f MB/s)",
                self.label,
                100 * share,
                self.done,
                self.total,
                rate,
            )

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()


def download_object(
    bucket: oss2.Bucket,
    location: OssLocation,
    entry: ObjectEntry,
    into: Path,
    limits: SourceLimits | None = None,
) -> DownloadedObject:
    """Stream one object to `into/<its file name>`; verified, or no file at all.

    An object larger than `limits.max_source_mb` is refused before any byte is read; the
    download stops once `limits.download_deadline_s` is spent (checked after each 1 MiB read).
    """
    from oss2.exceptions import InconsistentError

    limits = SourceLimits() if limits is None else limits
    uri = location.key_uri(entry.key)
    limits.check_size(uri, entry.size)
    deadline = Deadline(limits.download_deadline_s, uri)
    target = into / (Path(entry.key).name or "listings.csv")
    partial = target.with_name(target.name + ".part")
    started = time.monotonic()
    try:
        with bucket.get_object(entry.key) as result, partial.open("wb") as sink:
            expected = (
                int(result.content_length) if result.content_length is not None else entry.size
            )
            etag = str(result.etag or entry.etag)
            progress = _Progress(expected, f"downloading {uri}")
            try:
                while chunk := result.read(CHUNK_BYTES):
                    sink.write(chunk)
                    progress.update(len(chunk))
                    if progress.done > limits.max_bytes:
                        raise limits.too_large(uri, progress.done)
                    deadline.check(progress.done)
            finally:
                progress.close()
            server_crc, client_crc = result.server_crc, result.client_crc
        written = partial.stat().st_size
        if written != expected:
            raise TransientError(
                f"downloading {uri}: got {written:,} of {expected:,} bytes; the transfer was cut "
                "short"
            )
        if server_crc is not None and client_crc != server_crc:
            raise InconsistentError(f"CRC64 {client_crc} != {server_crc}")
    except BaseException:
        partial.unlink(missing_ok=True)
        raise
    partial.replace(target)
    seconds = time.monotonic() - started
    return DownloadedObject(
        path=target, uri=uri, size=written, etag=etag, crc64=server_crc, seconds=seconds
    )


def download_oss(
    source: str,
    into: Path,
    timeout_s: float,
    *,
    settings_from: Callable[[], OssSettings] = OssSettings.from_env,
    page_size: int = LIST_PAGE,
    limits: SourceLimits | None = None,
) -> DownloadedObject:
    """Resolve `oss://BUCKET/PREFIX` to exactly one object and download it under `into`."""
    try:
        location = parse_oss_uri(source)
        settings = settings_from()
    except OssSettingError as error:
        raise ConfigurationError(str(error)) from None
    bucket = make_bucket(settings, location.bucket, timeout_s)
    action = f"listing {location.uri}"
    try:
        entries, truncated = list_objects(bucket, location.prefix, page_size=page_size)
        entry = choose_object(location, entries, truncated)
        action = f"downloading {location.key_uri(entry.key)}"
        logger.info("%s: %s bytes, ETag %s", action, f"{entry.size:,}", entry.etag)
        downloaded = download_object(bucket, location, entry, into, limits)
    except StepError:
        raise
    except Exception as error:
        failure = classify(error, action, settings.endpoint)
        if failure.transient:
            raise TransientError(f"{failure.message}; retrying may help") from None
        if failure.kind == "credentials":
            raise ConfigurationError(failure.message) from None
        raise SourceError(failure.message) from None
    rate = downloaded.size / max(downloaded.seconds, 1e-9) / 1e6
    checked = (
        f"size and CRC64 {downloaded.crc64} verified"
        if downloaded.crc64 is not None
        else "size verified, no CRC64 returned"
    )
    logger.info(
        "downloaded %s: %s bytes in %.1f s (%.1f MB/s), ETag %s, %s",
        downloaded.uri,
        f"{downloaded.size:,}",
        downloaded.seconds,
        rate,
        downloaded.etag,
        checked,
    )
    return downloaded
