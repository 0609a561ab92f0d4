"""Credentials in URLs: found by name, stripped in one place, refused written out, accepted
through `${oc.env:NAME}` (stored as written, resolved only by the step)."""

from __future__ import annotations

import pytest

from orchestration.config import ConfigError, load_config
from orchestration.step_runner import source_label, step_parameters
from steps.common.errors import ConfigurationError, SourceError
from steps.common.url_secrets import (
    MissingEnvironmentVariable,
    credentials_in,
    for_the_record,
    hide_password,
    redact_url,
    refusal,
    resolve_env_references,
)
from steps.ingest.get_data import check_source_digest, read_source_reference

SECRET = "Pw0rdSECRETq7Zk2"
SIGNATURE = "5ig5ECRET9f8e7d6"
SIGNED = f"https://user:{SECRET}@host.example/l.csv?X-Amz-Signature={SIGNATURE}&X-Amz-Expires=9"


@pytest.mark.parametrize(
    ("url", "names"),
    [
        (SIGNED, ["user info (user:password@)", "query parameter X-Amz-Signature"]),
        (
            "https://h/l.csv?OSSAccessKeyId=k&Expires=1&Signature=s",
            ["query parameter OSSAccessKeyId", "query parameter Signature"],
        ),
        ("https://h/l.csv?sv=1&sig=abc", ["query parameter sig"]),
        ("https://h/l.csv?token=abc", ["query parameter token"]),
        (
            "https://h/l.csv?X-Amz-Security-Token=t&X-Amz-Credential=c",
            ["query parameter X-Amz-Credential", "query parameter X-Amz-Security-Token"],
        ),
        ("https://h/l.csv?page=2", []),
        ("/data/listings.csv", []),
        ("demo", []),
    ],
)
def test_credentials_are_named_never_shown(url: str, names: list[str]) -> None:
    assert credentials_in(url) == names
    assert not any(SECRET in name or SIGNATURE in name for name in names)


def test_one_redaction_strips_user_info_query_and_fragment() -> None:
    assert redact_url(SIGNED) == "https://host.example/l.csv"
    assert redact_url("oss://bucket/key?x=1#f") == "oss://bucket/key"
    assert redact_url("https://host:8443/a.csv") == "https://host:8443/a.csv"
    assert redact_url("${oc.env:LISTINGS_URL}") == "${oc.env:LISTINGS_URL}"
    assert hide_password("postgresql://u:pw@db/x") == "postgresql://u:***@db/x"
    assert for_the_record({"source": SIGNED}) == {"source": "https://host.example/l.csv"}


def test_environment_references_resolve_only_from_the_environment() -> None:
    environ = {"LISTINGS_URL": SIGNED}
    assert resolve_env_references("${oc.env:LISTINGS_URL}", environ) == SIGNED
    with pytest.raises(MissingEnvironmentVariable) as missing:
        resolve_env_references("${oc.env:NOT_SET}", environ)
    assert missing.value.name == "NOT_SET"
    assert refusal("data.source", "${oc.env:LISTINGS_URL}") is None
    assert refusal("data.source", f"https://u:{SECRET}@h/${{oc.env:PATH_PART}}") is not None


def test_the_configuration_keeps_the_reference_as_written(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LISTINGS_URL", SIGNED)
    cfg = load_config(["data.source=${oc.env:LISTINGS_URL}"])
    assert cfg.data.source == "${oc.env:LISTINGS_URL}"
    parameters = step_parameters("get_data", cfg, __import__("pathlib").Path.cwd())
    assert parameters["source"] == "${oc.env:LISTINGS_URL}"
    assert source_label(cfg) == "env-LISTINGS_URL"


@pytest.mark.parametrize(
    "override",
    [f"data.source='{SIGNED}'", f"data.source={SIGNED}", "data.source='https://h/l.csv?sig=abc'"],
)
def test_a_secret_written_out_is_refused_with_the_fix_and_not_repeated(override: str) -> None:
    with pytest.raises(ConfigError) as refused:
        load_config([override])
    message = str(refused.value)
    assert "data.source='${oc.env:" in message
    assert SECRET not in message and SIGNATURE not in message and "abc" not in message


def test_an_unparsable_value_names_the_quoting_fix() -> None:
    with pytest.raises(ConfigError, match=r"must be quoted for Hydra, e\.g\. data\.source='VALUE'"):
        load_config(["data.source=https://h/l.csv?page=1&size=2"])


def test_a_reference_to_an_unset_variable_is_refused_by_name(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("LISTINGS_URL", raising=False)
    with pytest.raises(ConfigError, match="LISTINGS_URL is not set: export LISTINGS_URL"):
        load_config(["data.source=${oc.env:LISTINGS_URL}"])


def test_the_step_resolves_the_reference_or_names_the_variable(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("LISTINGS_URL", SIGNED)
    assert read_source_reference("${oc.env:LISTINGS_URL}") == SIGNED
    monkeypatch.delenv("LISTINGS_URL")
    with pytest.raises(ConfigurationError, match="step's environment has no LISTINGS_URL"):
        read_source_reference("${oc.env:LISTINGS_URL}")


def test_the_step_refuses_bytes_other_than_the_fingerprinted_ones() -> None:
    check_source_digest("", "ab" * 32)
    check_source_digest("sha256:" + "ab" * 32, "ab" * 32)
    with pytest.raises(SourceError, match="the source changed between"):
        check_source_digest("sha256:" + "cd" * 32, "ab" * 32)
