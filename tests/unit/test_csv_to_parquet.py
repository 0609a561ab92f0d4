"""CSV -> Parquet conversion: types, streaming, gzip, and one clear SourceError per bad input."""

from __future__ import annotations

import gzip
import hashlib
import logging
from pathlib import Path

import pandas as pd
import pyarrow.parquet as pq
import pytest

from steps.common.errors import ConfigurationError, SourceError
from steps.common.listing_columns import LISTING_ARROW_TYPES, LISTING_COLUMNS
from steps.ingest.csv_to_parquet import ConversionStats, convert_csv_to_parquet
from steps.ingest.demo_data import generate_listings

HEADER = ",".join(LISTING_COLUMNS)
ROW = (
    '1,"Cozy, quiet ""loft""",10,Ann,Manhattan,Harlem,40.8,-73.94,Private room,80,2,3,'
    "2019-05-01,0.5,1,100"
)


def _write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8", newline="")
    return path


def _demo_csv(path: Path, n_rows: int = 60, frame: pd.DataFrame | None = None) -> Path:
    frame = generate_listings(n_rows, 11) if frame is None else frame
    frame.to_csv(path, index=False)
    return path


def _leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.endswith(".tmp"))


def test_converts_with_contract_types_and_stats(tmp_path: Path) -> None:
    src = _demo_csv(tmp_path / "in.csv")
    dst = tmp_path / "out" / "raw.parquet"
    stats = convert_csv_to_parquet(src, dst)
    assert isinstance(stats, ConversionStats)
    assert stats.rows == 60
    assert stats.input_bytes == src.stat().st_size
    assert stats.input_sha256 == hashlib.sha256(src.read_bytes()).hexdigest()
    assert stats.columns == list(LISTING_COLUMNS)
    schema = pq.read_schema(dst)
    assert schema.names == list(LISTING_COLUMNS)
    for name in LISTING_COLUMNS:
        assert schema.field(name).type == LISTING_ARROW_TYPES[name]
    assert _leftovers(dst.parent) == []


def test_values_survive_quotes_commas_and_line_breaks(tmp_path: Path) -> None:
    frame = generate_listings(40, 5)
    frame.loc[0, "name"] = 'Sunny "big" room, near park'
    frame.loc[1, "name"] = "Line one\nline two, with comma"
    frame.loc[2, "name"] = None
    src = _demo_csv(tmp_path / "in.csv", frame=frame)
    dst = tmp_path / "raw.parquet"
    convert_csv_to_parquet(src, dst)
    back = pd.read_parquet(dst)
    assert back.loc[0, "name"] == 'Sunny "big" room, near park'
    assert back.loc[1, "name"] == "Line one\nline two, with comma"
    assert pd.isna(back.loc[2, "name"])
    assert back["id"].tolist() == frame["id"].tolist()
    assert back["price"].tolist() == frame["price"].astype(float).tolist()
    assert back["last_review"].isna().tolist() == frame["last_review"].isna().tolist()
    assert back["reviews_per_month"].isna().tolist() == frame["reviews_per_month"].isna().tolist()


def test_streams_many_small_blocks(tmp_path: Path) -> None:
    src = _demo_csv(tmp_path / "in.csv", n_rows=2_000)
    dst = tmp_path / "raw.parquet"
    stats = convert_csv_to_parquet(src, dst, block_size=8 << 10)
    assert stats.rows == 2_000
    assert pq.ParquetFile(dst).metadata.num_row_groups > 1
    pd.testing.assert_series_equal(
        pd.read_parquet(dst)["name"], pd.read_csv(src)["name"], check_dtype=False
    )


def test_reads_gzip_and_hashes_the_stored_bytes(tmp_path: Path) -> None:
    plain = _demo_csv(tmp_path / "in.csv")
    src = tmp_path / "in.csv.gz"
    src.write_bytes(gzip.compress(plain.read_bytes()))
    stats = convert_csv_to_parquet(src, tmp_path / "raw.parquet")
    assert stats.rows == 60
    assert stats.input_sha256 == hashlib.sha256(src.read_bytes()).hexdigest()
    assert stats.input_bytes == src.stat().st_size


def test_gzip_detected_by_content_without_gz_suffix(tmp_path: Path) -> None:
    plain = _demo_csv(tmp_path / "in.csv")
    src = tmp_path / "download.bin"
    src.write_bytes(gzip.compress(plain.read_bytes()))
    assert convert_csv_to_parquet(src, tmp_path / "raw.parquet").rows == 60


def test_extra_columns_dropped_with_warning_and_order_restored(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    frame = generate_listings(30, 2)
    shuffled = frame[list(reversed(LISTING_COLUMNS))].copy()
    shuffled.insert(3, "license", "L-1")
    shuffled["scraped_at"] = "2019-07-08"
    src = _demo_csv(tmp_path / "in.csv", frame=shuffled)
    dst = tmp_path / "raw.parquet"
    with caplog.at_level(logging.WARNING, logger="steps.ingest.csv_to_parquet"):
        stats = convert_csv_to_parquet(src, dst)
    assert stats.columns == list(LISTING_COLUMNS)
    assert pq.read_schema(dst).names == list(LISTING_COLUMNS)
    assert "license" in caplog.text
    assert "scraped_at" in caplog.text
    assert pd.read_parquet(dst)["id"].tolist() == frame["id"].tolist()


def test_utf8_bom_is_accepted(tmp_path: Path) -> None:
    src = tmp_path / "bom.csv"
    src.write_bytes(b"\xef\xbb\xbf" + f"{HEADER}\n{ROW}\n".encode())
    assert convert_csv_to_parquet(src, tmp_path / "raw.parquet").rows == 1


def test_crlf_line_endings(tmp_path: Path) -> None:
    src = _write(tmp_path / "in.csv", f"{HEADER}\r\n{ROW}\r\n{ROW.replace('1,', '2,', 1)}\r\n")
    dst = tmp_path / "raw.parquet"
    assert convert_csv_to_parquet(src, dst).rows == 2
    back = pd.read_parquet(dst)
    assert back["availability_365"].tolist() == [100.0, 100.0]
    assert back["name"].tolist() == ['Cozy, quiet "loft"'] * 2


def test_header_names_must_match_exactly(tmp_path: Path) -> None:
    src = _write(tmp_path / "in.csv", HEADER.replace("price", " price") + "\n" + ROW + "\n")
    _assert_source_error(src, tmp_path / "raw.parquet", "lacks required column(s): price")


@pytest.mark.parametrize("codec", ["none", "snappy", "gzip", "zstd", "NONE"])
def test_supported_codecs(tmp_path: Path, codec: str) -> None:
    src = _write(tmp_path / "in.csv", f"{HEADER}\n{ROW}\n")
    dst = tmp_path / "raw.parquet"
    convert_csv_to_parquet(src, dst, compression=codec)
    expected = "UNCOMPRESSED" if codec.lower() == "none" else codec.upper()
    assert pq.ParquetFile(dst).metadata.row_group(0).column(0).compression == expected


def test_unknown_codec_is_configuration_error(tmp_path: Path) -> None:
    src = _write(tmp_path / "in.csv", f"{HEADER}\n{ROW}\n")
    with pytest.raises(ConfigurationError, match=r"allowed values: zstd, snappy, gzip"):
        convert_csv_to_parquet(src, tmp_path / "raw.parquet", compression="zip")


# --- bad sources: each a SourceError naming the problem and the fix, and no output file ---


def _assert_source_error(src: Path, dst: Path, *patterns: str) -> str:
    with pytest.raises(SourceError) as info:
        convert_csv_to_parquet(src, dst)
    message = str(info.value)
    for pattern in patterns:
        assert pattern in message, message
    assert "Fix:" in message
    assert not dst.exists()
    assert _leftovers(dst.parent) == []
    return message


def test_missing_file(tmp_path: Path) -> None:
    _assert_source_error(tmp_path / "nope.csv", tmp_path / "raw.parquet", "does not exist")


def test_directory_is_not_a_file(tmp_path: Path) -> None:
    _assert_source_error(tmp_path, tmp_path / "raw.parquet", "does not exist")


def test_empty_file(tmp_path: Path) -> None:
    src = _write(tmp_path / "in.csv", "")
    _assert_source_error(src, tmp_path / "raw.parquet", "is empty")


def test_blank_file(tmp_path: Path) -> None:
    src = _write(tmp_path / "in.csv", "\n\n  \n")
    _assert_source_error(src, tmp_path / "raw.parquet", "is empty")


def test_empty_gzip(tmp_path: Path) -> None:
    src = tmp_path / "in.csv.gz"
    src.write_bytes(gzip.compress(b""))
    _assert_source_error(src, tmp_path / "raw.parquet", "is empty")


def test_header_only(tmp_path: Path) -> None:
    src = _write(tmp_path / "in.csv", HEADER + "\n")
    _assert_source_error(src, tmp_path / "raw.parquet", "no data rows")


def test_missing_columns_are_listed(tmp_path: Path) -> None:
    frame = generate_listings(10, 1).drop(columns=["price", "room_type"])
    src = _demo_csv(tmp_path / "in.csv", frame=frame)
    _assert_source_error(
        src, tmp_path / "raw.parquet", "lacks required column(s): room_type, price"
    )


def test_an_optional_column_the_source_lacks_is_left_out(tmp_path: Path) -> None:
    """Listings to score come without a price: the file keeps the other 15 columns."""
    frame = generate_listings(10, 1).drop(columns=["price"])
    src = _demo_csv(tmp_path / "in.csv", frame=frame)
    dst = tmp_path / "raw.parquet"
    stats = convert_csv_to_parquet(src, dst, optional_columns=("price",))
    expected = [name for name in LISTING_COLUMNS if name != "price"]
    assert stats.columns == expected and pq.read_schema(dst).names == expected
    assert stats.rows == 10


def test_an_optional_column_the_source_has_is_kept(tmp_path: Path) -> None:
    src = _demo_csv(tmp_path / "in.csv")
    stats = convert_csv_to_parquet(src, tmp_path / "raw.parquet", optional_columns=("price",))
    assert stats.columns == list(LISTING_COLUMNS)


def test_only_the_optional_columns_may_be_missing(tmp_path: Path) -> None:
    frame = generate_listings(10, 1).drop(columns=["price", "room_type"])
    src = _demo_csv(tmp_path / "in.csv", frame=frame)
    with pytest.raises(SourceError, match=r"lacks required column\(s\): room_type\. "):
        convert_csv_to_parquet(src, tmp_path / "raw.parquet", optional_columns=("price",))


@pytest.mark.parametrize(("separator", "label"), [(";", "';'"), ("\t", "a tab")])
def test_other_delimiter(tmp_path: Path, separator: str, label: str) -> None:
    src = tmp_path / "in.csv"
    generate_listings(10, 1).to_csv(src, index=False, sep=separator)
    _assert_source_error(src, tmp_path / "raw.parquet", f"looks delimited by {label}")


def test_non_utf8_in_rows(tmp_path: Path) -> None:
    src = tmp_path / "in.csv"
    src.write_bytes(
        f"{HEADER}\n".encode() + ROW.replace("Ann", "J\xf6rg").encode("latin-1") + b"\n"
    )
    _assert_source_error(src, tmp_path / "raw.parquet", "not valid UTF-8", "column 'host_name'")


def test_non_utf8_in_header(tmp_path: Path) -> None:
    src = tmp_path / "in.csv"
    src.write_bytes(HEADER.replace("name", "n\xe4me", 1).encode("latin-1") + b"\n")
    _assert_source_error(src, tmp_path / "raw.parquet", "not valid UTF-8", "header")


def test_truncated_gzip(tmp_path: Path) -> None:
    plain = _demo_csv(tmp_path / "in.csv", n_rows=3_000)
    data = gzip.compress(plain.read_bytes())
    src = tmp_path / "in.csv.gz"
    src.write_bytes(data[: len(data) // 2])
    _assert_source_error(src, tmp_path / "raw.parquet", "truncated or corrupt gzip")


def test_corrupt_gzip_body(tmp_path: Path) -> None:
    plain = _demo_csv(tmp_path / "in.csv", n_rows=500)
    data = bytearray(gzip.compress(plain.read_bytes()))
    data[200:260] = b"\x00" * 60
    src = tmp_path / "in.csv.gz"
    src.write_bytes(bytes(data))
    _assert_source_error(src, tmp_path / "raw.parquet", "corrupt gzip")


def test_gz_suffix_but_not_gzip(tmp_path: Path) -> None:
    src = _write(tmp_path / "in.csv.gz", f"{HEADER}\n{ROW}\n")
    _assert_source_error(src, tmp_path / "raw.parquet", "not gzip-compressed")


def test_type_conversion_failure_names_the_column(tmp_path: Path) -> None:
    bad = ROW.replace(",80,", ",eighty,")
    src = _write(tmp_path / "in.csv", f"license,{HEADER}\nx,{ROW}\nx,{bad}\n")
    message = _assert_source_error(src, tmp_path / "raw.parquet", "column 'price'", "eighty")
    assert "double" in message


def test_conversion_failure_after_first_block(tmp_path: Path) -> None:
    frame = generate_listings(1_000, 3)
    frame["minimum_nights"] = frame["minimum_nights"].astype(object)
    frame.loc[990, "minimum_nights"] = "two"
    src = _demo_csv(tmp_path / "in.csv", frame=frame)
    dst = tmp_path / "raw.parquet"
    with pytest.raises(SourceError, match="column 'minimum_nights'"):
        convert_csv_to_parquet(src, dst, block_size=8 << 10)
    assert not dst.exists()
    assert _leftovers(tmp_path) == []


def test_ragged_row(tmp_path: Path) -> None:
    src = _write(tmp_path / "in.csv", f"{HEADER}\n{ROW}\n1,2,3\n")
    _assert_source_error(src, tmp_path / "raw.parquet", "not well-formed CSV")


def test_failure_keeps_previous_output(tmp_path: Path) -> None:
    dst = tmp_path / "raw.parquet"
    good = _write(tmp_path / "good.csv", f"{HEADER}\n{ROW}\n")
    convert_csv_to_parquet(good, dst)
    before = dst.read_bytes()
    bad = _write(tmp_path / "bad.csv", f"{HEADER}\n{ROW.replace(',80,', ',x,')}\n")
    with pytest.raises(SourceError):
        convert_csv_to_parquet(bad, dst)
    assert dst.read_bytes() == before
    assert _leftovers(tmp_path) == []
