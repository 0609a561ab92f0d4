"""A locked tracking database is a transient failure, told apart by type, not by message."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest
import sqlalchemy
from mlflow.exceptions import MlflowException

from steps.contract import is_unavailable_store


def locked_database_error(tmp_path: Path) -> BaseException:
    """The real error SQLAlchemy raises when another process holds the SQLite write lock."""
    path = tmp_path / "store.db"
    holder = sqlite3.connect(path, isolation_level=None)
    holder.execute("CREATE TABLE runs (id TEXT)")
    holder.execute("BEGIN EXCLUSIVE")
    engine = sqlalchemy.create_engine(f"sqlite:///{path}", connect_args={"timeout": 0.1})
    try:
        with engine.begin() as connection:
            connection.execute(sqlalchemy.text("INSERT INTO runs VALUES ('x')"))
    except sqlalchemy.exc.OperationalError as error:
        return error
    finally:
        holder.execute("ROLLBACK")
        holder.close()
        engine.dispose()
    pytest.fail("the database was not locked")


def test_a_locked_sqlite_store_is_unavailable(tmp_path: Path) -> None:
    assert is_unavailable_store(locked_database_error(tmp_path))


def test_a_store_error_wrapped_by_mlflow_is_still_recognised(tmp_path: Path) -> None:
    try:
        try:
            raise locked_database_error(tmp_path)
        except sqlalchemy.exc.OperationalError as cause:
            raise MlflowException("Failed to log metric") from cause
    except MlflowException as wrapped:
        assert is_unavailable_store(wrapped)


def test_other_errors_are_not_store_errors() -> None:
    assert not is_unavailable_store(ValueError("database is locked"))  # text alone proves nothing
    assert not is_unavailable_store(KeyError("price"))
