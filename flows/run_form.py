"""The training flow's typed parameters (the Prefect UI's *Custom run* form) and the Hydra
overrides they stand for.

Every field here is derived from the configuration's own schemas (their types, bounds and
descriptions), never written out again: the model is a choice among the model schemas, each
model's hyperparameters are its schema's fields made optional, the steps are an array of the
step table's names. A field left unset (None) means "conf/'s value", so a deployment or a
command line that sets none of them runs exactly as before. `RunForm.overrides()` turns the
set fields into Hydra overrides, applied before the escape-hatch `overrides` and validated by
`load_config` like any other.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    TypeAdapter,
    ValidationError,
    create_model,
    model_validator,
)
from pydantic.fields import FieldInfo

from orchestration.config import ConfigError, DataConfig, MainConfig
from orchestration.step_table import STEP_NAMES
from steps.common.url_secrets import CREDENTIAL_QUERY_KEYS, refusal
from steps.train.model_schemas import MODEL_SCHEMAS

_FROZEN = ConfigDict(extra="forbid", frozen=True)
# The discriminator every model schema carries: chosen by `model`, not a hyperparameter.
_MODEL_KEY = "name"


def _omit_null(schema: dict[str, Any]) -> None:
    """Show an optional field as the field itself: no "None" branch to pick in the form and no
    null default, so a field left empty is left out of the run's parameters (None: conf/'s)."""
    branches = schema.get("anyOf")
    if isinstance(branches, list):
        kept = [branch for branch in branches if branch != {"type": "null"}]
        if len(kept) == 1:
            del schema["anyOf"]
            schema.update(kept[0])
        else:
            schema["anyOf"] = kept
    if "default" in schema and schema["default"] is None:
        del schema["default"]


def unset_means_conf(annotation: Any) -> Any:
    """`annotation`, optional, None meaning conf/'s value (and shown as the plain field)."""
    return Annotated[annotation | None, Field(json_schema_extra=_omit_null)]


def _filled_in_untouched(annotation: Any) -> bool:
    """Whether Prefect's form sends a value for this field when nobody touched it: a switch
    sends false, a const branch its constant. Such a field keeps its "None" choice, chosen by
    default, so that leaving it alone keeps conf/'s value."""
    schema = json.dumps(TypeAdapter(annotation).json_schema())
    return '"boolean"' in schema or '"const"' in schema


def _optional(key: str, field: FieldInfo) -> tuple[Any, Any]:
    """`field` as an optional form field: its type and bounds, its description, default None."""
    annotation: Any = field.annotation
    if field.metadata:
        annotation = Annotated[(annotation, *field.metadata)]
    shown = annotation | None if _filled_in_untouched(annotation) else unset_means_conf(annotation)
    return shown, Field(default=None, title=key, description=field.description)


def _hyperparameters_form(name: str, schema: type[BaseModel]) -> type[BaseModel]:
    """One model's hyperparameters as a form section: every field of its schema, optional."""
    fields = {
        key: _optional(key, field)
        for key, field in schema.model_fields.items()
        if key != _MODEL_KEY
    }
    return create_model(  # type: ignore[call-overload]
        f"{schema.__name__.removesuffix('Config')}Hyperparameters",
        __config__=ConfigDict(extra="forbid", frozen=True, title=name),
        __doc__=f"{name}'s hyperparameters; a field left empty keeps conf/model/{name}.yaml's.",
        **fields,
    )


HYPERPARAMETER_FORMS: dict[str, type[BaseModel]] = {
    name: _hyperparameters_form(name, schema) for name, schema in MODEL_SCHEMAS.items()
}


def _build_model_hyperparameters() -> type[BaseModel]:
    fields: dict[str, Any] = {
        name: (unset_means_conf(form), Field(default=None, title=name))
        for name, form in HYPERPARAMETER_FORMS.items()
    }
    return create_model(
        "ModelHyperparameters",
        __config__=_FROZEN,
        __doc__="Hyperparameters of the model the run trains: fill in that model's section only.",
        **fields,
    )


def _credential_free_pattern() -> str:
    """A JSON-schema pattern that refuses a source carrying credentials written out, so the
    Prefect server rejects it before it stores the run's parameters: user info in the URL or a
    query key of `CREDENTIAL_QUERY_KEYS` (in any case). Valid in Python and in ECMAScript's
    unicode mode alike (the UI's checks); the pydantic check (`refusal`) has the last word."""

    def any_case(word: str) -> str:
        return "".join(
            f"[{c.lower()}{c.upper()}]" if c.isalpha() else c if c in "-_" else re.escape(c)
            for c in word
        )

    keys = "|".join(any_case(key) for key in sorted(CREDENTIAL_QUERY_KEYS))
    user_info = r"[A-Za-z][A-Za-z0-9+.-]*://[^/?#]*@"
    query_key = rf"[^?#]*\?(?:[^#]*&)?(?:{keys})(?:[=&#]|$)"
    return rf"^(?!{user_info})(?!{query_key})"


def _refuse_credentials(value: str) -> str:
    """data.source's own rule (the rest of DataConfig's checks run in load_config)."""
    refused = refusal("data_source", value)
    if refused:
        raise ValueError(refused)
    return value


def _field_type(schema: type[BaseModel], key: str) -> Any:
    """A configuration field's type with its bounds, for a form field of the same meaning."""
    field = schema.model_fields[key]
    return Annotated[(field.annotation, *field.metadata)] if field.metadata else field.annotation


# The flow's parameter types, each optional (None: conf/'s value; Prefect's form shows them with
# a "None" choice, its usual rendering of an optional parameter). mypy sees plain types; at run
# time they carry the schemas' choices and bounds, from which Prefect builds the form.
if TYPE_CHECKING:
    ModelChoice = str | None
    StepsChoice = list[str] | None
    Hyperparameters = BaseModel | None
    DataSource = str | None
    ExperimentName = str | None
    RegisteredModel = str | None
else:
    ModelChoice = Literal[tuple(MODEL_SCHEMAS)] | None
    StepsChoice = list[Literal[STEP_NAMES]] | None
    Hyperparameters = _build_model_hyperparameters() | None
    DataSource = (
        Annotated[
            _field_type(DataConfig, "source"),
            Field(json_schema_extra={"pattern": _credential_free_pattern()}),
            AfterValidator(_refuse_credentials),
        ]
        | None
    )
    ExperimentName = _field_type(MainConfig, "experiment_name") | None
    RegisteredModel = _field_type(MainConfig, "registered_model") | None


class RunForm(BaseModel):
    """The typed parameters of one run, checked together (a model's section needs that model)."""

    model_config = _FROZEN

    model: ModelChoice = None
    hyperparameters: Hyperparameters = None
    data_source: DataSource = None
    steps: StepsChoice = None
    experiment_name: ExperimentName = None
    registered_model: RegisteredModel = None

    def sections(self) -> dict[str, dict[str, Any]]:
        """The hyperparameter sections that set something: model -> {key: value}."""
        if self.hyperparameters is None:
            return {}
        found = {}
        for name in HYPERPARAMETER_FORMS:
            section = getattr(self.hyperparameters, name)
            values = {} if section is None else section.model_dump(exclude_none=True)
            if values:
                found[name] = values
        return found

    @model_validator(mode="after")
    def _one_model(self) -> RunForm:
        sections = self.sections()
        if len(sections) > 1:
            raise ValueError(
                f"hyperparameters are given for {', '.join(sections)}: fill in the section "
                "of the model the run trains only"
            )
        if sections and self.model is not None and self.model not in sections:
            raise ValueError(
                f"hyperparameters are given for {next(iter(sections))}, but model is "
                f"{self.model}: choose model {next(iter(sections))} or fill in {self.model}'s "
                "section"
            )
        return self

    def overrides(self) -> list[str]:
        """The Hydra overrides these fields stand for (none for a field left unset); a model's
        section implies that model."""
        sections = self.sections()
        model = self.model or next(iter(sections), None)
        result = [] if model is None else [f"model={model}"]
        for key, value in sections.get(model or "", {}).items():
            result.append(f"model.{key}={hydra_value(value)}")
        if self.data_source is not None:
            result.append(f"data.source={hydra_value(self.data_source)}")
        if self.steps is not None:
            chosen = [step for step in STEP_NAMES if step in self.steps]
            result.append(f"main.steps=[{','.join(chosen)}]")
        if self.experiment_name is not None:
            result.append(f"main.experiment_name={hydra_value(self.experiment_name)}")
        if self.registered_model is not None:
            result.append(f"main.registered_model={hydra_value(self.registered_model)}")
        return result


def hydra_value(value: Any) -> str:
    """`value` in Hydra's override grammar: a string quoted (so '=', spaces and commas stay
    part of it; `${oc.env:NAME}` references are still resolved by OmegaConf), numbers and
    booleans as Hydra reads them."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    # Hydra reads a backslash as an escape only before a quote (the closing one included).
    text = re.sub(r"(\\+)(?='|$)", lambda run: run.group(1) * 2, str(value))
    return "'" + text.replace("'", "\\'") + "'"


def run_overrides(fields: Mapping[str, Any], overrides: Sequence[str] | None) -> list[str]:
    """The typed fields' overrides first, then the escape hatch's (which win on a clash);
    ConfigError, before any work, when the fields do not go together."""
    try:
        form = RunForm.model_validate(dict(fields))
    except ValidationError as error:
        problems = "; ".join(
            f"{'.'.join(str(part) for part in problem['loc']) or 'parameters'}: "
            + problem["msg"].removeprefix("Value error, ")
            for problem in error.errors()
        )
        raise ConfigError(f"invalid run parameters: {problems}") from None
    return [*form.overrides(), *(overrides or [])]
