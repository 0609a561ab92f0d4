"""The parameters of entry point `evaluate` (all fed from upstream steps)."""

from __future__ import annotations

from pydantic import Field

from steps.common.settings import Settings


class EvaluateParams(Settings):
    """Entry point `evaluate`."""

    model: str = Field(description="URI of train's model output.")
    test_data: str = Field(description="URI of data_split's test_data output.")
