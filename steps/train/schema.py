"""The parameters of entry point `train`: the split it learns from and the model's settings."""

from __future__ import annotations

from pydantic import Field

from steps.common.settings import Settings
from steps.train.model_schemas import ModelSettings


class TrainParams(Settings):
    """Entry point `train`."""

    train_data: str = Field(description="URI of data_split's train_data output.")
    val_data: str = Field(description="URI of data_split's val_data output.")
    # On the command line --model_config (the name MLproject has always used; pydantic keeps
    # `model_config` for itself).
    model: ModelSettings = Field(
        alias="model_config",
        description="The model section of the configuration: one of conf/model/ with its settings.",
    )
