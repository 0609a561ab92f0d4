"""Bounded input: each limit on a source refuses the input the way production would meet it.

A real gzip bomb, a real loopback HTTP server that drips or never stops, a header longer than the
reader's peek, a directory where a file belongs. Each refusal must be a SourceError (exit 4) whose
message names the problem and the setting or fix, and must leave no output and no partial file.
"""

from __future__ import annotations

import functools
import threading
import time
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from fault_injection.http_source import Behaviour, http_source
from steps.common.errors import ConfigurationError, SourceError
from steps.common.listing_columns import LISTING_COLUMNS
from steps.common.params_cli import parse_params
from steps.contract import EXIT_BAD_SOURCE
from steps.ingest.csv_to_parquet import convert_csv_to_parquet
from steps.ingest.demo_data import generate_listings
from steps.ingest.get_data import build_parser, source_limits
from steps.ingest.oss_source import download_oss
from steps.ingest.schema import GetDataParams
from steps.ingest.source_limits import RATIO_FLOOR_BYTES, SourceLimits
from steps.ingest.sources import download_http, fetch_source
from tests.oss_server import OssServer

ROW = (
    b'1,"Cozy loft",10,Ann,Manhattan,Harlem,40.8,-73.94,Private room,80,2,3,2019-05-01,0.5,1,100\n'
)


def _gzip_bomb(path: Path, expanded_bytes: int) -> Path:
    """A valid listings CSV (header, rows) that is one row repeated: ~1000x smaller as gzip."""
    compressor = zlib.compressobj(9, zlib.DEFLATED, 31)  # wbits 31: a gzip container
    header = ",".join(LISTING_COLUMNS).encode() + b"\n"
    block = ROW * (1 << 20 // len(ROW))
    with path.open("wb") as sink:
        sink.write(compressor.compress(header))
        for _ in range(expanded_bytes // len(block)):
            sink.write(compressor.compress(block))
        sink.write(compressor.flush())
    return path


def _demo_csv(path: Path, rows: int) -> Path:
    generate_listings(rows, 3).to_csv(path, index=False)
    return path


def _nothing_left(folder: Path) -> list[str]:
    """Outputs, temporary Parquet and partial downloads a refusal must not leave behind."""
    return sorted(p.name for p in folder.rglob("*") if p.suffix in (".parquet", ".tmp", ".part"))


def _refused(excinfo: pytest.ExceptionInfo[SourceError]) -> str:
    assert excinfo.value.exit_code == EXIT_BAD_SOURCE == 4
    return str(excinfo.value)


# --- decompressed size and compression ratio --------------------------------------------------


def test_gzip_bomb_is_refused_while_streaming(tmp_path: Path) -> None:
    bomb = _gzip_bomb(tmp_path / "listings.csv.gz", 24 << 20)
    assert bomb.stat().st_size < 100_000  # small on disk, 24 MiB of CSV inside
    with pytest.raises(SourceError) as excinfo:
        convert_csv_to_parquet(bomb, tmp_path / "out" / "raw.parquet")
    message = _refused(excinfo)
    assert "looks like a decompression bomb" in message
    assert "data.max_compression_ratio=100" in message
    # Stopped while streaming: a few blocks past the floor, not the whole 24 MiB.
    decompressed = int(message.split("decompress to ")[1].split(")")[0].replace(",", ""))
    assert RATIO_FLOOR_BYTES <= decompressed < 20 << 20
    assert _nothing_left(tmp_path) == []


def test_gzip_past_the_size_limit_is_refused(tmp_path: Path) -> None:
    import gzip

    csv = _demo_csv(tmp_path / "listings.csv", 3000)  # ~420 KB of CSV, ~4x as gzip
    packed = tmp_path / "listings.csv.gz"
    packed.write_bytes(gzip.compress(csv.read_bytes()))
    csv.unlink()
    limits = SourceLimits(max_source_mb=0.1)
    with pytest.raises(SourceError) as excinfo:
        convert_csv_to_parquet(packed, tmp_path / "raw.parquet", block_size=32 << 10, limits=limits)
    message = _refused(excinfo)
    assert "holds more than data.max_source_mb=0.1 MB" in message
    assert "Fix: raise data.max_source_mb" in message
    assert _nothing_left(tmp_path) == []


def test_plain_file_past_the_size_limit_is_refused_before_reading(tmp_path: Path) -> None:
    csv = _demo_csv(tmp_path / "listings.csv", 1000)
    with pytest.raises(SourceError) as excinfo:
        convert_csv_to_parquet(csv, tmp_path / "raw.parquet", limits=SourceLimits(0.05))
    message = _refused(excinfo)
    assert f"is {csv.stat().st_size:,} bytes" in message
    assert "more than data.max_source_mb=0.05" in message
    assert _nothing_left(tmp_path) == []


def test_ordinary_gzip_passes_the_default_limits(tmp_path: Path) -> None:
    import gzip

    frame = generate_listings(2000, 8)
    packed = tmp_path / "listings.csv.gz"
    packed.write_bytes(gzip.compress(frame.to_csv(index=False).encode()))
    assert convert_csv_to_parquet(packed, tmp_path / "raw.parquet").rows == 2000


def test_limits_out_of_bounds_are_configuration_errors() -> None:
    with pytest.raises(ConfigurationError, match=r"data\.max_compression_ratio must be greater"):
        SourceLimits(max_compression_ratio=1)
    with pytest.raises(ConfigurationError, match=r"data\.download_deadline_s must be greater"):
        SourceLimits(download_deadline_s=0)


def test_entry_point_parameters_reach_the_limits() -> None:
    args = build_parser().parse_args(
        [
            *("--source", "demo", "--max_source_mb", "7"),
            *("--max_compression_ratio", "9", "--download_deadline_s", "11"),
        ]
    )
    assert source_limits(parse_params(GetDataParams, args)) == SourceLimits(7, 9, 11)


def test_limit_defaults_are_the_schema_defaults() -> None:
    defaults = GetDataParams()
    assert SourceLimits() == SourceLimits(
        defaults.max_source_mb, defaults.max_compression_ratio, defaults.download_deadline_s
    )


def test_out_of_bounds_parameter_is_a_configuration_error_naming_the_flag() -> None:
    args = build_parser().parse_args(["--source", "demo", "--max_compression_ratio", "1"])
    with pytest.raises(ConfigurationError, match=r"--max_compression_ratio: .*greater than 1"):
        parse_params(GetDataParams, args)


# --- header longer than the reader's peek ----------------------------------------------------


def test_header_longer_than_the_peek_is_an_error_not_cut(tmp_path: Path) -> None:
    # All 16 contract columns first: cut at 64 KiB, the header would have looked fine.
    header = ",".join(LISTING_COLUMNS) + "".join(f",extra_{i}" for i in range(8000))
    src = tmp_path / "wide.csv"
    src.write_text(header + "\n" + ROW.decode(), encoding="utf-8")
    with pytest.raises(SourceError) as excinfo:
        convert_csv_to_parquet(src, tmp_path / "raw.parquet")
    message = _refused(excinfo)
    assert "has no line break in its first 65,536 bytes" in message
    assert "header line is longer than" in message
    assert _nothing_left(tmp_path) == []


def test_lone_carriage_returns_still_end_the_header(tmp_path: Path) -> None:
    frame = generate_listings(600, 2)  # > 64 KiB, so the header's end is found by its \r
    frame["name"] = frame["name"].str.replace("\n", " ")  # unquoted with \r as line end
    src = tmp_path / "mac.csv"
    src.write_bytes(frame.to_csv(index=False, lineterminator="\r").encode())
    assert src.stat().st_size > 1 << 16
    assert convert_csv_to_parquet(src, tmp_path / "raw.parquet").rows == 600


# --- a directory where a file belongs --------------------------------------------------------


def _fetch(source: str, into: Path) -> None:
    fetch_source(source, into, demo_rows=1, demo_seed=1, timeout_s=5)


@pytest.mark.parametrize("as_uri", [False, True], ids=["path", "file-uri"])
def test_local_directory_is_a_source_error(tmp_path: Path, as_uri: bool) -> None:
    folder = tmp_path / "exports"
    folder.mkdir()
    source = folder.as_uri() + "/" if as_uri else str(folder) + "/"
    with pytest.raises(SourceError) as excinfo:
        _fetch(source, tmp_path)
    message = _refused(excinfo)
    assert "is a directory, not a file" in message
    assert "listings.csv" in message


class _QuietFileHandler(SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:  # keep test output quiet
        return


@contextmanager
def _directory_server(root: Path) -> Iterator[str]:
    """Python's own file server, which answers a folder's URL with an HTML index."""
    handler = functools.partial(_QuietFileHandler, directory=str(root))
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def test_http_directory_index_is_a_source_error(tmp_path: Path) -> None:
    served = tmp_path / "served" / "nyc"
    served.mkdir(parents=True)
    _demo_csv(served / "listings.csv", 20)
    into = tmp_path / "work"
    into.mkdir()
    with _directory_server(tmp_path / "served") as base, pytest.raises(SourceError) as excinfo:
        _fetch(f"{base}/nyc/", into)
    message = _refused(excinfo)
    assert "names a directory" in message
    assert "put the file's name at the end of data.source" in message
    assert list(into.iterdir()) == []


# --- HTTP(S): overall deadline and size ------------------------------------------------------


def test_dripping_server_is_stopped_at_the_deadline(tmp_path: Path) -> None:
    body = b"x" * 100_000  # at one byte per 10 ms: ~17 minutes without a deadline
    limits = SourceLimits(download_deadline_s=0.5)
    with http_source(Behaviour(body=body, drip_s=0.01)) as url:
        started = time.monotonic()
        with pytest.raises(SourceError) as excinfo:
            download_http(url, tmp_path, timeout_s=30, limits=limits)
        took = time.monotonic() - started
    message = _refused(excinfo)
    assert "was stopped at data.download_deadline_s=0.5" in message
    assert "Fix: raise data.download_deadline_s" in message
    assert " took " in message
    assert took < 10  # far below the 30 s read timeout and the 17 minutes of the drip
    assert list(tmp_path.iterdir()) == []


def test_silent_server_is_stopped_at_the_deadline_not_a_read_timeout_later(
    tmp_path: Path,
) -> None:
    # Headers, one byte, then silence: only the deadline (not the 30 s read timeout) ends it.
    with http_source(Behaviour(body=b"id" + b" " * 10, drip_s=60)) as url:
        started = time.monotonic()
        with pytest.raises(SourceError) as excinfo:
            download_http(url, tmp_path, timeout_s=30, limits=SourceLimits(download_deadline_s=0.5))
        took = time.monotonic() - started
    message = _refused(excinfo)
    assert "was stopped at data.download_deadline_s=0.5 after 1 bytes" in message
    assert took < 10
    assert list(tmp_path.iterdir()) == []


def test_endless_body_is_cut_at_the_size_limit(tmp_path: Path) -> None:
    behaviour = Behaviour(body=b"y" * 300_000, send_length=False)
    with http_source(behaviour) as url, pytest.raises(SourceError) as excinfo:
        download_http(url, tmp_path, timeout_s=5, limits=SourceLimits(max_source_mb=0.1))
    assert "holds more than data.max_source_mb=0.1 MB" in _refused(excinfo)
    assert list(tmp_path.iterdir()) == []


def test_announced_length_past_the_limit_is_refused_before_the_body(tmp_path: Path) -> None:
    with http_source(Behaviour(body=b"z" * 300_000)) as url, pytest.raises(SourceError) as excinfo:
        download_http(url, tmp_path, timeout_s=5, limits=SourceLimits(max_source_mb=0.1))
    assert "is 300,000 bytes" in _refused(excinfo)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("send_length", [True, False], ids=["content-length", "until-close"])
def test_download_within_the_limits_completes(tmp_path: Path, send_length: bool) -> None:
    body = b"id,name\n" + b"1,a\n" * 5000
    with http_source(Behaviour(body=body, send_length=send_length)) as url:
        target = download_http(url, tmp_path, timeout_s=5, limits=SourceLimits(1, 100, 30))
    assert target.read_bytes() == body


# --- oss:// ----------------------------------------------------------------------------------


@pytest.fixture
def oss(monkeypatch: pytest.MonkeyPatch) -> Iterator[OssServer]:
    """The loopback OSS server, and OSS_* pointing the client at it."""
    with OssServer("testkeyid0001", "testsecret0001", buckets=("listings",)) as server:
        monkeypatch.setenv("OSS_ACCESS_KEY_ID", "testkeyid0001")
        monkeypatch.setenv("OSS_ACCESS_KEY_SECRET", "testsecret0001")
        monkeypatch.setenv("OSS_ENDPOINT", server.endpoint)
        monkeypatch.delenv("OSS_SECURITY_TOKEN", raising=False)
        yield server


def test_oss_object_past_the_size_limit_is_refused_before_download(
    oss: OssServer, tmp_path: Path
) -> None:
    oss.put("listings", "nyc/2019/listings.csv", b"x" * 300_000)
    with pytest.raises(SourceError) as excinfo:
        download_oss("oss://listings/nyc/2019/", tmp_path, 5, limits=SourceLimits(0.1))
    message = _refused(excinfo)
    assert "oss://listings/nyc/2019/listings.csv is 300,000 bytes" in message
    assert "data.max_source_mb=0.1" in message
    assert oss.object_requests("GET") == []  # refused from the listing: not one byte fetched
    assert list(tmp_path.iterdir()) == []


def test_oss_prefix_naming_a_folder_of_files_is_a_source_error(
    oss: OssServer, tmp_path: Path
) -> None:
    oss.put("listings", "nyc/2019/listings.csv", b"id\n1\n")
    oss.put("listings", "nyc/2020/listings.csv", b"id\n2\n")
    with pytest.raises(SourceError) as excinfo:
        download_oss("oss://listings/nyc/", tmp_path, 5)
    assert "names 2 data objects, not one" in _refused(excinfo)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("kind", ["bzip2", "xz", "zip"])
def test_other_compressions_are_named_not_read_as_text(tmp_path: Path, kind: str) -> None:
    import bz2
    import lzma
    import zipfile

    raw = _demo_csv(tmp_path / "listings.csv", 30).read_bytes()
    src = tmp_path / f"listings.{kind}"
    if kind == "zip":
        with zipfile.ZipFile(src, "w") as archive:
            archive.writestr("listings.csv", raw)
    else:
        src.write_bytes(bz2.compress(raw) if kind == "bzip2" else lzma.compress(raw))
    with pytest.raises(SourceError) as excinfo:
        convert_csv_to_parquet(src, tmp_path / "raw.parquet")
    message = _refused(excinfo)
    assert f"is {kind}-compressed; the reader takes plain or gzip CSV only" in message
    assert _nothing_left(tmp_path) == []
