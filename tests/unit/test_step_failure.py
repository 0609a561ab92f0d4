"""Failed steps are classified as transient or permanent, and only transient ones are retried."""

from __future__ import annotations

import pickle
from typing import Any

import pytest

from steps.contract import (
    EXIT_BAD_CONFIG,
    EXIT_BAD_DATA,
    EXIT_TRANSIENT,
    PERMANENT,
    TRANSIENT,
)
from tasks.step_failure import StepFailed, is_transient, retry_if_transient


class FakeState:
    """The part of a Prefect State that retry_if_transient reads."""

    def __init__(self, result: Any = None, raises: BaseException | None = None) -> None:
        self._result = result
        self._raises = raises
        self.calls: list[dict[str, Any]] = []

    def result(self, **kwargs: Any) -> Any:
        self.calls.append(kwargs)
        if self._raises is not None:
            raise self._raises
        return self._result


def _failed(transient: bool, exit_code: int | None = 1) -> StepFailed:
    return StepFailed("train", "abc123", exit_code, transient, "boom")


# --- is_transient ---------------------------------------------------------------------------------


@pytest.mark.parametrize("exit_code", [None, 0, 1, 3, 75, -9])
def test_kind_tag_decides_over_exit_code(exit_code: int | None) -> None:
    assert is_transient(exit_code, "transient") is True
    assert is_transient(exit_code, "permanent") is False


def test_kind_tags_are_the_entry_points_constants() -> None:
    assert is_transient(None, TRANSIENT) is True
    assert is_transient(None, PERMANENT) is False


@pytest.mark.parametrize(
    ("exit_code", "expected"),
    [
        (75, True),
        (EXIT_TRANSIENT, True),
        (3, False),
        (EXIT_BAD_DATA, False),
        (EXIT_BAD_CONFIG, False),
        # A step that exits without reporting was killed; `mlflow run` reports that as 1.
        (1, True),
        (-9, True),
        (-15, True),
        (137, True),
        (143, True),
        (None, True),
    ],
)
def test_exit_code_decides_without_a_kind_tag(exit_code: int | None, expected: bool) -> None:
    assert is_transient(exit_code, None) is expected


@pytest.mark.parametrize(("exit_code", "expected"), [(75, True), (3, False), (-9, True)])
def test_unknown_kind_tag_falls_back_to_exit_code(exit_code: int, expected: bool) -> None:
    assert is_transient(exit_code, "weird") is expected


# --- StepFailed -----------------------------------------------------------------------------------


@pytest.mark.parametrize("transient", [True, False])
def test_step_failed_pickles_with_fields_and_message(transient: bool) -> None:
    error = StepFailed("data_check", "run-42", 3, transient, "price above max_price in 7 rows")
    copy = pickle.loads(pickle.dumps(error))
    assert isinstance(copy, StepFailed)
    assert (copy.step, copy.run_id, copy.exit_code, copy.transient, copy.message) == (
        "data_check",
        "run-42",
        3,
        transient,
        "price above max_price in 7 rows",
    )
    assert str(copy) == str(error)
    assert copy.args == error.args


def test_step_failed_pickles_without_exit_code() -> None:
    copy = pickle.loads(pickle.dumps(StepFailed("train", "r", None, True, "timed out")))
    assert copy.exit_code is None
    assert copy.transient is True


@pytest.mark.parametrize(("transient", "kind"), [(True, "transient"), (False, "permanent")])
def test_step_failed_str_names_step_and_kind(transient: bool, kind: str) -> None:
    text = str(StepFailed("basic_cleaning", "r1", 75, transient, "store locked"))
    assert "basic_cleaning" in text
    assert kind in text
    assert "75" in text
    assert "store locked" in text


# --- retry_if_transient ---------------------------------------------------------------------------


def test_retries_a_transient_failure() -> None:
    state = FakeState(result=_failed(transient=True, exit_code=75))
    assert retry_if_transient(object(), object(), state) is True
    assert state.calls == [{"raise_on_failure": False}]


def test_does_not_retry_a_permanent_failure() -> None:
    assert retry_if_transient(object(), object(), FakeState(result=_failed(False, 3))) is False


@pytest.mark.parametrize("error", [RuntimeError("bug"), ValueError("x"), KeyError("k")])
def test_does_not_retry_other_exceptions(error: Exception) -> None:
    assert retry_if_transient(object(), object(), FakeState(result=error)) is False


def test_does_not_retry_a_non_exception_result() -> None:
    assert retry_if_transient(object(), object(), FakeState(result=None)) is False


def test_state_that_raises_is_judged_by_its_exception() -> None:
    assert retry_if_transient(None, None, FakeState(raises=_failed(True))) is True
    assert retry_if_transient(None, None, FakeState(raises=_failed(False))) is False
    assert retry_if_transient(None, None, FakeState(raises=RuntimeError("no result"))) is False
