"""The corpus of bad inputs a user can hand the pipeline, each with the error they must see.

Every case builds its input in a directory and returns the pipeline overrides that feed it in,
so the same corpus drives the end-to-end test (tests/e2e/test_bad_inputs.py). Inputs are built
from the demo generator at test time: small, readable and never a copy of real data.
"""

from __future__ import annotations

import gzip
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from steps.ingest.demo_data import generate_listings

ROWS = 1200


def _listings(rows: int = ROWS) -> pd.DataFrame:
    return generate_listings(rows, seed=21)


def _write(frame: pd.DataFrame, path: Path, **options: object) -> Path:
    frame.to_csv(path, index=False, **options)
    return path


@dataclass(frozen=True)
class BadInput:
    name: str
    # Writes the input under the directory and returns the Hydra overrides that use it.
    build: Callable[[Path], list[str]]
    # A piece of the message the user must see (case-sensitive).
    message: str
    # The exit code: 2 for a refused configuration, 1 for a failed pipeline.
    exit_code: int = 1


def _source(path: Path) -> list[str]:
    return [f"data.source={path}"]


def empty(d: Path) -> list[str]:
    (d / "empty.csv").write_bytes(b"")
    return _source(d / "empty.csv")


def header_only(d: Path) -> list[str]:
    return _source(_write(_listings().head(0), d / "header_only.csv"))


def missing_column(d: Path) -> list[str]:
    return _source(_write(_listings().drop(columns=["price"]), d / "no_price.csv"))


def wrong_delimiter(d: Path) -> list[str]:
    return _source(_write(_listings(), d / "semicolons.csv", sep=";"))


def not_utf8(d: Path) -> list[str]:
    frame = _listings()
    frame.loc[3, "name"] = "Caf\u00e9 near the p\u00e2rk"
    return _source(_write(frame, d / "latin1.csv", encoding="latin-1"))


def truncated_gzip(d: Path) -> list[str]:
    data = gzip.compress(_listings().to_csv(index=False).encode())
    (d / "cut.csv.gz").write_bytes(data[: len(data) // 2])
    return _source(d / "cut.csv.gz")


def prices_missing(d: Path) -> list[str]:
    return _source(_write(_listings().assign(price=None), d / "no_prices.csv"))


def prices_negative(d: Path) -> list[str]:
    frame = _listings()
    return _source(_write(frame.assign(price=-frame["price"]), d / "negative.csv"))


def outside_nyc(d: Path) -> list[str]:
    frame = _listings()  # the listings moved to Boston
    return _source(_write(frame.assign(latitude=frame["latitude"] + 1.6), d / "boston.csv"))


def unknown_borough(d: Path) -> list[str]:
    frame = _listings()
    frame.loc[frame.index[::3], "neighbourhood_group"] = "Atlantis"
    return _source(_write(frame, d / "atlantis.csv"))


def duplicated_ids(d: Path) -> list[str]:
    return _source(_write(_listings().assign(id=7), d / "one_id.csv"))


def different_dataset(d: Path) -> list[str]:
    iris = pd.DataFrame(
        {"sepal_length": [5.1, 4.9], "sepal_width": [3.5, 3.0], "species": ["setosa"] * 2}
    )
    return _source(_write(iris, d / "iris.csv"))


def missing_path(d: Path) -> list[str]:
    return _source(d / "nowhere" / "listings.csv")


def gzip_bomb(d: Path) -> list[str]:
    """A valid listings CSV of one row repeated: 32 MiB of CSV in a ~100 KB gzip file."""
    rows = _listings(1).to_csv(index=False).encode()
    header, row = rows.split(b"\n", 1)
    compressor = zlib.compressobj(9, zlib.DEFLATED, 31)  # wbits 31: a gzip container
    block = row * ((1 << 20) // len(row))
    with (d / "bomb.csv.gz").open("wb") as sink:
        sink.write(compressor.compress(header + b"\n"))
        for _ in range(32):
            sink.write(compressor.compress(block))
        sink.write(compressor.flush())
    return _source(d / "bomb.csv.gz")


def directory(d: Path) -> list[str]:
    (d / "exports").mkdir()
    _write(_listings(), d / "exports" / "listings.csv")
    return _source(d / "exports")


def skewed_boroughs(d: Path) -> list[str]:
    return _source(_write(_listings().assign(neighbourhood_group="Bronx"), d / "bronx.csv"))


def too_few_rows(d: Path) -> list[str]:
    return _source(_write(_listings(200), d / "tiny.csv"))


def wrong_type_override(d: Path) -> list[str]:
    return ["data.demo_rows=many"]


def unknown_key_override(d: Path) -> list[str]:
    return ["data.sauce=demo"]


CORPUS: tuple[BadInput, ...] = (
    BadInput("empty file", empty, "is empty"),
    BadInput("header only", header_only, "has a header but no data rows"),
    BadInput("missing required column", missing_column, "lacks required column(s): price"),
    BadInput("wrong delimiter", wrong_delimiter, "looks delimited by ';'"),
    BadInput("non-UTF-8 file", not_utf8, "is not valid UTF-8"),
    BadInput("truncated gzip", truncated_gzip, "truncated or corrupt gzip"),
    BadInput("prices all missing", prices_missing, "with a price outside the bounds or missing"),
    BadInput("prices negative", prices_negative, "with a price outside the bounds or missing"),
    BadInput("coordinates outside NYC", outside_nyc, "outside the NYC bounding box"),
    BadInput("unknown neighbourhood_group", unknown_borough, "neighbourhood_group"),
    BadInput("duplicated ids", duplicated_ids, "with a duplicated id"),
    BadInput("a different dataset", different_dataset, "lacks required column(s)"),
    BadInput("path that does not exist", missing_path, "does not exist"),
    BadInput("path that is a directory", directory, "is a directory, not a file"),
    BadInput("gzip bomb", gzip_bomb, "looks like a decompression bomb"),
    BadInput("boroughs far from the reference", skewed_boroughs, "KL"),
    BadInput("too few rows", too_few_rows, "row count"),
    BadInput("override of the wrong type", wrong_type_override, "data.demo_rows", exit_code=2),
    BadInput("override of an unknown key", unknown_key_override, "unknown key", exit_code=2),
)
