"""The parameters of entry point `data_check`; `DataCheckSettings` is also the `data_check`
section of the pipeline's configuration (orchestration/config.py)."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, model_validator

from steps.common.bounds import CleaningBounds
from steps.common.settings import Settings

Borough = Literal["Bronx", "Brooklyn", "Manhattan", "Queens", "Staten Island"]

# Share of each borough in the public AB_NYC_2019 listing file.
AB_NYC_2019_SHARES: dict[Borough, float] = {
    "Manhattan": 0.443,
    "Brooklyn": 0.411,
    "Queens": 0.116,
    "Bronx": 0.022,
    "Staten Island": 0.008,
}


class DataCheckSettings(Settings):
    """The data contract's row window and the drift check on where the listings are."""

    min_rows: int = Field(
        default=500, ge=1, description="Fewest cleaned rows the pipeline trains on."
    )
    max_rows: int = Field(
        default=5_000_000, ge=1, description="Most cleaned rows the pipeline accepts."
    )
    kl_threshold: float = Field(
        default=0.2,
        gt=0,
        description=(
            "KL(observed || reference) of neighbourhood_group above this stops the pipeline."
        ),
    )
    reference_distribution: dict[Borough, Annotated[float, Field(ge=0)]] = Field(
        default_factory=lambda: dict(AB_NYC_2019_SHARES),
        description="Expected share of each borough (default: the public AB_NYC_2019 file's).",
    )

    @model_validator(mode="after")
    def _consistent(self) -> DataCheckSettings:
        if self.min_rows > self.max_rows:
            raise ValueError("min_rows must not exceed max_rows")
        if sum(self.reference_distribution.values()) <= 0:
            raise ValueError("reference_distribution needs at least one positive share")
        return self


class DataCheckParams(DataCheckSettings, CleaningBounds):
    """Entry point `data_check`: the contract, with the bounds basic_cleaning applied."""

    input_artifact: str = Field(description="URI of basic_cleaning's clean_data output.")
