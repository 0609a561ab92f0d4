"""Parameter normalization: one string form per value, before anything compares or passes it.

`mlflow.projects.run` substitutes parameters as strings, and a cache or a reuse check that
compared `1` with `"1"` or `1.0` would miss. Everything goes through `normalize` once.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from steps.common.url_secrets import redact_url


def normalize_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if math.isfinite(value) and value.is_integer():
            return str(int(value))
        return repr(value)
    if isinstance(value, Mapping | list | tuple):
        return json.dumps(_plain(value), sort_keys=True, separators=(",", ":"))
    if value is None:
        return ""
    return str(value)


def _plain(value: Any) -> Any:
    """Nested values keep their JSON types: the entry point reads them back as typed values
    (scikit-learn tells `max_features=1.0`, a share, from `1`, a count). The configuration is
    validated into fixed types first, so equal settings still serialize alike."""
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    return value


def normalize(parameters: Mapping[str, Any]) -> dict[str, str]:
    return {str(key): normalize_value(value) for key, value in sorted(parameters.items())}


def redact(value: str) -> str:
    """A parameter value fit to be stored: URLs lose credentials and query strings.

    Signed URLs carry their key in the query string and `https://user:pass@host/` carries it in
    plain sight; the configuration refuses both written out (see steps/common/url_secrets.py),
    and this keeps whatever else a query holds out of the stores too.
    """
    return redact_url(value)


def hide_password(value: str) -> str:
    """A connection URI fit for a log line: its password, if any, becomes `***`.

    For database and server URIs (`postgresql://user:secret@host/db`), where the user name is
    worth seeing and the password is not; `redact` is the stricter rule for stored parameters.
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
    """Normalized parameters as they may be logged (see `redact`)."""
    return {key: redact(value) for key, value in parameters.items()}
