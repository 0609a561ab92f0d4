"""The command behind each file generated from the code (MLproject, prefect.yaml,
docs/configuration.md): write it, or with `--check` say whether it is current.

One shape for all three, so a stale file always fails the same way (exit 1, naming the command
that regenerates it), and a file is replaced whole or not at all: it is written beside itself and
renamed over the old one, so an interrupted run never leaves half a file.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path


def write_whole(path: Path, text: str) -> None:
    """Replace `path` with `text` in one rename (a reader sees the old file or the new one)."""
    with tempfile.NamedTemporaryFile(
        "w", dir=path.parent, prefix=f".{path.name}.", delete=False, encoding="utf-8"
    ) as handle:
        handle.write(text)
    os.replace(handle.name, path)


def generated_file_main(
    argv: Sequence[str] | None,
    *,
    prog: str,
    description: str | None,
    output: Path,
    render: Callable[[], str],
    input_errors: tuple[type[Exception], ...] = (),
) -> int:
    """`prog [--check] [--output PATH]`: 0 written or current, 1 stale, 2 bad input (an error
    of `input_errors`, raised by `render`, printed without a traceback)."""
    parser = argparse.ArgumentParser(prog=prog, description=description)
    parser.add_argument(
        "--check", action="store_true", help=f"exit 1 if {output.name} is stale, write nothing"
    )
    parser.add_argument("--output", type=Path, default=output)
    args = parser.parse_args(argv)
    try:
        text = render()
    except input_errors as error:
        sys.stderr.write(f"error: {error}\n")
        return 2
    current = args.output.read_text() if args.output.exists() else ""
    if current == text:
        return 0
    if args.check:
        sys.stderr.write(f"{args.output} is stale: run {prog}\n")
        return 1
    write_whole(args.output, text)
    sys.stdout.write(f"wrote {args.output}\n")
    return 0
