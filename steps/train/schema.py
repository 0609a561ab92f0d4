"""The parameters of entry point `train`: the split it learns from, the model's settings and,
in a hyperparameter search, the trial it reports its intermediate scores to."""

from __future__ import annotations

from pydantic import Field

from steps.common.settings import Settings
from steps.train.model_schemas import ModelSettings


class PruningSettings(Settings):
    """When a search's trial is stopped early (`sweep.optuna.pruning`): a model that fits in
    stages (its schema's STAGED_BY: trees or boosting iterations) reports its validation score
    after each stage, and stops when that score is worse than the given percentile of the same
    model's finished trials at the same stage."""

    enabled: bool = Field(default=True, description="Stop unpromising trials early.")
    stages: int = Field(
        default=5,
        ge=2,
        le=50,
        description="Stages a staged model fits in (equal shares of its trees or iterations).",
    )
    startup_trials: int = Field(
        default=4,
        ge=0,
        description="Finished trials of the same model needed before any of its trials is pruned.",
    )
    warmup_stages: int = Field(
        default=1, ge=0, description="Stages every trial completes before it may be pruned."
    )
    percentile: float = Field(
        default=50.0,
        gt=0,
        lt=100,
        description=(
            "A trial is pruned when its score is worse than this percentile of its peers' "
            "(50: the median)."
        ),
    )


class TrialTarget(PruningSettings):
    """The trial a train step reports to (empty `storage`: not a trial; it fits at once)."""

    storage: str = Field(default="", description="The study's database URL (no password).")
    study_name: str = Field(default="", description="The study's name.")
    trial_number: int = Field(default=-1, ge=-1, description="The trial's number in the study.")
    metric: str = Field(
        default="val_mae", min_length=1, description="The validation score the study optimizes."
    )

    @property
    def reports(self) -> bool:
        """Whether this fit is a trial that reports its intermediate scores."""
        return self.enabled and bool(self.storage) and self.trial_number >= 0


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
    trial: TrialTarget = Field(
        default_factory=TrialTarget,
        description=(
            "In a search (sweep.search=optuna): the study trial this fit reports its validation "
            "score to after each stage, and is pruned by; empty outside one."
        ),
    )
