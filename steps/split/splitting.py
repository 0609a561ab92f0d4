"""Deterministic train/validation/test split, stratified so every split has the borough mix.

Small boroughs (Staten Island is under 1% of listings) would otherwise land unevenly in the
validation and test sets and make their metrics noisy between runs.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence

import numpy as np
import pandas as pd
from sklearn.model_selection import train_test_split

from steps.common.errors import ConfigurationError

logger = logging.getLogger(__name__)

# Label given to classes too rare to stratify on their own (and to missing values).
REST_CLASS = "__rest__"
MIN_CLASS_MEMBERS = 2
# Spellings of "no stratification" that arrive as text from a command line.
NO_STRATIFICATION = frozenset({"", "none", "null"})


def _check_fraction(name: str, value: float) -> None:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise ConfigurationError(f"split.{name} must be a number in (0, 1), got {value!r}")
    if not 0 < value < 1:
        raise ConfigurationError(f"split.{name} must be in (0, 1), got {value}")


def _strata(values: pd.Series, min_members: int = MIN_CLASS_MEMBERS) -> pd.Series | None:
    """Stratification labels with rare classes (and missing values) merged into one rest class.

    Returns None when even that leaves a class with a single member: stratifying is impossible.
    """
    labels = values.astype(object).where(values.notna(), REST_CLASS).astype(str)
    counts = labels.value_counts()
    rare = counts.index[counts < min_members]
    if len(rare):
        logger.warning(
            "classes with fewer than %d rows merged into %s for stratification: %s",
            min_members,
            REST_CLASS,
            ", ".join(map(str, rare)),
        )
        labels = labels.where(~labels.isin(rare), REST_CLASS)
    counts = labels.value_counts()
    if (counts < min_members).any():
        return None
    return labels


def _split(
    items: np.ndarray, fraction: float, seed: int, strata: pd.Series | None
) -> tuple[np.ndarray, np.ndarray]:
    """One stratified cut; falls back to an unstratified one when sklearn cannot stratify."""
    if strata is not None:
        try:
            first, second = train_test_split(
                items, test_size=fraction, random_state=seed, shuffle=True, stratify=strata
            )
            return first, second
        except ValueError as exc:
            logger.warning("cannot stratify this cut (%s): splitting without strata", exc)
    first, second = train_test_split(items, test_size=fraction, random_state=seed, shuffle=True)
    return first, second


def _check_settings(test_size: float, val_size: float, seed: int) -> None:
    _check_fraction("test_size", test_size)
    _check_fraction("val_size", val_size)
    if test_size + val_size >= 1:
        raise ConfigurationError(
            f"split.test_size + split.val_size must be below 1 to leave training rows, "
            f"got {test_size} + {val_size}"
        )
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise ConfigurationError(f"split.seed must be an integer, got {seed!r}")


def stratification(stratify_by: str | None) -> str | None:
    """The column to stratify by, None for the spellings of "no stratification"."""
    if stratify_by is not None and stratify_by.strip().lower() in NO_STRATIFICATION:
        return None
    return stratify_by


def check_stratify_column(stratify_by: str | None, columns: Sequence[str]) -> None:
    if stratify_by is not None and stratify_by not in columns:
        raise ConfigurationError(
            f"split.stratify_by={stratify_by!r} is not a column of the data; "
            f"choose one of: {', '.join(map(str, columns))} (or null for no stratification)"
        )


def split_positions(
    rows: int,
    strata_values: pd.Series | None,
    *,
    test_size: float,
    val_size: float,
    seed: int,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The row positions of (train, val, test), each in the order its split lists its rows.

    Only the stratification column is needed (`strata_values`, None for no strata), so a
    table of any width is split by taking these positions from it, block by block or as Arrow
    data, without a pandas copy of it. The same rows and seed give the same positions as
    `split_listings` gives rows.
    """
    _check_settings(test_size, val_size, seed)
    if rows < 3:
        raise ConfigurationError(f"cannot split {rows} row(s) into train, val and test")
    positions = np.arange(rows)
    strata = None
    if strata_values is not None:
        strata = _strata(strata_values.reset_index(drop=True))
    rest, test = _split(positions, test_size, seed, strata)
    rest_strata = _strata(strata.iloc[rest]) if strata is not None else None
    train, val = _split(rest, val_size / (1 - test_size), seed, rest_strata)
    logger.info(
        "split %d rows into train %d, val %d, test %d", rows, len(train), len(val), len(test)
    )
    return train, val, test


def split_listings(
    df: pd.DataFrame,
    *,
    test_size: float,
    val_size: float,
    seed: int,
    stratify_by: str | None,
) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """Split into (train, val, test); test_size and val_size are fractions of the whole data.

    The same data and seed always give the same split. Each returned frame has a fresh index.
    """
    _check_settings(test_size, val_size, seed)
    stratify_by = stratification(stratify_by)
    check_stratify_column(stratify_by, list(df.columns))
    if len(df) < 3:
        raise ConfigurationError(f"cannot split {len(df)} row(s) into train, val and test")
    parts = split_positions(
        len(df),
        df[stratify_by] if stratify_by is not None else None,
        test_size=test_size,
        val_size=val_size,
        seed=seed,
    )
    logger.info("stratified by %s", stratify_by)
    train, val, test = (df.iloc[part].reset_index(drop=True) for part in parts)
    return train, val, test
