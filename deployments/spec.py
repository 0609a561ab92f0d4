"""The deployments of the pipeline, read from conf/deployments.yaml and validated.

`python -m deployments.serve` and `prefect.yaml` (written by `python -m deployments.render`) are
both built from `load_deployments()`, so schedules and parameters have one source.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Literal
from zoneinfo import ZoneInfo, available_timezones

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from flows.run_form import RunForm, run_overrides
from orchestration.config import CONF_DIR, ConfigError, load_config

DEPLOYMENTS_FILE = CONF_DIR / "deployments.yaml"
PROJECT_ROOT = CONF_DIR.parent
# The flow every deployment runs, as a file path (prefect.yaml) and as a module path (serve).
FLOW_FILE_ENTRYPOINT = "flows/train_pipeline.py:train_pipeline"
FLOW_MODULE_ENTRYPOINT = "flows.train_pipeline.train_pipeline"
_NAME = r"^[a-z0-9][a-z0-9_\-]*$"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Defaults(_Strict):
    timezone: str = "UTC"
    concurrency_limit: Annotated[int, Field(ge=1)] = 1
    collision_strategy: Literal["CANCEL_NEW", "ENQUEUE"] = "CANCEL_NEW"
    work_pool: Annotated[str, Field(pattern=_NAME)] = "local-process"


class _Entry(_Strict):
    name: Annotated[str, Field(pattern=_NAME)]
    description: str = ""
    cron: str
    timezone: str | None = None
    models: list[str] | None = None
    # The flow's typed parameters (flows/run_form.py), as the UI's Custom run form has them.
    parameters: RunForm = RunForm()
    overrides: list[str] = []
    tags: list[str] = []

    @field_validator("cron")
    @classmethod
    def _check_cron(cls, value: str) -> str:
        from prefect.client.schemas.schedules import CronSchedule

        CronSchedule(cron=value)  # raises on a bad expression
        return value


class DeploymentSpec(_Strict):
    """One deployment of train_pipeline: its schedule and its parameters."""

    name: str
    description: str
    cron: str
    timezone: str
    form: RunForm
    overrides: list[str]
    tags: list[str]
    concurrency_limit: int
    collision_strategy: Literal["CANCEL_NEW", "ENQUEUE"]
    work_pool: str

    @field_validator("timezone")
    @classmethod
    def _check_timezone(cls, value: str) -> str:
        if value not in available_timezones():
            raise ValueError(f"unknown timezone {value!r}; use an IANA name like 'Europe/Paris'")
        ZoneInfo(value)
        return value

    @property
    def parameters(self) -> dict[str, Any]:
        """The flow run's parameters: the typed ones set, then the escape-hatch overrides."""
        typed = self.form.model_dump(mode="json", exclude_none=True)
        return typed | {"overrides": list(self.overrides)}

    @property
    def config_overrides(self) -> list[str]:
        """What the flow hands load_config for these parameters (typed first)."""
        return run_overrides(self.form.model_dump(exclude_none=True), self.overrides)


class DeploymentsFileError(ValueError):
    """conf/deployments.yaml is malformed or names parameters the pipeline rejects."""


def load_deployments(path: Path = DEPLOYMENTS_FILE, validate: bool = True) -> list[DeploymentSpec]:
    """Every deployment in `path`, `models:` lists expanded; parameters checked by load_config."""
    raw = yaml.safe_load(path.read_text()) or {}
    try:
        defaults = Defaults.model_validate(raw.get("defaults") or {})
        entries = [_Entry.model_validate(item) for item in raw.get("deployments") or []]
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


def _expand(entry: _Entry, defaults: Defaults) -> list[DeploymentSpec]:
    common: dict[str, Any] = {
        "description": entry.description,
        "cron": entry.cron,
        "timezone": entry.timezone or defaults.timezone,
        "tags": list(entry.tags),
        "concurrency_limit": defaults.concurrency_limit,
        "collision_strategy": defaults.collision_strategy,
        "work_pool": defaults.work_pool,
    }
    if entry.models is None:
        return [
            DeploymentSpec(
                name=entry.name, form=entry.parameters, overrides=list(entry.overrides), **common
            )
        ]
    if entry.parameters.model is not None:
        raise DeploymentsFileError(
            f"deployment {entry.name}: give the model in `models:` or in `parameters.model`, "
            "not both"
        )
    return [
        DeploymentSpec(
            name=f"{entry.name}-{model.replace('_', '-')}",
            form=RunForm.model_validate(
                entry.parameters.model_dump(exclude_none=True) | {"model": model}
            ),
            overrides=list(entry.overrides),
            **common | {"tags": [*entry.tags, model]},
        )
        for model in entry.models
    ]
