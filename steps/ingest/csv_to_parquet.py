"""Stream a listings CSV (optionally gzip-compressed) into a typed Parquet file.

The file is read and written block by block so a source larger than memory converts too, and the
output appears under its final name only once it is complete. Every way a source can fail to be a
listings file is reported as a SourceError that names the problem and the fix. The bytes the
reader pulls are counted as they stream (`source_limits.BoundedReader`): a source past
data.max_source_mb of CSV, or a gzip file expanding more than data.max_compression_ratio, stops
at the next block, before it can fill the disk with Parquet or the memory with batches.

Speed: parsing and writing overlap. One thread parses CSV blocks into record batches (pyarrow
releases the GIL while it parses), the calling thread encodes and compresses fixed-size row groups,
and a third hashes the stored bytes; a bounded queue between the first two caps memory at a few
blocks. `newlines_in_values` is on because real listing names contain quoted line breaks.
"""

from __future__ import annotations

import csv
import hashlib
import io
import logging
import os
import queue
import re
import threading
import uuid
from collections.abc import Generator, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from steps.common.errors import ConfigurationError, SourceError
from steps.common.listing_columns import LISTING_ARROW_TYPES, LISTING_COLUMNS
from steps.ingest.source_limits import BoundedReader, SourceLimits

logger = logging.getLogger(__name__)

# Parquet codecs the pipeline accepts (data.compression); "none" writes uncompressed pages.
ALLOWED_COMPRESSIONS: tuple[str, ...] = ("zstd", "snappy", "gzip", "lz4", "brotli", "none")
GZIP_MAGIC = b"\x1f\x8b"
# Containers the reader does not decompress: named, rather than failing as "not UTF-8".
_UNSUPPORTED_COMPRESSIONS = ((b"BZh", "bzip2"), (b"\xfd7zXZ\x00", "xz"), (b"PK\x03\x04", "zip"))
_HASH_CHUNK = 1 << 20
_HEADER_PEEK = 1 << 16
_CSV_COLUMN = re.compile(r"In CSV column #(\d+)")
# Default CSV block: 4 MiB parses as fast as larger blocks and keeps the queue's batches small.
DEFAULT_BLOCK_SIZE = 4 << 20
# A row group holds the rows of this many blocks (fixed per file, set by the first block's rows).
_BLOCKS_PER_ROW_GROUP = 4
# Parsed batches waiting for the writer: bounds memory while letting the parser run ahead.
_QUEUE_DEPTH = 2
_POLL_S = 0.1


@dataclass(frozen=True)
class ConversionStats:
    """What was converted: logged and recorded so a run names exactly which input it used."""

    rows: int
    input_bytes: int
    input_sha256: str
    columns: list[str]


def convert_csv_to_parquet(
    src: Path,
    dst: Path,
    compression: str = "zstd",
    block_size: int = DEFAULT_BLOCK_SIZE,
    limits: SourceLimits | None = None,
    optional_columns: Sequence[str] = (),
) -> ConversionStats:
    """Convert `src` (CSV or gzip CSV) to Parquet at `dst` with the 16 contract columns and types.

    Extra source columns are dropped with a warning: the contract is the 16 listing columns.
    `limits` bounds the CSV bytes read and the gzip expansion (default: SourceLimits()).
    A column of `optional_columns` the source lacks is left out of the Parquet file rather than
    refused (listings to score need no price).
    """
    src, dst = Path(src), Path(dst)
    limits = SourceLimits() if limits is None else limits
    codec = _parquet_codec(compression)
    if block_size < 1:
        raise ConfigurationError(f"block_size must be a positive number of bytes, got {block_size}")
    if not src.is_file():
        raise SourceError(
            f"Source file {src} does not exist (or is not a file). "
            "Fix: point data.source at an existing listings CSV (.csv or .csv.gz), or use 'demo'."
        )
    input_bytes = src.stat().st_size
    if input_bytes == 0:
        raise SourceError(
            f"Source file {src} is empty (0 bytes). "
            "Fix: re-download or re-export the listings CSV; it needs a header and data rows."
        )
    gzipped = _is_gzip(src)
    if not gzipped:
        limits.check_size(f"Source file {src}", input_bytes)
    header = _read_header(src, gzipped)
    extra = _check_header(src, header, optional_columns)
    columns = [name for name in LISTING_COLUMNS if name in header or name not in optional_columns]
    if extra:
        logger.warning(
            "dropping %d column(s) of %s that are not in the listing contract: %s",
            len(extra),
            src,
            ", ".join(extra),
        )

    dst.parent.mkdir(parents=True, exist_ok=True)
    tmp = dst.with_name(f".{dst.name}.{uuid.uuid4().hex}.tmp")
    schema = pa.schema([pa.field(name, LISTING_ARROW_TYPES[name]) for name in columns])
    hasher = _Sha256Thread(src)
    hasher.start()
    rows = 0
    try:
        with (
            _bounded_stream(src, gzipped, limits) as stream,
            pq.ParquetWriter(tmp, schema, compression=codec) as writer,
        ):
            try:
                reader = _open_reader(stream, block_size, columns)
            except (pa.ArrowInvalid, OSError) as exc:
                raise _read_error(src, exc, header, rows_before=0, gzipped=gzipped) from exc
            batches = _parsed_batches(reader, src, header, gzipped)
            try:
                for table in _row_groups(batches, schema):
                    writer.write_table(table, row_group_size=table.num_rows)
                    rows += table.num_rows
            finally:
                batches.close()  # stops and joins the parser thread before the stream closes
        if rows == 0:
            raise SourceError(
                f"Source file {src} has a header but no data rows. "
                "Fix: check that the export or download finished; the file must contain listings."
            )
        os.replace(tmp, dst)
    except BaseException:
        hasher.cancel()
        raise
    finally:
        tmp.unlink(missing_ok=True)

    stats = ConversionStats(
        rows=rows,
        input_bytes=input_bytes,
        input_sha256=hasher.result(),
        columns=columns,
    )
    logger.info(
        "converted %s (%d bytes, sha256 %s) to %s: %d rows",
        src,
        input_bytes,
        stats.input_sha256,
        dst,
        rows,
    )
    return stats


class _Failed:
    """A read failure handed from the parser thread to the writer, with the rows before it."""

    def __init__(self, exc: BaseException, rows_before: int) -> None:
        self.exc = exc
        self.rows_before = rows_before


_END = object()


def _parsed_batches(
    reader: pacsv.CSVStreamingReader, src: Path, header: list[str], gzipped: bool
) -> Generator[pa.RecordBatch, None, None]:
    """Yield the reader's batches, parsed ahead in a thread of their own.

    A read failure is raised here as the same SourceError a serial read would raise. When the
    consumer stops early (its own failure), the parser thread is told to stop and is joined.
    """
    batches: queue.Queue[object] = queue.Queue(maxsize=_QUEUE_DEPTH)
    stop = threading.Event()

    def put(item: object) -> bool:
        while not stop.is_set():
            try:
                batches.put(item, timeout=_POLL_S)
                return True
            except queue.Full:
                continue
        return False

    def parse() -> None:
        rows = 0
        try:
            while not stop.is_set():
                try:
                    batch = reader.read_next_batch()
                except StopIteration:
                    break
                if batch.num_rows and not put(batch):
                    return
                rows += batch.num_rows
        except BaseException as exc:  # handed over and re-raised in the calling thread
            put(_Failed(exc, rows))
            return
        put(_END)

    parser = threading.Thread(target=parse, name="csv-parse", daemon=True)
    parser.start()
    try:
        while True:
            item = batches.get()
            if item is _END:
                return
            if isinstance(item, _Failed):
                exc = item.exc
                if isinstance(exc, pa.ArrowInvalid | OSError):
                    raise _read_error(
                        src, exc, header, rows_before=item.rows_before, gzipped=gzipped
                    ) from exc
                raise exc
            assert isinstance(item, pa.RecordBatch)
            yield item
    finally:
        stop.set()
        parser.join()


def _row_groups(batches: Iterator[pa.RecordBatch], schema: pa.Schema) -> Iterator[pa.Table]:
    """Regroup parsed batches into tables of a fixed row count (the last one may be shorter).

    The row count is that of the first few blocks, so row groups are large enough to compress
    well and small enough to keep memory flat whatever the file's size.
    """
    columns = list(schema.names)
    pending: list[pa.RecordBatch] = []
    pending_rows = 0
    group_rows = 0
    for batch in batches:
        if not group_rows:
            group_rows = max(1, batch.num_rows * _BLOCKS_PER_ROW_GROUP)
        pending.append(batch.select(columns).cast(schema))
        pending_rows += batch.num_rows
        while pending_rows >= group_rows:
            table = pa.Table.from_batches(pending, schema=schema)
            yield table.slice(0, group_rows)
            rest = table.slice(group_rows)
            pending = rest.to_batches()
            pending_rows = rest.num_rows
    if pending_rows:
        yield pa.Table.from_batches(pending, schema=schema)


class _Sha256Thread(threading.Thread):
    """Hash the stored bytes (compressed if gzip) while the conversion runs."""

    def __init__(self, path: Path) -> None:
        super().__init__(name="csv-sha256", daemon=True)
        self._path = path
        self._digest: str | None = None
        self._error: BaseException | None = None
        self._cancelled = threading.Event()

    def run(self) -> None:
        try:
            self._digest = _sha256(self._path, self._cancelled)
        except BaseException as exc:  # re-raised by result()
            self._error = exc

    def cancel(self) -> None:
        """Stop hashing (the conversion failed) and wait for the thread."""
        self._cancelled.set()
        self.join()

    def result(self) -> str:
        self.join()
        if self._error is not None:
            raise self._error
        assert self._digest is not None
        return self._digest


def _parquet_codec(compression: str) -> str | None:
    """Map the configured codec to pyarrow's; reject unknown names before any work is done."""
    name = str(compression).strip().lower()
    if name not in ALLOWED_COMPRESSIONS:
        raise ConfigurationError(
            f"data.compression={compression!r} is not a supported Parquet codec; "
            f"allowed values: {', '.join(ALLOWED_COMPRESSIONS)}"
        )
    return None if name == "none" else name


def _is_gzip(path: Path) -> bool:
    """Decide by content, not by name: a '.gz' that is not gzip, or the reverse, reads right."""
    with path.open("rb") as handle:
        magic = handle.read(6)
    for prefix, label in _UNSUPPORTED_COMPRESSIONS:
        if magic.startswith(prefix):
            raise SourceError(
                f"Source file {path} is {label}-compressed; the reader takes plain or gzip CSV "
                f"only. Fix: decompress it, or recompress it with gzip (e.g. `{label} -dc FILE | "
                "gzip > listings.csv.gz`; for zip: `unzip -p FILE | gzip > listings.csv.gz`)."
            )
    magic = magic[:2]
    if path.suffix.lower() == ".gz" and magic != GZIP_MAGIC:
        raise SourceError(
            f"Source file {path} ends in .gz but is not gzip-compressed (corrupt download?). "
            "Fix: download the file again, or rename it to .csv if it is plain text."
        )
    return magic == GZIP_MAGIC


def _open_stream(path: Path, gzipped: bool) -> pa.NativeFile:
    return pa.input_stream(str(path), compression="gzip" if gzipped else None)


@contextmanager
def _bounded_stream(path: Path, gzipped: bool, limits: SourceLimits) -> Iterator[pa.PythonFile]:
    """The CSV bytes of `path` for the reader, stopped at the size and compression-ratio limits."""
    stored = pa.OSFile(str(path), "rb")
    stream = pa.CompressedInputStream(stored, "gzip") if gzipped else stored
    bounded = BoundedReader(stream, f"Source file {path}", limits, stored if gzipped else None)
    try:
        yield pa.PythonFile(bounded, mode="r")
    finally:
        stream.close()
        stored.close()


def _gzip_error(path: Path, exc: BaseException) -> SourceError:
    return SourceError(
        f"Source file {path} is a truncated or corrupt gzip file ({exc}). "
        "Fix: download or compress the file again and check that the transfer completed."
    )


def _read_header(path: Path, gzipped: bool) -> list[str]:
    """Parse the header record from the first bytes, so a wrong file fails before any writing."""
    try:
        with _open_stream(path, gzipped) as stream:
            head = stream.read(_HEADER_PEEK)
    except OSError as exc:
        raise _gzip_error(path, exc) from exc
    filled = len(head) >= _HEADER_PEEK  # the header may go on past what was read
    if head.startswith(b"\xef\xbb\xbf"):
        head = head[3:]
    if not head.strip():
        raise SourceError(
            f"Source file {path} is empty (no header line). "
            "Fix: re-download or re-export the listings CSV; it needs a header and data rows."
        )
    # The header ends at the first line break (\n, \r\n, or a lone \r as old exports write).
    breaks = [index for index in (head.find(b"\n"), head.find(b"\r")) if index >= 0]
    line_end = min(breaks, default=-1)
    if line_end < 0 and filled:
        raise SourceError(
            f"Source file {path} has no line break in its first {_HEADER_PEEK:,} bytes: its "
            f"header line is longer than the {_HEADER_PEEK:,} bytes the reader takes for a "
            "header (a listings header is about 200), so it is not a listings CSV, or it has "
            "no line breaks. Fix: export the listings as CSV with one header line of column "
            "names and newline line endings."
        )
    header_bytes = head if line_end < 0 else head[:line_end]
    try:
        header_text = header_bytes.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise _non_utf8_error(path, "the header line") from exc
    # Names are compared exactly, as pyarrow selects columns by their exact header text.
    return next(csv.reader(io.StringIO(header_text.rstrip("\r"))), [])


def _check_header(path: Path, header: list[str], optional: Sequence[str] = ()) -> list[str]:
    """Raise for missing contract columns (but `optional` ones); return the extra ones (which
    are dropped)."""
    missing = [name for name in LISTING_COLUMNS if name not in header and name not in optional]
    if len(header) == 1 and missing:
        for delimiter, label in ((";", "';'"), ("\t", "a tab"), ("|", "'|'")):
            if delimiter in header[0]:
                raise SourceError(
                    f"Source file {path} has a single header column that contains {label}: it "
                    "looks delimited by "
                    f"{label}, not by commas. Fix: export the listings as comma-separated CSV."
                )
    if missing:
        raise SourceError(
            f"Source file {path} lacks required column(s): {', '.join(missing)}. "
            f"Fix: provide a listings CSV with all of: {', '.join(LISTING_COLUMNS)}."
        )
    duplicated = sorted({name for name in header if header.count(name) > 1})
    if duplicated:
        raise SourceError(
            f"Source file {path} repeats column(s) in its header: {', '.join(duplicated)}. "
            "Fix: export the listings with each column once."
        )
    return [name for name in header if name not in LISTING_ARROW_TYPES]


def _open_reader(
    stream: pa.NativeFile, block_size: int, columns: Sequence[str] = LISTING_COLUMNS
) -> pacsv.CSVStreamingReader:
    """Open pyarrow's streaming CSV reader with the contract's column types and order."""
    return pacsv.open_csv(
        stream,
        # Serial conversion inside the reader: the parallelism is parser vs writer, and threaded
        # conversion buffers more blocks (measured: more memory, no faster on two cores).
        read_options=pacsv.ReadOptions(block_size=block_size, use_threads=False),
        parse_options=pacsv.ParseOptions(newlines_in_values=True),
        convert_options=pacsv.ConvertOptions(
            column_types=LISTING_ARROW_TYPES,
            strings_can_be_null=True,
            include_columns=list(columns),
        ),
    )


def _non_utf8_error(path: Path, where: str) -> SourceError:
    return SourceError(
        f"Source file {path} is not valid UTF-8 (in {where}). "
        "Fix: re-export the listings as UTF-8 (e.g. `iconv -f latin1 -t utf-8`)."
    )


def _read_error(
    path: Path, exc: BaseException, header: list[str], *, rows_before: int, gzipped: bool
) -> SourceError:
    """Translate a pyarrow read failure into a message that names the column and the fix."""
    message = str(exc)
    column = _column_name(message, header)
    where = f"column '{column}'" if column else "a column"
    block = f"the block starting after data row {rows_before}"
    if "UTF8" in message:
        return _non_utf8_error(path, f"{where}, {block}")
    if "conversion error" in message:
        expected = LISTING_ARROW_TYPES.get(column or "")
        return SourceError(
            f"Source file {path}: values of {where} cannot be read as {expected or 'its type'} "
            f"in {block} ({message}). Fix: correct or remove the offending rows in the source."
        )
    if isinstance(exc, OSError) and gzipped:
        return _gzip_error(path, exc)
    if "CSV parse error" in message or "Expected" in message:
        return SourceError(
            f"Source file {path} is not well-formed CSV in {block} ({message}). "
            "Fix: check the quoting and the number of fields of those rows."
        )
    return SourceError(
        f"Source file {path} cannot be read as a listings CSV ({message}). "
        "Fix: provide a readable, comma-separated UTF-8 listings file."
    )


def _column_name(message: str, header: list[str]) -> str | None:
    """pyarrow names a column by its position in the file's header: map it back to the name."""
    match = _CSV_COLUMN.search(message)
    if not match:
        return None
    index = int(match.group(1))
    return header[index] if 0 <= index < len(header) else None


def _sha256(path: Path, stop: threading.Event | None = None) -> str:
    """Digest of the bytes as stored (compressed if gzip), read in chunks to bound memory."""
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(_HASH_CHUNK):
            digest.update(chunk)
            if stop is not None and stop.is_set():
                break
    return digest.hexdigest()
