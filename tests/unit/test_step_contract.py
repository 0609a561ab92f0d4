"""The contract both sides import: its exit codes match the errors, its records round-trip."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from flows.cli import EXIT_CONFIG, Command, run_command
from orchestration.config import ConfigError
from orchestration.runtime import compose, composing_once
from steps.common import errors
from steps.contract import (
    OUTCOMES,
    PASSING_OUTCOMES,
    PERMANENT,
    PERMANENT_EXIT_CODES,
    TRANSIENT,
    TRANSIENT_EXIT_CODES,
    PromotionRecord,
    content_digest,
    file_sha256,
    run_page_url,
)


def test_the_retry_decision_knows_every_exit_code_the_errors_use() -> None:
    kinds = {cls.exit_code: cls.kind for cls in errors.StepError.__subclasses__()}
    assert {code for code, kind in kinds.items() if kind == PERMANENT} == PERMANENT_EXIT_CODES
    assert {code for code, kind in kinds.items() if kind == TRANSIENT} == TRANSIENT_EXIT_CODES


def test_file_digest_is_sha256_of_the_bytes(tmp_path: Path) -> None:
    path = tmp_path / "f.bin"
    path.write_bytes(b"x" * 3_000_000)
    expected = hashlib.sha256(b"x" * 3_000_000).hexdigest()
    assert file_sha256(path) == expected
    assert content_digest(path) == f"sha256:{expected}"


@pytest.mark.parametrize("outcome", OUTCOMES)
def test_promotion_record_round_trips_through_its_tags(outcome: str) -> None:
    record = PromotionRecord(outcome, "why", "3", "2", promoted=outcome == "promoted")
    assert PromotionRecord.from_tags(record.tags()) == record
    assert record.passes == (outcome in PASSING_OUTCOMES)


def test_promotion_record_wire_format() -> None:
    """The tag names a CI system or a person querying MLflow relies on."""
    tags = PromotionRecord("lost", "worse", "4", "3").tags()
    assert tags == {
        "promotion.verdict": "not promoted",
        "promotion.outcome": "lost",
        "promotion.reason": "worse",
        "promotion.candidate_version": "4",
        "promotion.previous_champion": "3",
    }
    assert PromotionRecord.from_tags({}).outcome is None


def test_run_page_url_is_mlflow_3s_route() -> None:
    assert run_page_url("http://h:5000/", "7", "ab") == "http://h:5000/#/experiments/7/runs/ab"


def test_a_command_composes_its_configuration_once(monkeypatch: pytest.MonkeyPatch) -> None:
    import orchestration.runtime

    calls: list[tuple[str, ...]] = []
    real = orchestration.runtime.load_config

    def counting(overrides: tuple[str, ...] = ()) -> object:
        calls.append(tuple(overrides))
        return real(overrides)

    monkeypatch.setattr(orchestration.runtime, "load_config", counting)
    with composing_once():
        first = compose(["model=random_forest"])
        assert compose(["model=random_forest"]) is first
    assert calls == [("model=random_forest",)]
    compose(["model=random_forest"])  # outside a command: composed afresh
    assert len(calls) == 2


def test_the_shell_prints_help_and_refuses_a_bad_configuration(
    capsys: pytest.CaptureFixture[str],
) -> None:
    def body(cfg: object) -> int:
        raise AssertionError("no work after a refusal")

    assert run_command(Command("x", body, doc="usage: x\n"), ["--help"]) == 0
    assert capsys.readouterr().out == "usage: x\n"

    def refuse(arguments: list[str]) -> object:
        raise ConfigError("invalid configuration: a.b: fix it")

    command = Command("x", body, start=refuse, uses_prefect=False)
    assert run_command(command, []) == EXIT_CONFIG
    assert capsys.readouterr().err == "error: invalid configuration: a.b: fix it\n"
