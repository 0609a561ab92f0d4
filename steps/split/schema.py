"""The parameters of entry point `data_split`; `SplitSettings` is also the `split` section of the
pipeline's configuration (orchestration/config.py)."""

from __future__ import annotations

from pydantic import Field, model_validator

from steps.common.settings import Settings


class SplitSettings(Settings):
    """Stratified, seeded train/validation/test shares."""

    test_size: float = Field(
        default=0.2, gt=0, lt=1, description="Share of the rows held out for test."
    )
    val_size: float = Field(
        default=0.2, gt=0, lt=1, description="Share of the rows for validation."
    )
    seed: int = Field(
        default=42, ge=0, description="Seed of the split: the same seed, the same split."
    )
    stratify_by: str = Field(
        default="neighbourhood_group",
        min_length=1,
        description="Column whose mix every split keeps.",
    )

    @model_validator(mode="after")
    def _room_to_train(self) -> SplitSettings:
        if self.test_size + self.val_size >= 1:
            raise ValueError("test_size + val_size must leave rows to train on (sum below 1)")
        return self


class DataSplitParams(SplitSettings):
    """Entry point `data_split`."""

    input_artifact: str = Field(description="URI of basic_cleaning's clean_data output.")
