"""Where the listings come from: the built-in demo generator, a local file, HTTP(S) or OSS.

Each source resolves to a local CSV file (plain or gzip) without holding it in memory; the
conversion to Parquet happens afterwards, the same way for every source.
"""

from __future__ import annotations

import logging
import os
import socket
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlparse

from steps.common.errors import ConfigurationError, SourceError, TransientError
from steps.common.url_secrets import redact_url
from steps.ingest.source_limits import Deadline, SourceLimits

logger = logging.getLogger(__name__)

DEMO = "demo"
SUPPORTED = "'demo', a local path, a file:// URI, an http(s):// URL or oss://BUCKET/PREFIX"
_CHUNK = 1 << 20


def source_kind(source: str) -> str:
    """Classify a source string: demo | file | http | oss."""
    if not source or not source.strip():
        raise ConfigurationError(f"data.source is empty; give {SUPPORTED}")
    if source == DEMO:
        return "demo"
    scheme = urlparse(source).scheme.lower()
    if scheme in ("http", "https"):
        return "http"
    if scheme == "oss":
        return "oss"
    if scheme in ("", "file"):
        return "file"
    raise ConfigurationError(
        f"data.source scheme {scheme + '://'!r} is not supported; give {SUPPORTED}"
    )


def local_path(source: str) -> Path:
    """The local file a path or file:// source names; it must exist and be a file."""
    parsed = urlparse(source)
    path = Path(unquote(parsed.path)) if parsed.scheme == "file" else Path(source)
    path = path.expanduser()
    if not path.is_absolute():
        raise ConfigurationError(
            f"data.source {source!r} is relative; the pipeline resolves paths against the "
            "directory it was started from, so pass an absolute path to the entry point"
        )
    if not path.exists():
        raise SourceError(f"data.source {str(path)!r} does not exist: check the path")
    if path.is_dir():
        raise SourceError(
            f"data.source {str(path)!r} is a directory, not a file: point it at the listings CSV "
            "inside it (e.g. .../listings.csv)"
        )
    if not path.is_file():
        raise SourceError(f"data.source {str(path)!r} is not a file: point it at the listings CSV")
    if not os.access(path, os.R_OK):
        raise SourceError(
            f"data.source {str(path)!r} is not readable by this user: fix its permissions "
            "(chmod a+r) or copy it somewhere readable"
        )
    return path


def download_http(
    url: str, into: Path, timeout_s: float, limits: SourceLimits | None = None
) -> Path:
    """Stream a URL to a file under `into`; 4xx and HTML pages are permanent, the rest transient.

    `timeout_s` bounds each connect and read; `limits.download_deadline_s` bounds the whole
    download and `limits.max_source_mb` the bytes kept, so neither a server that drips a byte
    at a time nor one that never stops sending can hold the step or fill the disk.
    """
    import requests
    import urllib3

    limits = SourceLimits() if limits is None else limits
    path = urlparse(url).path
    target = into / (Path(path).name if path and not path.endswith("/") else "listings.csv")
    partial = target.with_suffix(target.suffix + ".part")
    deadline = Deadline(limits.download_deadline_s, redact_url(url))
    received = 0
    try:
        with requests.get(url, stream=True, timeout=timeout_s) as response:
            status = response.status_code
            if status >= 500 or status == 429:
                raise TransientError(f"{redact_url(url)} answered HTTP {status}; retrying may help")
            if status >= 400:
                raise SourceError(
                    f"{redact_url(url)} answered HTTP {status}: check that data.source names an "
                    "existing, readable CSV file"
                )
            _refuse_listing_pages(url, response.headers.get("Content-Type", ""))
            length = response.headers.get("Content-Length", "")
            if length.isdigit():
                limits.check_size(redact_url(url), int(length))
            with partial.open("wb") as sink:
                for chunk in _chunks(response, deadline, timeout_s):
                    received += len(chunk)
                    if received > limits.max_bytes:
                        raise limits.too_large(redact_url(url), received)
                    sink.write(chunk)
                    deadline.check(received)
    except (requests.ConnectionError, requests.Timeout, urllib3.exceptions.HTTPError) as error:
        partial.unlink(missing_ok=True)
        if deadline.remaining() <= 0:
            raise deadline.error(received) from None
        raise TransientError(
            f"downloading {redact_url(url)} failed: {type(error).__name__}"
        ) from error
    except BaseException:
        partial.unlink(missing_ok=True)
        raise
    partial.replace(target)
    logger.info(
        "downloaded %s (%d bytes in %.1f s)",
        redact_url(url),
        target.stat().st_size,
        deadline.elapsed(),
    )
    return target


def _refuse_listing_pages(url: str, content_type: str) -> None:
    """An HTML page (a sign-in page, a directory index) or a listing is not a CSV file."""
    kind = content_type.lower()
    names_a_folder = urlparse(url).path.endswith("/") or not urlparse(url).path
    if names_a_folder and any(word in kind for word in ("html", "json", "xml")):
        raise SourceError(
            f"{redact_url(url)} names a directory: the server answered with a listing "
            f"({content_type}), not a CSV file. Fix: put the file's name at the end of "
            "data.source, e.g. .../listings.csv"
        )
    if "html" in kind:
        raise SourceError(
            f"{redact_url(url)} returned an HTML page ({content_type}), not a CSV file: "
            "link to the raw file (e.g. the 'raw' or 'download' URL)"
        )


def _chunks(response: Any, deadline: Deadline, timeout_s: float) -> Iterator[bytes]:
    """The body as it arrives, each wait cut to what is left of the deadline.

    `read1` returns what one receive brought (a 1 MiB `read` would wait for a whole MiB, however
    slowly it drips), and the socket's timeout shrinks to the time left, so the download stops
    at the deadline rather than one read timeout after it.
    """
    raw = response.raw
    sock = _socket_of(raw)
    while True:
        if sock is not None and sock.fileno() >= 0:  # closed once a sized body is all read
            sock.settimeout(max(min(timeout_s, deadline.remaining()), 0.001))
        chunk = raw.read1(_CHUNK, decode_content=True)
        if not chunk:
            return
        yield chunk


def _socket_of(raw: Any) -> socket.socket | None:
    """The socket a urllib3 response reads from, or None (then each wait is `timeout_s`).

    While the connection is kept alive urllib3 holds it; on a response that closes the
    connection (HTTP/1.0, `Connection: close`) http.client hands it to the response's reader.
    """
    sock = getattr(getattr(raw, "connection", None), "sock", None)
    if sock is None:
        reader = getattr(getattr(raw, "_fp", None), "fp", None)
        sock = getattr(getattr(reader, "raw", None), "_sock", None)
    return sock if isinstance(sock, socket.socket) else None


def redact_source(source: str) -> str:
    """The source as it may appear in tracking metadata and logs."""
    return redact_url(source) if source_kind(source) in ("http", "oss") else source


@dataclass(frozen=True)
class FetchedSource:
    """The local CSV a source resolved to, and tags that identify exactly what was read."""

    path: Path
    lineage: dict[str, str] = field(default_factory=dict)


def fetch_source(
    source: str,
    into: Path,
    *,
    demo_rows: int,
    demo_seed: int,
    timeout_s: float,
    limits: SourceLimits | None = None,
) -> FetchedSource:
    """Resolve any supported source to a local CSV file, downloads bounded by `limits`."""
    limits = SourceLimits() if limits is None else limits
    kind = source_kind(source)
    if kind == "demo":
        from steps.ingest.demo_data import write_demo_csv

        if demo_rows < 1:
            raise ConfigurationError(f"data.demo_rows must be at least 1, got {demo_rows}")
        return FetchedSource(write_demo_csv(into / "demo_listings.csv", demo_rows, demo_seed))
    if kind == "file":
        return FetchedSource(local_path(source))
    if kind == "oss":
        from steps.ingest.oss_source import download_oss

        downloaded = download_oss(source, into, timeout_s, limits=limits)
        return FetchedSource(downloaded.path, downloaded.lineage())
    return FetchedSource(download_http(source, into, timeout_s, limits))
