"""Parameter normalization: one string form per value, before anything compares or passes it.

`mlflow.projects.run` substitutes parameters as strings, and a cache or a reuse check that
compared `1` with `"1"` or `1.0` would miss. Everything goes through `normalize` once.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from typing import Any


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
    """Nested values follow the top-level rules: whole floats become ints."""
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if isinstance(value, float) and math.isfinite(value) and value.is_integer():
        return int(value)
    return value


def normalize(parameters: Mapping[str, Any]) -> dict[str, str]:
    return {str(key): normalize_value(value) for key, value in sorted(parameters.items())}
