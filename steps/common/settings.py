"""The base of every settings schema: the one place a setting's name, type, bounds, default and
description are written.

Each entry point declares its parameters as a subclass beside its code; the pipeline's
configuration (orchestration/config.py) is composed of the same classes, MLproject is generated
from them (`python -m steps.mlproject`) and so is docs/configuration.md
(`python -m orchestration.config_reference`).
"""

from __future__ import annotations

from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field

# A registered model's or alias's name: what MLflow's registry accepts in a URI.
NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.\-]*$"
RegistryName = Annotated[str, Field(pattern=NAME_PATTERN)]


class Settings(BaseModel):
    """Unknown keys are errors (a typo must not be silently ignored); values never change."""

    model_config = ConfigDict(extra="forbid", frozen=True)
