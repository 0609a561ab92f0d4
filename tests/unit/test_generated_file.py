"""The one command shape behind MLproject, prefect.yaml and docs/configuration.md."""

from __future__ import annotations

from pathlib import Path

import pytest

from steps.common.generated_file import generated_file_main


def _run(tmp_path: Path, *flags: str, render: object = lambda: "new\n") -> int:
    return generated_file_main(
        [*flags, "--output", str(tmp_path / "OUT")],
        prog="python -m some.generator",
        description=None,
        output=tmp_path / "OUT",
        render=render,  # type: ignore[arg-type]
        input_errors=(ValueError,),
    )


def test_check_of_a_stale_file_fails_names_the_command_and_writes_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "OUT").write_text("old\n")
    assert _run(tmp_path, "--check") == 1
    assert "is stale: run python -m some.generator" in capsys.readouterr().err
    assert (tmp_path / "OUT").read_text() == "old\n"


def test_writing_replaces_the_file_whole_and_leaves_no_temporary(tmp_path: Path) -> None:
    (tmp_path / "OUT").write_text("old\n")
    assert _run(tmp_path) == 0
    assert (tmp_path / "OUT").read_text() == "new\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["OUT"]
    assert _run(tmp_path, "--check") == 0


def test_bad_input_exits_2_and_leaves_the_file_as_it_was(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "OUT").write_text("old\n")

    def broken() -> str:
        raise ValueError("deployments.yaml: cron 'x' is not a cron expression")

    assert _run(tmp_path, render=broken) == 2
    assert "error: deployments.yaml: cron 'x'" in capsys.readouterr().err
    assert (tmp_path / "OUT").read_text() == "old\n"
