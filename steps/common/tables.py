"""Reading and writing the Parquet tables steps hand to each other."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from steps.common.errors import PreconditionError


def read_table(path: Path) -> pd.DataFrame:
    try:
        return pd.read_parquet(path)
    except Exception as error:
        raise PreconditionError(
            f"{path.name} is not a readable Parquet table ({error}); re-run the step that "
            "produced it"
        ) from error


def write_table(frame: pd.DataFrame, path: Path) -> Path:
    frame.to_parquet(path, index=False)
    return path
