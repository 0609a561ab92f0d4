"""The deployments of the project's flows, read from conf/deployments.yaml and validated.

`python -m deployments.serve` and `prefect.yaml` (written by `python -m deployments.render`) are
both built from `load_deployments()`, so schedules, event triggers and parameters have one
source. A deployment runs one flow of `DEPLOYABLE_FLOWS`, on a cron, on Prefect events, or both.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Literal
from zoneinfo import ZoneInfo, available_timezones

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from flows.run_form import RunForm, run_overrides
from orchestration.config import CONF_DIR, ConfigError, load_config
from orchestration.events import (
    DATA_ARRIVED,
    EVENT_NAMES,
    RESOURCE_PREFIX,
    TRIGGER_PARAMETERS,
    ListingsEvent,
    ListingsObject,
)

DEPLOYMENTS_FILE = CONF_DIR / "deployments.yaml"
PROJECT_ROOT = CONF_DIR.parent
_NAME = r"^[a-z0-9][a-z0-9_\-]*$"
CollisionStrategy = Literal["CANCEL_NEW", "ENQUEUE"]


@dataclass(frozen=True)
class DeployableFlow:
    """A flow a deployment may run, known by where it lives (never imported here)."""

    name: str  # the Prefect flow's name, also its function's
    module: str  # e.g. "flows.score"
    # Whether it takes the typed parameters of flows/run_form.py (a deployment's `parameters:`).
    typed_form: bool = False
    # The parameters an event trigger fills in from the event (Jinja templates); none: the flow
    # cannot be run by an event trigger.
    trigger_parameters: Mapping[str, str] = field(default_factory=dict)

    @property
    def file_entrypoint(self) -> str:
        """As prefect.yaml names it: a file of the project root and the function."""
        return f"{self.module.replace('.', '/')}.py:{self.name}"

    @property
    def module_entrypoint(self) -> str:
        """As deployments.serve registers it: importable from any working directory."""
        return f"{self.module}.{self.name}"


DEPLOYABLE_FLOWS: dict[str, DeployableFlow] = {
    flow.name: flow
    for flow in (
        DeployableFlow("train_pipeline", "flows.train_pipeline", typed_form=True),
        DeployableFlow(
            "retrain_on_new_data",
            "flows.retrain_on_new_data",
            trigger_parameters=TRIGGER_PARAMETERS,
        ),
        DeployableFlow("score", "flows.score"),
        DeployableFlow("watch_sources", "flows.watch_sources"),
    )
}
DEFAULT_FLOW = "train_pipeline"


def event_labels() -> tuple[str, ...]:
    """The resource labels every event of orchestration/events.py carries: what a trigger's
    `match:` may name (a label no event has would never match, silently)."""
    sample = ListingsEvent(DATA_ARRIVED, ListingsObject("sample.csv", "0"), "upload")
    return tuple(sample.resource())


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Defaults(_Strict):
    timezone: str = "UTC"
    concurrency_limit: Annotated[int, Field(ge=1)] = 1
    collision_strategy: CollisionStrategy = "CANCEL_NEW"
    work_pool: Annotated[str, Field(pattern=_NAME)] = "local-process"


class EventTriggerSpec(_Strict):
    """Run the deployment on each event of this name whose resource has these labels."""

    event: str
    # label -> value (or values, any of which matches); a trailing '*' is a wildcard.
    match: dict[str, str | list[str]] = {}

    @field_validator("event")
    @classmethod
    def _known_event(cls, value: str) -> str:
        if value not in EVENT_NAMES:
            raise ValueError(
                f"unknown event {value!r}; the pipeline's events are {', '.join(EVENT_NAMES)}"
            )
        return value

    @field_validator("match", mode="before")
    @classmethod
    def _labels_are_text(cls, value: Any) -> Any:
        """YAML reads an unquoted true as a boolean; labels are text ("true")."""
        if not isinstance(value, dict):
            return value

        def text(item: Any) -> Any:
            return ("true" if item else "false") if isinstance(item, bool) else item

        return {
            key: [text(item) for item in item_or_items]
            if isinstance(item_or_items, list)
            else text(item_or_items)
            for key, item_or_items in value.items()
        }

    @field_validator("match")
    @classmethod
    def _known_labels(cls, value: dict[str, str | list[str]]) -> dict[str, str | list[str]]:
        known = event_labels()
        unknown = [label for label in value if label not in known]
        if unknown:
            raise ValueError(
                f"label {unknown[0]!r} is on no event of the pipeline; match one of "
                f"{', '.join(known)}"
            )
        return value

    def resource_match(self) -> dict[str, str | list[str]]:
        """What the trigger matches: any of the pipeline's listings objects, then the labels."""
        return {"prefect.resource.id": RESOURCE_PREFIX + "*", **self.match}


class _Entry(_Strict):
    name: Annotated[str, Field(pattern=_NAME)]
    flow: str = DEFAULT_FLOW
    description: str = ""
    cron: str | None = None
    timezone: str | None = None
    triggers: list[EventTriggerSpec] = []
    models: list[str] | None = None
    # train_pipeline's typed parameters (flows/run_form.py), as the UI's Custom run form has them.
    parameters: RunForm | None = None
    overrides: list[str] = []
    tags: list[str] = []
    collision_strategy: CollisionStrategy | None = None
    concurrency_limit: Annotated[int, Field(ge=1)] | None = None

    @field_validator("flow")
    @classmethod
    def _known_flow(cls, value: str) -> str:
        if value not in DEPLOYABLE_FLOWS:
            raise ValueError(
                f"unknown flow {value!r}; deployable flows: {', '.join(DEPLOYABLE_FLOWS)}"
            )
        return value

    @field_validator("cron")
    @classmethod
    def _check_cron(cls, value: str | None) -> str | None:
        from prefect.client.schemas.schedules import CronSchedule

        if value is not None:
            CronSchedule(cron=value)  # raises on a bad expression
        return value


class DeploymentSpec(_Strict):
    """One deployment of one flow: its schedule, its event triggers and its parameters."""

    name: str
    flow: str
    description: str
    cron: str | None
    timezone: str
    triggers: tuple[EventTriggerSpec, ...] = ()
    # train_pipeline's typed parameters; None for a flow that takes `overrides` only.
    form: RunForm | None = None
    overrides: list[str]
    tags: list[str]
    concurrency_limit: int
    collision_strategy: CollisionStrategy
    work_pool: str

    @field_validator("timezone")
    @classmethod
    def _check_timezone(cls, value: str) -> str:
        if value not in available_timezones():
            raise ValueError(f"unknown timezone {value!r}; use an IANA name like 'Europe/Paris'")
        ZoneInfo(value)
        return value

    @property
    def deployable(self) -> DeployableFlow:
        return DEPLOYABLE_FLOWS[self.flow]

    @property
    def full_name(self) -> str:
        """`<flow>/<deployment>`, as `prefect deployment run` and run_deployment name it."""
        return f"{self.flow}/{self.name}"

    @property
    def parameters(self) -> dict[str, Any]:
        """The flow run's parameters: the typed ones set, then the escape-hatch overrides."""
        typed = {} if self.form is None else self.form.model_dump(mode="json", exclude_none=True)
        return typed | {"overrides": list(self.overrides)}

    @property
    def config_overrides(self) -> list[str]:
        """What the flow hands load_config for these parameters (typed first)."""
        if self.form is None:
            return list(self.overrides)
        return run_overrides(self.form.model_dump(exclude_none=True), self.overrides)

    def trigger_definitions(self) -> list[dict[str, Any]]:
        """The event triggers as Prefect reads them (prefect.yaml's `triggers:`, and
        DeploymentEventTrigger's fields for deployments.serve): each matching event runs the
        deployment once, with the flow's trigger parameters filled in from the event."""
        events = [trigger.event for trigger in self.triggers]
        definitions = []
        for index, trigger in enumerate(self.triggers, start=1):
            name = f"{self.name} on {trigger.event}"
            if events.count(trigger.event) > 1:
                name += f" ({index})"
            definitions.append(
                {
                    "type": "event",
                    "name": name,
                    "description": f"Runs {self.full_name} for each {trigger.event} event.",
                    "enabled": True,
                    "match": trigger.resource_match(),
                    "expect": [trigger.event],
                    "posture": "Reactive",
                    "threshold": 1,
                    "within": 0,
                    "parameters": dict(self.deployable.trigger_parameters),
                }
            )
        return definitions


class DeploymentsFileError(ValueError):
    """conf/deployments.yaml is malformed or names parameters the pipeline rejects."""


def load_deployments(path: Path = DEPLOYMENTS_FILE, validate: bool = True) -> list[DeploymentSpec]:
    """Every deployment in `path`, `models:` lists expanded; parameters checked by load_config."""
    raw = yaml.safe_load(path.read_text()) or {}
    try:
        defaults = Defaults.model_validate(raw.get("defaults") or {})
        entries = [_Entry.model_validate(item) for item in raw.get("deployments") or []]
        for entry in entries:
            _check_flow_keys(entry)
        specs = [spec for entry in entries for spec in _expand(entry, defaults)]
    except ValidationError as error:
        raise DeploymentsFileError(f"{path}: {error}") from None
    except DeploymentsFileError as error:
        raise DeploymentsFileError(f"{path}: {error}") from None
    names = [spec.name for spec in specs]
    if len(set(names)) != len(names):
        raise DeploymentsFileError(f"{path}: deployment names repeat: {names}")
    if validate:
        for spec in specs:
            try:
                load_config(spec.config_overrides)
            except ConfigError as error:
                raise DeploymentsFileError(f"{path}: deployment {spec.name}: {error}") from None
    return specs


def _check_flow_keys(entry: _Entry) -> None:
    """The keys that only some flows take, refused on the others with what to do instead."""
    flow = DEPLOYABLE_FLOWS[entry.flow]
    where = f"deployment {entry.name} (flow {flow.name})"
    if not flow.typed_form:
        for key in ("parameters", "models"):
            if getattr(entry, key) is not None:
                raise DeploymentsFileError(
                    f"{where}: `{key}:` is train_pipeline's only; give this flow's settings "
                    "as Hydra `overrides:`"
                )
    if entry.triggers and not flow.trigger_parameters:
        triggered = [name for name, f in DEPLOYABLE_FLOWS.items() if f.trigger_parameters]
        raise DeploymentsFileError(
            f"{where}: `triggers:` need a flow that takes an event's object as parameters "
            f"({', '.join(triggered)}); remove them, or give `cron:` to run it on a schedule"
        )


def _expand(entry: _Entry, defaults: Defaults) -> list[DeploymentSpec]:
    form = entry.parameters
    if form is None and DEPLOYABLE_FLOWS[entry.flow].typed_form:
        form = RunForm()
    common: dict[str, Any] = {
        "flow": entry.flow,
        "description": entry.description,
        "cron": entry.cron,
        "timezone": entry.timezone or defaults.timezone,
        "triggers": tuple(entry.triggers),
        "tags": list(entry.tags),
        "concurrency_limit": entry.concurrency_limit or defaults.concurrency_limit,
        "collision_strategy": entry.collision_strategy or defaults.collision_strategy,
        "work_pool": defaults.work_pool,
    }
    if entry.models is None:
        return [
            DeploymentSpec(name=entry.name, form=form, overrides=list(entry.overrides), **common)
        ]
    assert form is not None  # models: is train_pipeline's only (_check_flow_keys)
    if form.model is not None:
        raise DeploymentsFileError(
            f"deployment {entry.name}: give the model in `models:` or in `parameters.model`, "
            "not both"
        )
    return [
        DeploymentSpec(
            name=f"{entry.name}-{model.replace('_', '-')}",
            form=RunForm.model_validate(form.model_dump(exclude_none=True) | {"model": model}),
            overrides=list(entry.overrides),
            **common | {"tags": [*entry.tags, model]},
        )
        for model in entry.models
    ]
