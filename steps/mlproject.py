"""Write MLproject from the entry points' schemas: `python -m steps.mlproject [--check]`.

Each entry point's parameters, their MLflow types and defaults come from its schema
(steps/entry_points.py); the command passes every parameter as `--name {name}`, which the
entry point's parser (steps/common/params_cli.py) reads back into the same schema. `--check`
writes nothing and exits 1 when MLproject is not what the schemas say.
"""

from __future__ import annotations

import json
import math
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal, get_args, get_origin

from pydantic.fields import FieldInfo

from steps.common.generated_file import generated_file_main
from steps.common.params_cli import flags, is_scalar
from steps.entry_points import ENTRY_POINTS, EntryPoint

PROJECT_ROOT = Path(__file__).resolve().parents[1]
MLPROJECT = PROJECT_ROOT / "MLproject"
_WIDTH = 100

_HEADER = """\
# Generated from the entry points' schemas by `python -m steps.mlproject`; edit those instead
# (steps/entry_points.py lists them). The Prefect tasks call these entry points by name through
# mlflow.projects.run; each parses its arguments into the same schema (steps/common/params_cli.py).
name: nyc_price_pipeline

conda_env: conda.yml

entry_points:
  main:
    parameters:
      steps: {type: string, default: all}
      hydra_options: {type: string, default: ""}
    # $(echo ...) unquotes hydra_options so several overrides arrive as separate arguments.
    command: "python -m flows.train_pipeline main.steps={steps} $(echo {hydra_options})"
"""


def _base_types(annotation: Any) -> set[Any]:
    origin = get_origin(annotation)
    if origin is Literal:
        return {type(value) for value in get_args(annotation)}
    args = get_args(annotation)
    if args and origin is not None and not isinstance(origin, type):
        return set().union(*(_base_types(arg) for arg in args))
    return {annotation}


def mlflow_type(field: FieldInfo) -> str:
    """MLflow knows string, float, path and uri: a number is a float, anything else a string."""
    if not is_scalar(field.annotation):
        return "string"
    types = _base_types(field.annotation) - {type(None)}
    return "float" if types and types <= {int, float} else "string"


def command_value(value: Any) -> str:
    """A default as the entry point reads it back (the string form `normalize` gives it)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and math.isfinite(value) and value.is_integer():
        return str(int(value))
    if value is None:
        return ""
    if isinstance(value, dict | list | tuple):
        return json.dumps(value, sort_keys=True, separators=(",", ":"))
    return str(value)


def _yaml_scalar(text: str) -> str:
    plain = text and not any(c in text for c in ":{}[],#&*!|>'\"%@`") and text.strip() == text
    if plain and text.lower() not in ("true", "false", "null", "yes", "no", "on", "off", "~"):
        return text
    return json.dumps(text)


def _parameter(name: str, field: FieldInfo) -> str:
    kind = mlflow_type(field)
    if field.is_required():
        return f"      {name}: {kind}"
    default = field.get_default(call_default_factory=True)
    if hasattr(default, "model_dump"):
        default = default.model_dump(mode="json")
    elif isinstance(default, dict):
        default = {
            key: value.model_dump(mode="json", exclude_none=True)
            if hasattr(value, "model_dump")
            else value
            for key, value in default.items()
        }
    return f"      {name}: {{type: {kind}, default: {_yaml_scalar(command_value(default))}}}"


def _ordered(entry: EntryPoint) -> list[tuple[str, FieldInfo]]:
    """What the flow feeds from upstream (required) first, then the settings."""
    fields = list(flags(entry.params).items())
    return [item for item in fields if item[1].is_required()] + [
        item for item in fields if not item[1].is_required()
    ]


def command(entry: EntryPoint) -> str:
    """`python -m MODULE --name {name} ...`, folded at whole `--name {name}` pairs."""
    lines = [f"      python -m {entry.module}"]
    for name, _ in _ordered(entry):
        pair = f"--{name} {{{name}}}"
        if len(lines[-1]) + 1 + len(pair) > _WIDTH:
            lines.append("      " + pair)
        else:
            lines[-1] += " " + pair
    return "\n".join(lines)


def render_entry_point(entry: EntryPoint) -> str:
    lines = [""]
    if entry.comment:
        lines.append(f"  # {entry.comment}")
    lines += [f"  {entry.name}:", "    parameters:"]
    lines += [_parameter(name, field) for name, field in _ordered(entry)]
    lines += ["    command: >-", command(entry)]
    return "\n".join(lines) + "\n"


def render(entry_points: Sequence[EntryPoint] = ENTRY_POINTS) -> str:
    return _HEADER + "".join(render_entry_point(entry) for entry in entry_points)


def main(argv: Sequence[str] | None = None) -> int:
    return generated_file_main(
        argv, prog="python -m steps.mlproject", description=__doc__, output=MLPROJECT, render=render
    )


if __name__ == "__main__":
    sys.exit(main())
