"""Bounds on what one source may cost: bytes read, compression ratio, download time.

A listings source is untrusted input. Without bounds a 100 KB gzip file can expand to terabytes
(a "gzip bomb") and fill the disk or memory of the worker, and an HTTP server that sends one byte
every few seconds never trips a per-read timeout, so it holds the step for hours. The limits are
checked while the bytes stream, never after: the reader stops at the first block past a limit.
Each refusal is a SourceError (exit 4) that says what was measured and which setting to raise.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Protocol

from steps.common.errors import ConfigurationError, SourceError
from steps.ingest.schema import SourceSettings

_MB = 1 << 20
# The compression ratio is judged only once this much was decompressed: the first blocks of a
# small file say little (and the compressed side is read ahead), a bomb passes this in a blink.
RATIO_FLOOR_BYTES = 8 * _MB

# The schema's defaults (the data section's), for callers that read a source outside a step.
DEFAULT_MAX_SOURCE_MB = float(SourceSettings.model_fields["max_source_mb"].default)
DEFAULT_MAX_COMPRESSION_RATIO = float(SourceSettings.model_fields["max_compression_ratio"].default)
DEFAULT_DOWNLOAD_DEADLINE_S = float(SourceSettings.model_fields["download_deadline_s"].default)


@dataclass(frozen=True)
class SourceLimits:
    """The bounds of one get_data run (data.max_source_mb, data.max_compression_ratio, ...)."""

    max_source_mb: float = DEFAULT_MAX_SOURCE_MB
    max_compression_ratio: float = DEFAULT_MAX_COMPRESSION_RATIO
    download_deadline_s: float = DEFAULT_DOWNLOAD_DEADLINE_S

    def __post_init__(self) -> None:
        for name, value, low in (
            ("data.max_source_mb", self.max_source_mb, 0.0),
            ("data.max_compression_ratio", self.max_compression_ratio, 1.0),
            ("data.download_deadline_s", self.download_deadline_s, 0.0),
        ):
            if not value > low:
                raise ConfigurationError(f"{name} must be greater than {low:g}, got {value}")

    @property
    def max_bytes(self) -> int:
        return int(self.max_source_mb * _MB)

    def check_size(self, what: str, size: int) -> None:
        """Refuse a source whose size is known up front (a plain file, a Content-Length)."""
        if size > self.max_bytes:
            raise SourceError(
                f"{what} is {size:,} bytes ({size / _MB:,.1f} MB), more than data.max_source_mb="
                f"{self.max_source_mb:g}. Fix: raise data.max_source_mb if this file is really "
                "the listings, or point data.source at the right file."
            )

    def too_large(self, what: str, read: int) -> SourceError:
        return SourceError(
            f"{what} holds more than data.max_source_mb={self.max_source_mb:g} MB of data "
            f"(stopped after {read / _MB:,.1f} MB, nothing was written). Fix: raise "
            "data.max_source_mb if this file is really the listings, or point data.source at the "
            "right file."
        )

    def check_ratio(self, what: str, decompressed: int, compressed: int) -> None:
        """Refuse a compressed source that expands far more than any listings file does."""
        if decompressed < RATIO_FLOOR_BYTES:
            return
        ratio = decompressed / max(compressed, 1)
        if ratio > self.max_compression_ratio:
            raise SourceError(
                f"{what} expands at least {ratio:,.0f} times (read {compressed:,} compressed "
                f"bytes that decompress to {decompressed:,}), more than data.max_compression_ratio="
                f"{self.max_compression_ratio:g}: this looks like a decompression bomb, not a "
                "listings CSV (listings compress 3 to 10 times). Fix: check where the file came "
                "from; raise data.max_compression_ratio only if it is really the listings."
            )


class Deadline:
    """The overall time budget of one download, started when the download starts."""

    def __init__(self, seconds: float, what: str) -> None:
        self.seconds = seconds
        self.what = what
        self.started = time.monotonic()

    def elapsed(self) -> float:
        return time.monotonic() - self.started

    def remaining(self) -> float:
        return self.seconds - self.elapsed()

    def check(self, received: int) -> None:
        """Raise once the budget is spent, however steadily the bytes still trickle in."""
        if self.remaining() <= 0:
            raise self.error(received)

    def error(self, received: int) -> SourceError:
        elapsed = self.elapsed()
        rate = received / max(elapsed, 1e-9) / 1e3
        return SourceError(
            f"downloading {self.what} took {elapsed:,.1f} s and was stopped at "
            f"data.download_deadline_s={self.seconds:g} after {received:,} bytes "
            f"({rate:,.1f} kB/s); nothing was kept. Fix: raise data.download_deadline_s if the "
            "server is just slow, or copy the file somewhere faster and point data.source at it."
        )


class _Readable(Protocol):
    def read(self, nbytes: int | None = None, /) -> bytes: ...

    def tell(self) -> int: ...


class BoundedReader:
    """A read-only file whose reads stop at the decompressed-size and ratio limits.

    `stream` yields the CSV bytes (decompressed if `compressed` is given); `compressed` is the
    underlying file, whose position says how many stored bytes produced them. pyarrow's CSV
    reader pulls its blocks through `read`, so a limit is hit one block after it is crossed.
    """

    def __init__(
        self, stream: _Readable, what: str, limits: SourceLimits, compressed: _Readable | None
    ) -> None:
        self._stream = stream
        self._what = what
        self._limits = limits
        self._compressed = compressed
        self._read = 0
        self.closed = False

    def read(self, nbytes: int = -1) -> bytes:
        data = self._stream.read(None if nbytes is None or nbytes < 0 else nbytes)
        self._read += len(data)
        if self._read > self._limits.max_bytes:
            raise self._limits.too_large(self._what, self._read)
        if self._compressed is not None:
            self._limits.check_ratio(self._what, self._read, self._compressed.tell())
        return data

    def tell(self) -> int:
        return self._read

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return False

    def writable(self) -> bool:
        return False

    def close(self) -> None:
        self.closed = True
