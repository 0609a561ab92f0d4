"""The warm-fork backend forks only plain `python -m module args` commands, parsed like bash."""

from __future__ import annotations

import os
import shlex
import sys
from pathlib import Path

import pytest

from warm_backend.protocol import (
    ModuleCommand,
    decode_lines,
    encode,
    exit_code_of,
    parse_module_command,
    same_interpreter,
)


def test_an_mlproject_command_becomes_module_and_args() -> None:
    command = (
        "python -m steps.ingest.get_data --source demo --demo_rows 20000 "
        "--demo_seed 42 --compression zstd --http_timeout_s 60"
    )
    assert parse_module_command(command) == ModuleCommand(
        python="python",
        module="steps.ingest.get_data",
        args=(
            "--source",
            "demo",
            "--demo_rows",
            "20000",
            "--demo_seed",
            "42",
            "--compression",
            "zstd",
            "--http_timeout_s",
            "60",
        ),
    )


@pytest.mark.parametrize(
    "value",
    [
        "{}",
        '{"test_r2": {"min": 0.3}}',
        "runs:/0123abcd/clean.parquet",
        "a b  c",
        "$HOME `id` $(id) ; | & > < * ? ~ ! # \\",
        'it\'s "quoted"',
        "",
        "line\nbreak",
    ],
)
def test_values_quoted_as_mlflow_quotes_them_arrive_verbatim(value: str) -> None:
    # mlflow substitutes parameters with shlex.quote: bash would pass them on unchanged.
    parsed = parse_module_command(
        f"python -m steps.train.train --model_config {shlex.quote(value)}"
    )
    assert parsed is not None
    assert parsed.args == ("--model_config", value)


@pytest.mark.parametrize(
    "command",
    [
        "python -m flows.train_pipeline main.steps=all $(echo model=random_forest)",
        "python -m m --x $HOME",
        "python -m m > out.txt",
        "python -m m && echo done",
        "python -m m; rm -rf x",
        "python -m m | tee log",
        "python -m m *.csv",
        "python -m m ~/data",
        "python -m m `id`",
        'python -m m "$HOME"',
        "python -m m # comment",
        "python -m m 'unterminated",
        "FOO=1 python -m m",
        "python -u -m m",
        "python script.py --x 1",
        "bash -c 'python -m m'",
        "ruby -m m",
        "python -m",
        "python -m -c",
        "python -m not-a-module",
        "python -m m\\ x",
    ],
)
def test_anything_a_shell_would_interpret_is_not_forked(command: str) -> None:
    assert parse_module_command(command) is None


def test_interpreter_names_and_paths_are_accepted() -> None:
    for python in ("python3", "python3.11", "/opt/venv/bin/python"):
        parsed = parse_module_command(f"{python} -m pkg.mod")
        assert parsed == ModuleCommand(python=python, module="pkg.mod", args=())


def test_same_interpreter_means_same_environment(tmp_path: Path) -> None:
    assert same_interpreter(sys.executable, sys.executable)
    assert not same_interpreter(None, sys.executable)
    # A link to the same binary in another bin folder is another environment (a venv).
    other = tmp_path / "bin" / "python"
    other.parent.mkdir()
    os.symlink(os.path.realpath(sys.executable), other)
    assert not same_interpreter(str(other), sys.executable)


def test_messages_are_json_lines_and_partial_lines_wait() -> None:
    buffer = bytearray(encode({"pid": 12}) + encode({"exit": -9}) + b'{"exit"')
    assert decode_lines(buffer) == [{"pid": 12}, {"exit": -9}]
    assert bytes(buffer) == b'{"exit"'
    buffer.extend(b":3}\n")
    assert decode_lines(buffer) == [{"exit": 3}]


@pytest.mark.parametrize(
    ("value", "code"),
    [(None, 0), (0, 0), (3, 3), (75, 75), (256, 0), (-1, 255), (True, 1), ("message", 1)],
)
def test_system_exit_values_map_to_the_interpreters_exit_status(value: object, code: int) -> None:
    assert exit_code_of(value) == code
