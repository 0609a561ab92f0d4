"""One schema per model of conf/model/: its hyperparameters with their bounds, defaults and
descriptions, and how it becomes an unfitted regressor.

`MODEL_SCHEMAS` (name -> schema) is the registry the configuration (orchestration/config.py),
the sweep, the docs and the Prefect run form read; `ModelSettings` is the tagged union the
`model` section and the train entry point validate against. Adding a model hyperparameter is one
field here (and its value in conf/model/NAME.yaml only where it differs from the default). The
defaults are the values the pipeline trains with; conf/model/NAME.yaml holds only what differs
from them.

The regressors are imported when built, not here: the flow validates its configuration without
importing torch or scikit-learn.
"""

from __future__ import annotations

from abc import abstractmethod
from typing import TYPE_CHECKING, Annotated, Any, ClassVar, Literal

from pydantic import ConfigDict, Field

from steps.common.settings import Settings

if TYPE_CHECKING:
    from sklearn.base import RegressorMixin


class ModelSchema(Settings):
    """What every model takes besides its regressor's hyperparameters: the shared preprocessing
    and whether to fit on log1p(price). Strict: a model setting is never a string to convert."""

    model_config = ConfigDict(strict=True, allow_inf_nan=False)

    # The fields that configure the preprocessing and the target, not the regressor.
    PIPELINE_KEYS: ClassVar[frozenset[str]] = frozenset(
        {"name", "log_target", "tfidf_max_features"}
    )
    # The hyperparameter that counts what the regressor adds by warm start (trees, boosting
    # iterations), so that a search's trial can fit in stages and report a score after each
    # (steps/train/staged_fit.py); None: the model fits in one go.
    STAGED_BY: ClassVar[str | None] = None

    log_target: bool = Field(
        default=True,
        description=(
            "Fit on log1p(price) and map predictions back with expm1: prices are right-skewed."
        ),
    )
    tfidf_max_features: int = Field(
        default=200, ge=1, description="Words of the listing name kept by the TF-IDF features."
    )

    def hyperparameters(self) -> dict[str, Any]:
        """The regressor's own keyword arguments."""
        return self.model_dump(exclude=set(self.PIPELINE_KEYS))

    @property
    def model_name(self) -> str:
        """The model's name in conf/model/ (its schema's `name`)."""
        return str(type(self).model_fields["name"].default)

    @abstractmethod
    def regressor(self) -> RegressorMixin:
        """The unfitted regressor these settings describe."""


class TorchLassoSchema(ModelSchema):
    """L1-regularised linear regression in torch (exact zeros), on the shared preprocessing."""

    name: Literal["torch_lasso"] = "torch_lasso"
    alpha: float = Field(default=0.001, gt=0, description="L1 strength on standardized features.")
    max_iter: int = Field(default=2000, ge=1, description="Most coordinate-descent sweeps per fit.")
    tol: float = Field(
        default=1e-6, gt=0, description="Stop when no coefficient moves more than this."
    )
    device: Literal["auto", "cpu", "cuda"] = Field(
        default="auto", description="Where to fit: auto takes CUDA when present, else the CPU."
    )

    def regressor(self) -> RegressorMixin:
        from steps.train.torch_lasso import TorchLasso

        return TorchLasso(**self.hyperparameters())


class RandomForestSchema(ModelSchema):
    """scikit-learn's random forest on the shared preprocessing."""

    STAGED_BY: ClassVar[str | None] = "n_estimators"

    name: Literal["random_forest"] = "random_forest"
    log_target: bool = Field(
        default=False,
        description=(
            "Fit on log1p(price) and map predictions back with expm1: prices are right-skewed."
        ),
    )
    tfidf_max_features: int = Field(
        default=5, ge=1, description="Words of the listing name kept by the TF-IDF features."
    )
    n_estimators: int = Field(default=100, ge=1, description="Trees in the forest.")
    max_depth: Annotated[int, Field(ge=1)] | None = Field(
        default=15, description="Deepest a tree grows; null: until the leaves are pure."
    )
    min_samples_split: int = Field(
        default=4, ge=2, description="Fewest rows a node needs to be split."
    )
    min_samples_leaf: int = Field(default=3, ge=1, description="Fewest rows in a leaf.")
    max_features: Annotated[float, Field(gt=0, le=1)] | Literal["sqrt", "log2"] | None = Field(
        default=0.5,
        description="Share of the features each split considers (or sqrt, log2; null: all).",
    )
    n_jobs: int = Field(default=-1, description="Trees fitted in parallel (-1: every core).")
    random_state: int = Field(
        default=42, description="Seed of the bootstrap and the feature draws."
    )

    def regressor(self) -> RegressorMixin:
        from sklearn.ensemble import RandomForestRegressor

        return RandomForestRegressor(**self.hyperparameters())


class HistGradientBoostingSchema(ModelSchema):
    """scikit-learn's histogram gradient boosting on the shared preprocessing; the defaults were
    chosen on the validation split only (python -m benchmarks.model_quality)."""

    STAGED_BY: ClassVar[str | None] = "max_iter"

    name: Literal["hist_gradient_boosting"] = "hist_gradient_boosting"
    learning_rate: float = Field(
        default=0.05, gt=0, description="Shrinkage of each tree's contribution."
    )
    max_iter: int = Field(default=600, ge=1, description="Most boosting iterations (trees).")
    max_leaf_nodes: Annotated[int, Field(ge=2)] | None = Field(
        default=31, description="Most leaves per tree; null: no limit."
    )
    max_depth: Annotated[int, Field(ge=1)] | None = Field(
        default=None, description="Deepest a tree grows; null: limited by max_leaf_nodes only."
    )
    min_samples_leaf: int = Field(default=20, ge=1, description="Fewest rows in a leaf.")
    l2_regularization: float = Field(
        default=0.0, ge=0, description="L2 penalty on the leaf values."
    )
    max_features: float = Field(
        default=1.0, gt=0, le=1, description="Share of the features each split considers."
    )
    early_stopping: Literal["auto"] | bool = Field(
        default="auto",
        description=(
            "Stop when the held-out score stops improving; auto: on (holding out 10 % of the "
            "training rows) from 10,000 training rows up."
        ),
    )
    random_state: int = Field(
        default=42, description="Seed of the early-stopping hold-out and binning."
    )

    def regressor(self) -> RegressorMixin:
        from sklearn.ensemble import HistGradientBoostingRegressor

        return HistGradientBoostingRegressor(**self.hyperparameters())


ModelSettings = Annotated[
    TorchLassoSchema | RandomForestSchema | HistGradientBoostingSchema,
    Field(discriminator="name"),
]

MODEL_SCHEMAS: dict[str, type[ModelSchema]] = {
    str(schema.model_fields["name"].default): schema
    for schema in (TorchLassoSchema, RandomForestSchema, HistGradientBoostingSchema)
}
MODEL_NAMES: tuple[str, ...] = tuple(MODEL_SCHEMAS)
