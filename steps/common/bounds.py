"""The price and position bounds: cleaning applies them, the data check verifies them again."""

from __future__ import annotations

import argparse

BOUNDS = (
    "min_price",
    "max_price",
    "min_longitude",
    "max_longitude",
    "min_latitude",
    "max_latitude",
)


def add_bound_arguments(parser: argparse.ArgumentParser) -> None:
    for name in BOUNDS:
        parser.add_argument(f"--{name}", type=float, required=True)


def bounds_of(args: argparse.Namespace) -> dict[str, float]:
    return {name: getattr(args, name) for name in BOUNDS}
