"""The parameters of entry point `score`; `ScoringSettings` is also the `scoring` section of the
pipeline's configuration (orchestration/config.py).

`score` prices listings with a registered version of the model (the champion by default) and
measures how far they are from that version's training data (docs/scoring.md).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import Field, field_validator

from steps.common.settings import RegistryName, Settings
from steps.registry.schema import registered_model_field


def drift_threshold_field() -> Any:
    """The PSI above which a feature counts as drifted: a field of the `scoring` section and of
    the entry point, declared once here."""
    return Field(
        default=0.25,
        gt=0,
        le=10,
        description=(
            "A feature whose PSI against the training data is above this has drifted (0.1: a "
            "moderate shift, 0.25: a significant one, the usual reading)."
        ),
    )


class ScoringSettings(Settings):
    """Scoring listings with the champion (python -m flows.score) and the drift check."""

    output: str | None = Field(
        default=None,
        description=(
            "Also write the predictions (Parquet: id, predicted_price, model_version) to this "
            "path; a relative one is taken from where the command was started. null: only the "
            "scoring run's artifact."
        ),
    )
    alias: RegistryName | None = Field(
        default=None,
        description="The alias of the version that scores; null: promotion.alias (the champion).",
    )
    drift_threshold: float = drift_threshold_field()
    experiment_name: str | None = Field(
        default=None,
        min_length=1,
        description=(
            "The MLflow experiment of the scoring runs; null: main.experiment_name + '-scoring' "
            "(kept apart, so a partial pipeline never reuses a scoring input as training data)."
        ),
    )

    @field_validator("output")
    @classmethod
    def _plain_path(cls, value: str | None) -> str | None:
        if value is not None and (not value.strip() or "://" in value):
            raise ValueError("output is a local file path (e.g. predictions.parquet), or null")
        return value

    def resolved_output(self, base: Path) -> str:
        """The output as an absolute path ("" for none): a relative one is taken from `base`,
        the directory the command was started in."""
        if self.output is None:
            return ""
        return str((base / Path(self.output).expanduser()).resolve())


class ScoreParams(Settings):
    """Entry point `score` (run by flows/score.py, not a pipeline step)."""

    input_artifact: str = Field(description="URI of get_data's raw_data output: the listings.")
    registered_model: str = registered_model_field()
    alias: RegistryName = Field(
        default="champion", description="The alias of the registered version that scores."
    )
    output: str = Field(
        default="",
        description=(
            "An absolute path the predictions are also written to (atomically); empty: none."
        ),
    )
    drift_threshold: float = drift_threshold_field()

    @field_validator("output")
    @classmethod
    def _absolute(cls, value: str) -> str:
        if value and not Path(value).is_absolute():
            raise ValueError("output must be an absolute path (the flow resolves a relative one)")
        return value
