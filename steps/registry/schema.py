"""The parameters of the registry entry points, promote and rollback.

`PromotionSettings` is also the `promotion` section of the pipeline's configuration
(orchestration/config.py); the registered model's name is the `main` section's `registered_model`.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import ConfigDict, Field, model_validator

from steps.common.settings import NAME_PATTERN, RegistryName, Settings

Metric = Literal["test_mae", "test_rmse", "test_r2"]
Direction = Literal["minimize", "maximize"]


def registered_model_field() -> Any:
    """The registered model's name: a field of promote's, rollback's and the `main` section's
    schemas, declared once here."""
    return Field(
        default="housing_price",
        pattern=NAME_PATTERN,
        description="The registered model the pipeline promotes into (and rolls back).",
    )


class MetricBounds(Settings):
    """Absolute bounds on one test metric; either may be absent."""

    model_config = ConfigDict(allow_inf_nan=False)

    min: float | None = Field(default=None, description="The metric must be at least this.")
    max: float | None = Field(default=None, description="The metric must be at most this.")


class LockSettings(Settings):
    """The registered model's promotion lock (docs/promotion-lock.md), shared by promote and
    rollback: they run one at a time for every promoter that shares the tracking store."""

    lock_timeout_s: float = Field(
        default=900,
        gt=0,
        description="Give up waiting for the promotion lock after this many seconds.",
    )
    lock_lease_s: float = Field(
        default=30,
        ge=2,
        le=60,
        description="A holder silent (no heartbeat) for this long is dead: its claim is reclaimed.",
    )


class Aliases(Settings):
    """The two aliases a promotion moves."""

    alias: RegistryName = Field(
        default="champion", description="The alias of the model that serves."
    )
    challenger_alias: RegistryName = Field(
        default="challenger",
        description=(
            "The alias of the latest candidate that passed the gate (removed from a rollback's "
            "target, which becomes the champion)."
        ),
    )
    use_stages: bool = Field(
        default=False,
        description="Also move the champion to the deprecated 'Production' stage (older clients).",
    )

    @model_validator(mode="after")
    def _distinct_aliases(self) -> Aliases:
        if self.alias == self.challenger_alias:
            raise ValueError("alias and challenger_alias must differ")
        return self


_GATE: dict[Metric, MetricBounds] = {"test_r2": MetricBounds(min=0.3)}


class PromotionSettings(LockSettings, Aliases):
    """Champion/challenger: the candidate passes the gate, takes the challenger alias, and takes
    the champion alias only if it beats the champion on the same test rows by the margin."""

    metric: Metric = Field(
        default="test_mae", description="The metric candidate and champion compete on."
    )
    direction: Direction = Field(
        default="minimize", description="Whether a lower metric is better."
    )
    min_relative_improvement: float = Field(
        default=0.0,
        ge=0,
        description="Relative margin: 0.01 means the candidate must be more than 1% better.",
    )
    gate: dict[Metric, MetricBounds] = Field(
        default_factory=lambda: _GATE,
        description="Absolute thresholds every candidate must meet (the first one too).",
    )
    ready_timeout_s: float = Field(
        default=300, gt=0, description="Most seconds to wait for a new model version to be READY."
    )
    dry_run: bool = Field(
        default=False,
        description=(
            "Reach the same verdict but register nothing and move no alias (the CI gate sets it "
            "off the main branch)."
        ),
    )

    def gate_bounds(self) -> dict[str, dict[str, float]]:
        return {
            metric: bounds.model_dump(exclude_none=True) for metric, bounds in self.gate.items()
        }


class PromoteParams(PromotionSettings):
    """Entry point `promote`."""

    model: str = Field(description="URI of train's model output (the candidate).")
    test_data: str = Field(description="URI of data_split's test_data output.")
    registered_model: str = registered_model_field()


class RollbackParams(LockSettings, Aliases):
    """Entry point `rollback` (run by flows/promotion.py, not a pipeline step)."""

    registered_model: str = registered_model_field()
    to_version: int = Field(
        default=0, ge=0, description="The version to restore; 0: the previous champion."
    )
