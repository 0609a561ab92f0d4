"""The hyperparameter search's settings (`sweep.search=optuna`): the study, its trials and the
distributions each model's hyperparameters are drawn from.

A distribution is declared per model and hyperparameter in conf/sweep/*.yaml
(`sweep.optuna.space.MODEL.KEY`): an int range, a float range (log-scaled or not) or a list of
choices. Each is checked here, before any work, against the model's own schema
(steps/train/model_schemas.py): a key the model does not have, or a range that reaches outside
the hyperparameter's bounds or type, is refused with a message naming the key, so a trial can
never draw a value its model would refuse after minutes of training.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

from pydantic import Field, ValidationError, field_validator, model_validator

from steps.common.params_cli import bounds_text, type_text
from steps.common.settings import Settings
from steps.common.url_secrets import hide_password
from steps.train.model_schemas import MODEL_SCHEMAS
from steps.train.schema import PruningSettings

# The database families a study may live in: those of the tracking store (SQLite on one
# machine, PostgreSQL beside the shared server).
STORAGE_SCHEMES = ("sqlite", "postgresql", "postgresql+psycopg")


class IntRange(Settings):
    """Whole numbers from low to high (both included), every `step`-th, or log-uniform."""

    type: Literal["int"] = Field(description="int: a whole-number hyperparameter.")
    low: int = Field(description="Smallest value drawn.")
    high: int = Field(description="Largest value drawn.")
    step: int = Field(default=1, ge=1, description="Spacing of the values drawn (not with log).")
    log: bool = Field(default=False, description="Draw uniformly on a log scale (low >= 1).")

    @model_validator(mode="after")
    def _check(self) -> IntRange:
        if self.low > self.high:
            raise ValueError(f"low ({self.low}) is above high ({self.high})")
        if self.log and (self.low < 1 or self.step != 1):
            raise ValueError("a log-scaled int range needs low >= 1 and step 1")
        return self

    def ends(self) -> list[Any]:
        return [self.low, self.high]


class FloatRange(Settings):
    """Real numbers from low to high, uniform or log-uniform."""

    type: Literal["float"] = Field(description="float: a real-valued hyperparameter.")
    low: float = Field(description="Smallest value drawn.")
    high: float = Field(description="Largest value drawn.")
    log: bool = Field(default=False, description="Draw uniformly on a log scale (low > 0).")

    @model_validator(mode="after")
    def _check(self) -> FloatRange:
        if self.low > self.high:
            raise ValueError(f"low ({self.low:g}) is above high ({self.high:g})")
        if self.log and self.low <= 0:
            raise ValueError(f"a log-scaled float range needs low > 0 (got {self.low:g})")
        return self

    def ends(self) -> list[Any]:
        return [self.low, self.high]


class Choice(Settings):
    """One of the listed values (numbers, words, true/false or null)."""

    type: Literal["categorical"] = Field(description="categorical: one of `choices`.")
    choices: tuple[bool | int | float | str | None, ...] = Field(
        min_length=1, description="The values drawn from."
    )

    def ends(self) -> list[Any]:
        return list(self.choices)


Distribution = Annotated[IntRange | FloatRange | Choice, Field(discriminator="type")]
DISTRIBUTION_TYPES = ("int", "float", "categorical")


def check_distribution(model: str, key: str, distribution: IntRange | FloatRange | Choice) -> None:
    """ValueError naming `MODEL.KEY` (under sweep.optuna.space) when the model has no such
    setting or the distribution reaches outside its bounds or type."""
    where = f"{model}.{key}"
    schema = MODEL_SCHEMAS[model]
    fields = {name: field for name, field in schema.model_fields.items() if name != "name"}
    if key not in fields:
        raise ValueError(
            f"{where}: {model} has no setting {key!r}; its settings: {', '.join(sorted(fields))}"
        )
    field = fields[key]
    for value in distribution.ends():
        try:
            schema.model_validate({key: value})
        except ValidationError:
            bounds = bounds_text(field)
            allowed = type_text(field.annotation) + (f", {bounds}" if bounds else "")
            raise ValueError(
                f"{where}: {value!r} is not a value {model}.{key} takes ({allowed}); keep the "
                "distribution inside the hyperparameter's bounds and type"
            ) from None


class OptunaConfig(Settings):
    """The search's study (`sweep.search=optuna`): seeded TPE over `space`, its trials run as a
    grid sweep's variants do, scored on the validation split."""

    n_trials: int = Field(
        default=20,
        ge=1,
        le=10_000,
        description=(
            "Trials the study holds when the search ends: finished (complete or pruned) trials "
            "of an interrupted search count, so a re-run only adds the rest."
        ),
    )
    parallelism: Annotated[int, Field(ge=1, le=256)] | None = Field(
        default=None,
        description=(
            "Trials in flight at once; null: one per Dask worker thread (sweep.dask.n_workers x "
            "threads_per_worker)."
        ),
    )
    seed: int = Field(default=42, ge=0, description="Seed of the TPE sampler.")
    startup_trials: int = Field(
        default=10,
        ge=1,
        description="Trials drawn at random before TPE models the scores (TPE's n_startup_trials).",
    )
    study_name: str = Field(
        default="search",
        pattern=r"^[A-Za-z0-9][A-Za-z0-9_.\-]*$",
        description=(
            "The study's name; the search adds a digest of the data split, the space and the "
            "models' fixed settings, so an interrupted search resumes its own study and a "
            "changed one starts afresh."
        ),
    )
    storage: str | None = Field(
        default=None,
        description=(
            "The study's database. null: optuna.db beside a local SQLite tracking store; with a "
            "tracking server or a PostgreSQL store, required: postgresql://USER@HOST:5432/DB "
            "(the password from PGPASSWORD or ~/.pgpass, never from here)."
        ),
    )
    space: dict[str, dict[str, Distribution]] = Field(
        default_factory=dict,
        description=(
            "model -> hyperparameter -> distribution ({type: int|float|categorical, low, high, "
            "step, log, choices}); the models searched are its keys, each distribution checked "
            "against the model schema's bounds."
        ),
    )
    pruning: PruningSettings = Field(
        default_factory=PruningSettings,
        description="When a trial whose model fits in stages is stopped early.",
    )

    @field_validator("storage")
    @classmethod
    def _check_storage(cls, value: str | None) -> str | None:
        if not value:
            return None
        scheme = value.split("://", 1)[0].lower() if "://" in value else ""
        if scheme not in STORAGE_SCHEMES:
            raise ValueError(
                f"{hide_password(value)!r} is not a study database; use sqlite:///PATH or "
                "postgresql://USER@HOST:5432/DB"
            )
        if urlsplit(value).password is not None:
            raise ValueError(
                "the study's storage takes no password (it would be stored with every trial's "
                "parameters): give it in PGPASSWORD or ~/.pgpass where the search and its "
                "workers run"
            )
        return value

    @field_validator("space")
    @classmethod
    def _check_space(
        cls, value: dict[str, dict[str, IntRange | FloatRange | Choice]]
    ) -> dict[str, dict[str, IntRange | FloatRange | Choice]]:
        unknown = [model for model in value if model not in MODEL_SCHEMAS]
        if unknown:
            raise ValueError(f"{unknown[0]!r} is not a model; models: {', '.join(MODEL_SCHEMAS)}")
        for model, distributions in value.items():
            for key, distribution in distributions.items():
                check_distribution(model, key, distribution)
        return value
