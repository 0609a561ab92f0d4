"""An entry point's command line, built from its parameter schema (steps/common/settings.py).

argparse only collects the strings `mlflow run` substitutes into the command; the schema alone
converts and checks them, so a bad value fails once, as a ConfigurationError (exit code 2) that
names the flag and is recorded on the step's run like any other failure. `--help` lists every
flag with the schema's description, bounds and default.
"""

from __future__ import annotations

import argparse
import json
import types
from collections.abc import Callable
from typing import Annotated, Any, Literal, TypeVar, Union, get_args, get_origin

from pydantic import BaseModel, ValidationError
from pydantic.fields import FieldInfo

from steps.common.errors import ConfigurationError
from steps.common.url_secrets import credentials_in, redact_url

Params = TypeVar("Params", bound=BaseModel)
_SCALARS = (str, int, float, bool, type(None))


def is_scalar(annotation: Any) -> bool:
    """Whether a value of this type is written as itself on the command line (else as JSON)."""
    origin = get_origin(annotation)
    if origin is Annotated:
        return is_scalar(get_args(annotation)[0])
    if origin is Literal:
        return True
    if origin in (Union, types.UnionType):
        return all(is_scalar(arg) for arg in get_args(annotation))
    return annotation in _SCALARS


_WORDS = {
    "gt": ">",
    "ge": ">=",
    "lt": "<",
    "le": "<=",
    "min_length": "length >=",
    "max_length": "length <=",
    "pattern": "matches",
}


def _constraints(metadata: Any) -> list[str]:
    parts = []
    for constraint in metadata:
        if isinstance(constraint, FieldInfo):  # Field(ge=1) inside Annotated
            parts += _constraints(constraint.metadata)
            continue
        for attribute, word in _WORDS.items():
            value = getattr(constraint, attribute, None)
            if value is not None:
                shown = f"{value:g}" if isinstance(value, float) else str(value)
                parts.append(f"{word} {shown}")
    return parts


def _nested_constraints(annotation: Any) -> list[str]:
    """Bounds written inside the type (`Annotated[int, Field(ge=1)] | None`)."""
    if get_origin(annotation) is Annotated:
        base, *metadata = get_args(annotation)
        return _constraints(metadata) + _nested_constraints(base)
    return [part for arg in get_args(annotation) for part in _nested_constraints(arg)]


def bounds_text(field: FieldInfo) -> str:
    """`>= 0, <= 1`: the bounds pydantic keeps on a field and inside its type."""
    return ", ".join(_constraints(field.metadata) + _nested_constraints(field.annotation))


def type_text(annotation: Any) -> str:
    """The type as a reader writes it: `float`, `int | None`, `'auto' | bool`."""
    origin = get_origin(annotation)
    args = get_args(annotation)
    if origin is Annotated:
        return type_text(args[0])
    if origin is Literal:
        return " | ".join(repr(arg) for arg in args)
    if origin in (Union, types.UnionType):
        return " | ".join(type_text(arg) for arg in args)
    if annotation is type(None):
        return "None"
    if origin is not None:
        inner = ", ".join("..." if arg is Ellipsis else type_text(arg) for arg in args)
        return f"{getattr(origin, '__name__', str(origin))}[{inner}]"
    return getattr(annotation, "__name__", str(annotation))


def _help(field: FieldInfo) -> str:
    text = field.description or ""
    bounds = bounds_text(field)
    if bounds:
        text += f" ({bounds})"
    if not field.is_required():
        text += f" [default: {field.get_default(call_default_factory=True)!r}]"
    if not is_scalar(field.annotation):
        text += " (JSON)"
    return text.replace("%", "%%")  # argparse formats help with %


def params_parser(
    schema: type[BaseModel], prog: str, description: str | None
) -> argparse.ArgumentParser:
    """One `--name` per field; a flag left out takes the schema's default."""
    parser = argparse.ArgumentParser(
        prog=prog, description=description, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    for name, field in flags(schema).items():
        parser.add_argument(
            f"--{name}",
            required=field.is_required(),
            default=argparse.SUPPRESS,
            metavar=name.upper(),
            help=_help(field),
        )
    return parser


def flags(schema: type[BaseModel]) -> dict[str, FieldInfo]:
    """Flag name (a field's alias, else its name) -> field, in declaration order."""
    return {field.alias or name: field for name, field in schema.model_fields.items()}


def _shown(value: Any) -> Any:
    if isinstance(value, str) and credentials_in(value):
        return redact_url(value)
    return value


def parse_params(schema: type[Params], args: argparse.Namespace) -> Params:
    """The validated parameters; a ConfigurationError naming each bad flag otherwise."""
    values: dict[str, Any] = {}
    fields = flags(schema)
    for name, text in vars(args).items():
        field = fields[name]
        if is_scalar(field.annotation):
            values[name] = text
            continue
        try:
            values[name] = json.loads(text)
        except ValueError as error:
            raise ConfigurationError(
                f"--{name} must be JSON ({error}), got {_shown(text)!r}"
            ) from None
    try:
        return schema.model_validate(values)
    except ValidationError as error:
        problems = []
        for problem in error.errors():
            message = problem["msg"].removeprefix("Value error, ")
            if not problem["loc"]:  # a rule across parameters: it names them itself
                problems.append(message)
                continue
            where = ".".join(str(part) for part in problem["loc"])
            problems.append(f"--{where}: {message} (got {_shown(problem.get('input'))!r})")
        raise ConfigurationError("; ".join(problems)) from None


def with_params(
    schema: type[Params], main: Callable[[Params], None]
) -> Callable[[argparse.Namespace], None]:
    """`main` called with the validated parameters, inside the entry point's failure handling."""

    def run(args: argparse.Namespace) -> None:
        main(parse_params(schema, args))

    return run
