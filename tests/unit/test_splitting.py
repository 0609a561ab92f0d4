"""Train/val/test split: sizes, strata, determinism, rare classes and bad settings."""

from __future__ import annotations

import logging
from typing import Any

import numpy as np
import pandas as pd
import pytest

from steps.common.errors import ConfigurationError
from steps.split.splitting import split_listings


def _frame(n: int = 1_000, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    groups = rng.choice(["M", "B", "Q", "X", "S"], size=n, p=[0.44, 0.41, 0.12, 0.02, 0.01])
    return pd.DataFrame({"id": np.arange(n), "group": groups, "price": rng.uniform(10, 350, n)})


def _split(frame: pd.DataFrame, **override: Any) -> tuple[pd.DataFrame, ...]:
    settings: dict[str, Any] = {
        "test_size": 0.2,
        "val_size": 0.2,
        "seed": 42,
        "stratify_by": "group",
    }
    return split_listings(frame, **(settings | override))


def test_sizes_are_fractions_of_the_whole() -> None:
    train, val, test = _split(_frame(1_000))
    assert (len(train), len(val), len(test)) == (600, 200, 200)


def test_parts_are_disjoint_and_complete() -> None:
    frame = _frame(500)
    parts = _split(frame)
    ids = np.concatenate([p["id"].to_numpy() for p in parts])
    assert sorted(ids.tolist()) == frame["id"].tolist()
    for part in parts:
        assert part.index.tolist() == list(range(len(part)))
        assert list(part.columns) == list(frame.columns)


def test_stratified_shares_match() -> None:
    frame = _frame(2_000)
    overall = frame["group"].value_counts(normalize=True)
    for part in _split(frame):
        shares = part["group"].value_counts(normalize=True)
        for group, share in overall.items():
            assert shares.get(group, 0.0) == pytest.approx(share, abs=0.01)


def test_deterministic_for_a_seed() -> None:
    frame = _frame(300)
    first = _split(frame, seed=7)
    again = _split(frame, seed=7)
    other = _split(frame, seed=8)
    for a, b in zip(first, again, strict=True):
        pd.testing.assert_frame_equal(a, b)
    assert first[2]["id"].tolist() != other[2]["id"].tolist()


def test_rare_classes_do_not_crash(caplog: pytest.LogCaptureFixture) -> None:
    frame = _frame(200)
    frame.loc[0, "group"] = "Atlantis"
    frame.loc[1, "group"] = None
    with caplog.at_level(logging.WARNING, logger="steps.split.splitting"):
        parts = _split(frame)
    assert sum(len(p) for p in parts) == 200
    assert "Atlantis" in caplog.text


def test_a_single_rare_row_falls_back_to_unstratified() -> None:
    frame = pd.DataFrame({"id": range(20), "group": ["A"] * 19 + ["B"]})
    parts = _split(frame)
    assert sum(len(p) for p in parts) == 20


def test_too_small_for_strata_falls_back() -> None:
    frame = pd.DataFrame({"id": range(10), "group": list("AABBCCDDEE")})
    parts = _split(frame)
    assert sum(len(p) for p in parts) == 10
    assert all(len(p) > 0 for p in parts)


@pytest.mark.parametrize("value", [None, "none", ""])
def test_no_stratification(value: str | None) -> None:
    parts = _split(_frame(100), stratify_by=value)
    assert [len(p) for p in parts] == [60, 20, 20]


@pytest.mark.parametrize(
    ("override", "pattern"),
    [
        ({"test_size": 0.0}, "test_size"),
        ({"test_size": 1.0}, "test_size"),
        ({"val_size": -0.1}, "val_size"),
        ({"val_size": float("nan")}, "val_size"),
        ({"test_size": 0.5, "val_size": 0.5}, "below 1"),
        ({"seed": 1.5}, "seed"),
        ({"stratify_by": "borough"}, "'borough' is not a column"),
    ],
)
def test_bad_settings(override: dict[str, Any], pattern: str) -> None:
    with pytest.raises(ConfigurationError, match=pattern):
        _split(_frame(50), **override)


def test_too_few_rows() -> None:
    with pytest.raises(ConfigurationError, match="cannot split 2 row"):
        _split(_frame(2))
