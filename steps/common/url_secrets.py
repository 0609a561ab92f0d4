"""Credentials in URLs: how to recognise them, strip them, and keep them out of every store.

A URL with a password (`https://user:pass@host/...`) or a signed URL (its key in the query:
`X-Amz-Signature=...`, `Signature=...`, `sig=...`) would be stored in clear wherever the value
travels: the flow run's parameters, MLflow params, argv of the step's process. So the
configuration refuses such a value written out, and accepts it only as an environment reference,
`${oc.env:NAME}`, which every store keeps as written and the step alone resolves, from its own
environment, where it reads the data.

This is the one place that strips credentials from a URL; steps, tasks and flows all import it
(no Prefect, no run state).
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from urllib.parse import parse_qsl, urlsplit, urlunsplit

# `${oc.env:NAME}`: OmegaConf's own syntax, so the value reads the same in conf/ and overrides.
ENV_REFERENCE = re.compile(r"\$\{oc\.env:([A-Za-z_][A-Za-z0-9_]*)\}")
# Query parameters that carry a key, a signature or a token (compared in lower case): AWS S3
# (SigV4 and SigV2), Alibaba OSS, Azure SAS, Google Cloud Storage, and generic tokens.
CREDENTIAL_QUERY_KEYS = frozenset(
    {
        "x-amz-signature",
        "x-amz-credential",
        "x-amz-security-token",
        "awsaccesskeyid",
        "signature",
        "ossaccesskeyid",
        "security-token",
        "x-oss-signature",
        "x-oss-credential",
        "x-oss-security-token",
        "sig",
        "x-goog-signature",
        "x-goog-credential",
        "googleaccessid",
        "token",
        "access_token",
        "api_key",
        "apikey",
        "key",
        "password",
        "secret",
    }
)
HOW_TO_PASS = (
    "put the URL in an environment variable (or .env) and pass data.source='${oc.env:NAME}', "
    "e.g. export LISTINGS_URL='https://...' and data.source='${oc.env:LISTINGS_URL}': the "
    "reference is stored as written and only the get_data step reads the variable"
)


class MissingEnvironmentVariable(ValueError):
    """A `${oc.env:NAME}` reference names a variable this process does not have."""

    def __init__(self, name: str) -> None:
        super().__init__(name)
        self.name = name


def credentials_in(value: str) -> list[str]:
    """What in `value` is a credential, by name only (never the secret itself): empty when
    `value` is not a URL or carries none."""
    if "://" not in value:
        return []
    parts = urlsplit(value)
    found = []
    if "@" in parts.netloc:
        found.append("user info (user:password@)")
    keys = {key.lower(): key for key, _ in parse_qsl(parts.query, keep_blank_values=True)}
    found += [f"query parameter {keys[k]}" for k in sorted(keys) if k in CREDENTIAL_QUERY_KEYS]
    return found


def redact_url(value: str) -> str:
    """A value fit to be stored or shown: a URL loses its user info, query and fragment (a
    signed URL's key may sit under any name in the query); anything else stays as it is."""
    if "://" not in value:
        return value
    parts = urlsplit(value)
    if not (parts.query or parts.fragment or "@" in parts.netloc):
        return value
    host = parts.netloc.rpartition("@")[2]
    return urlunsplit((parts.scheme, host, parts.path, "", ""))


def hide_password(value: str) -> str:
    """A connection URI fit for a log line: its password, if any, becomes `***`.

    For database and server URIs (`postgresql://user:secret@host/db`), where the user name is
    worth seeing and the password is not; `redact_url` is the stricter rule for stored values.
    """
    if "://" not in value:
        return value
    parsed = urlsplit(value)
    if parsed.password is None:
        return value
    userinfo, _, hostinfo = parsed.netloc.rpartition("@")
    user = userinfo.split(":", 1)[0]
    return urlunsplit(parsed._replace(netloc=f"{user}:***@{hostinfo}"))


def for_the_record(parameters: Mapping[str, str]) -> dict[str, str]:
    """Parameter values as they may be stored or logged: URLs lose credentials and queries."""
    return {key: redact_url(value) for key, value in parameters.items()}


def env_references(value: str) -> list[str]:
    """The environment variables `value` refers to with `${oc.env:NAME}`."""
    return ENV_REFERENCE.findall(value)


def resolve_env_references(value: str, environ: Mapping[str, str] | None = None) -> str:
    """`value` with every `${oc.env:NAME}` replaced by the variable; MissingEnvironmentVariable
    when one is not set. Called only where the value is used (the step reading the data)."""
    environ = os.environ if environ is None else environ

    def lookup(match: re.Match[str]) -> str:
        name = match.group(1)
        if name not in environ:
            raise MissingEnvironmentVariable(name)
        return environ[name]

    return ENV_REFERENCE.sub(lookup, value)


def refusal(key: str, value: str) -> str | None:
    """Why `value`, written out for setting `key`, may not be stored (naming the fix), or None.

    Credentials written out are refused; inside a `${oc.env:NAME}` reference they are welcome.
    """
    written = ENV_REFERENCE.sub("ENV", value)
    found = credentials_in(written)
    if not found:
        return None
    return (
        f"{key} carries credentials ({', '.join(found)}) that would be stored in clear in the "
        f"flow run's parameters, MLflow and the step's command line; {HOW_TO_PASS}"
    )
