"""Reading and writing the Parquet tables steps hand to each other."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from steps.common.errors import PreconditionError

# Rows per record batch when a step streams a table (a few tens of MiB of listings).
BATCH_ROWS = 1 << 17


def _unreadable(path: Path, error: Exception) -> PreconditionError:
    return PreconditionError(
        f"{path.name} is not a readable Parquet table ({error}); re-run the step that produced it"
    )


def read_table(path: Path, columns: Sequence[str] | None = None) -> pd.DataFrame:
    """The table as pandas (only `columns`, when given)."""
    try:
        return pd.read_parquet(path, columns=None if columns is None else list(columns))
    except Exception as error:
        raise _unreadable(path, error) from error


def read_arrow(path: Path, columns: Sequence[str] | None = None) -> pa.Table:
    """The table as Arrow data: compact text, no Python object per value."""
    try:
        return pq.read_table(path, columns=None if columns is None else list(columns))
    except Exception as error:
        raise _unreadable(path, error) from error


def table_columns(path: Path) -> list[str]:
    """The column names of a Parquet table, from its footer alone."""
    try:
        return list(pq.ParquetFile(path).schema_arrow.names)
    except Exception as error:
        raise _unreadable(path, error) from error


def iter_batches(
    path: Path, columns: Sequence[str] | None = None, batch_rows: int = BATCH_ROWS
) -> Iterator[pa.RecordBatch]:
    """The table's rows in order, `batch_rows` at a time (only `columns`, when given)."""
    try:
        parquet = pq.ParquetFile(path)
    except Exception as error:
        raise _unreadable(path, error) from error
    yield from parquet.iter_batches(
        batch_size=batch_rows, columns=None if columns is None else list(columns)
    )


def write_table(frame: pd.DataFrame, path: Path) -> Path:
    frame.to_parquet(path, index=False)
    return path
