"""deployments.tracking_users before it talks to a server: what each role gets, and its refusals
of bad input (no admin password, a short new password), which exit 2 without any request."""

from __future__ import annotations

import io
from pathlib import Path

import pytest

from deployments import tracking_users
from deployments.tracking_users import Grant, plan_grant, read_new_password
from orchestration.config import ConfigError


@pytest.fixture(autouse=True)
def _no_admin(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.chdir(tmp_path)  # no .env of the checkout
    for name in ("MLFLOW_AUTH_ADMIN_PASSWORD", "MLFLOW_AUTH_ADMIN_USERNAME", "MLFLOW_TRACKING_URI"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("WANDB_SILENT", "true")
    monkeypatch.setenv("PREFECT_SERVER_ANALYTICS_ENABLED", "false")


def test_the_pipeline_manages_the_model_and_its_promotion_lock_a_reader_only_reads() -> None:
    assert plan_grant("pipeline", "ci", "housing_price") == Grant(
        "ci", "MANAGE", ("housing_price", "housing_price.promotion-lock")
    )
    assert plan_grant("reader", "alice", "housing_price") == Grant(
        "alice", "READ", ("housing_price",)
    )


def test_the_new_password_is_the_first_line_of_stdin_and_must_have_12_characters() -> None:
    assert read_new_password(io.StringIO("twelve-chars-ok\nignored\n"), "ci") == "twelve-chars-ok"
    with pytest.raises(ConfigError, match="at least 12 characters"):
        read_new_password(io.StringIO("tiny-pw\n"), "ci")


def test_without_the_admin_password_it_exits_2_naming_the_variable(
    capsys: pytest.CaptureFixture[str],
) -> None:
    code = tracking_users.main(
        ["reader", "alice", "--url", "http://127.0.0.1:9"], io.StringIO("a-long-password\n")
    )
    assert code == tracking_users.EXIT_BAD_INPUT
    err = capsys.readouterr().err
    assert "MLFLOW_AUTH_ADMIN_PASSWORD is not set" in err and ".env" in err


def test_a_short_new_password_exits_2_before_any_request(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("MLFLOW_AUTH_ADMIN_PASSWORD", "admin-password-long")
    code = tracking_users.main(
        ["pipeline", "ci", "--url", "http://127.0.0.1:9"], io.StringIO("x\n")
    )
    assert code == tracking_users.EXIT_BAD_INPUT
    assert "at least 12 characters" in capsys.readouterr().err


def test_the_server_url_is_the_tracking_uri_when_it_is_http() -> None:
    assert tracking_users.default_url({"MLFLOW_TRACKING_URI": "https://m.example"}, 5000) == (
        "https://m.example"
    )
    assert tracking_users.default_url({"MLFLOW_TRACKING_URI": "sqlite:///x.db"}, 5001) == (
        "http://127.0.0.1:5001"
    )
