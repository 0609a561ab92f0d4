"""Write docs/configuration.md from the schemas.

`python -m orchestration.config_reference [--check]`.

One table per section of the configuration (and one per model of conf/model/): key, type,
bounds, default, description, all read from the pydantic schemas that validate them, so the
reference cannot drift from the code. `--check` writes nothing and exits 1 when the file is stale.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path

from pydantic import BaseModel
from pydantic.fields import FieldInfo

from orchestration.config import PipelineConfig
from steps.common.generated_file import generated_file_main
from steps.common.params_cli import bounds_text, type_text
from steps.train.model_schemas import MODEL_SCHEMAS

REFERENCE = Path(__file__).resolve().parents[1] / "docs" / "configuration.md"

_HEADER = """\
# Configuration reference

Generated from the schemas by `python -m orchestration.config_reference`; edit the schemas, not this
file. Each setting is declared once, next to the code that uses it: the steps' in
`steps/*/schema.py` and `steps/train/model_schemas.py`, the flow's in `orchestration/config.py`.
`conf/config.yaml` and `conf/model/*.yaml` hold only the values that differ from these defaults;
override any key on the command line, e.g.
`python -m flows.train_pipeline model=random_forest model.n_estimators=300 cleaning.max_price=500`.
"""


def _nested_schema(field: FieldInfo) -> type[BaseModel] | None:
    annotation = field.annotation
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    return None


def _default_text(field: FieldInfo) -> str:
    if field.is_required():
        return "required"
    value = field.get_default(call_default_factory=True)
    if isinstance(value, BaseModel):
        value = value.model_dump(mode="json", exclude_none=True)
    elif isinstance(value, dict):
        value = {
            key: item.model_dump(mode="json", exclude_none=True)
            if isinstance(item, BaseModel)
            else item
            for key, item in value.items()
        }
    return json.dumps(value, sort_keys=True) if not isinstance(value, str) else value


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def table(schema: type[BaseModel], skip: Sequence[str] = ()) -> list[str]:
    rows = ["| key | type | bounds | default | description |", "|---|---|---|---|---|"]
    for name, field in schema.model_fields.items():
        if name in skip or _nested_schema(field) is not None:
            continue
        cells = (
            f"`{name}`",
            f"`{type_text(field.annotation)}`",
            bounds_text(field),
            f"`{_default_text(field)}`",
            field.description or "",
        )
        rows.append("| " + " | ".join(_cell(cell) for cell in cells) + " |")
    return rows


def sections(schema: type[BaseModel], prefix: str) -> Iterator[tuple[str, type[BaseModel]]]:
    """`prefix` and every nested section under it, depth first, in declaration order."""
    yield prefix, schema
    for name, field in schema.model_fields.items():
        nested = _nested_schema(field)
        if nested is not None:
            yield from sections(nested, f"{prefix}.{name}")


def _doc(schema: type[BaseModel]) -> str:
    return " ".join((schema.__doc__ or "").split())


def render() -> str:
    parts = [_HEADER]
    for name, field in PipelineConfig.model_fields.items():
        if name == "model":
            continue
        nested = _nested_schema(field)
        assert nested is not None, name
        for path, schema in sections(nested, name):
            parts += [f"\n## `{path}`\n", _doc(schema), "", *table(schema)]
    parts.append("\n## `model`\n")
    parts.append(
        "`model=NAME` picks one of `conf/model/`; its settings are then `model.KEY`. "
        "The schemas: `steps/train/model_schemas.py`."
    )
    for name, schema in MODEL_SCHEMAS.items():
        parts += [f"\n### `model={name}`\n", _doc(schema), "", *table(schema, skip=("name",))]
    return "\n".join(parts) + "\n"


def main(argv: Sequence[str] | None = None) -> int:
    return generated_file_main(
        argv,
        prog="python -m orchestration.config_reference",
        description=__doc__,
        output=REFERENCE,
        render=render,
    )


if __name__ == "__main__":
    sys.exit(main())
