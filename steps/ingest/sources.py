"""Where the listings come from: the built-in demo generator, a local file, HTTP(S) or OSS.

Each source resolves to a local CSV file (plain or gzip) without holding it in memory; the
conversion to Parquet happens afterwards, the same way for every source.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import unquote, urlparse

from steps.common.errors import ConfigurationError, SourceError, TransientError
from steps.common.url_secrets import redact_url

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
    if not path.is_file():
        raise SourceError(f"data.source {str(path)!r} is not a file: point it at the listings CSV")
    return path


def download_http(url: str, into: Path, timeout_s: float) -> Path:
    """Stream a URL to a file under `into`; 4xx and HTML pages are permanent, the rest transient."""
    import requests

    name = Path(urlparse(url).path).name or "listings.csv"
    target = into / name
    partial = target.with_suffix(target.suffix + ".part")
    try:
        with requests.get(url, stream=True, timeout=timeout_s) as response:
            status = response.status_code
            if status >= 500 or status == 429:
                raise TransientError(f"{_safe(url)} answered HTTP {status}; retrying may help")
            if status >= 400:
                raise SourceError(
                    f"{_safe(url)} answered HTTP {status}: check that data.source names an "
                    "existing, readable CSV file"
                )
            content_type = response.headers.get("Content-Type", "")
            if "html" in content_type.lower():
                raise SourceError(
                    f"{_safe(url)} returned an HTML page ({content_type}), not a CSV file: "
                    "link to the raw file (e.g. the 'raw' or 'download' URL)"
                )
            with partial.open("wb") as sink:
                for chunk in response.iter_content(chunk_size=_CHUNK):
                    sink.write(chunk)
    except (requests.ConnectionError, requests.Timeout) as error:
        partial.unlink(missing_ok=True)
        raise TransientError(f"downloading {_safe(url)} failed: {type(error).__name__}") from error
    except Exception:
        partial.unlink(missing_ok=True)
        raise
    partial.replace(target)
    logger.info("downloaded %s (%d bytes)", _safe(url), target.stat().st_size)
    return target


def _safe(url: str) -> str:
    """A URL fit for messages and logs: no credentials, no query string (signed URLs carry keys)."""
    return redact_url(url)


def redact_source(source: str) -> str:
    """The source as it may appear in tracking metadata and logs."""
    return _safe(source) if source_kind(source) in ("http", "oss") else source


@dataclass(frozen=True)
class FetchedSource:
    """The local CSV a source resolved to, and tags that identify exactly what was read."""

    path: Path
    lineage: dict[str, str] = field(default_factory=dict)


def fetch_source(
    source: str, into: Path, *, demo_rows: int, demo_seed: int, timeout_s: float
) -> FetchedSource:
    """Resolve any supported source to a local CSV file."""
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

        downloaded = download_oss(source, into, timeout_s)
        return FetchedSource(downloaded.path, downloaded.lineage())
    return FetchedSource(download_http(source, into, timeout_s))
