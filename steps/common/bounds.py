"""The price and position bounds: basic_cleaning applies them, data_check verifies them again.

One schema for both steps, so the two can never disagree on what a valid listing is.
"""

from __future__ import annotations

from pydantic import ConfigDict, Field, model_validator

from steps.common.settings import Settings


class CleaningBounds(Settings):
    """Rows outside these inclusive bounds (or missing the value) are dropped by basic_cleaning
    and refused by data_check."""

    model_config = ConfigDict(allow_inf_nan=False)

    min_price: float = Field(
        default=10, ge=0, description="Lowest nightly price kept (USD, inclusive)."
    )
    max_price: float = Field(
        default=350, gt=0, description="Highest nightly price kept (USD, inclusive)."
    )
    min_longitude: float = Field(
        default=-74.25, ge=-180, le=180, description="West edge of the NYC bounding box (degrees)."
    )
    max_longitude: float = Field(
        default=-73.50, ge=-180, le=180, description="East edge of the NYC bounding box (degrees)."
    )
    min_latitude: float = Field(
        default=40.50, ge=-90, le=90, description="South edge of the NYC bounding box (degrees)."
    )
    max_latitude: float = Field(
        default=40.92, ge=-90, le=90, description="North edge of the NYC bounding box (degrees)."
    )

    @model_validator(mode="after")
    def _ordered(self) -> CleaningBounds:
        for low, high in (
            ("min_price", "max_price"),
            ("min_longitude", "max_longitude"),
            ("min_latitude", "max_latitude"),
        ):
            if getattr(self, low) >= getattr(self, high):
                raise ValueError(f"{low} must be below {high}")
        return self

    def bounds(self) -> dict[str, float]:
        """The bounds alone, without what a subclass adds (data_check takes these only)."""
        return self.model_dump(include=set(CleaningBounds.model_fields))
