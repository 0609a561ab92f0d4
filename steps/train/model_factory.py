"""Turn validated model settings (steps/train/model_schemas.py) into an unfitted price pipeline.

The pipeline takes raw listing rows and returns prices, so what MLflow stores is the whole model:
serving needs no separate preprocessing. A plain mapping (conf/model/*.yaml, the train entry
point's JSON) is validated by the model's schema first, so a mistake fails here, before any data
is read, with a ConfigurationError that names the key and what is allowed.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

import numpy as np
from pydantic import TypeAdapter, ValidationError
from sklearn.compose import TransformedTargetRegressor
from sklearn.pipeline import Pipeline

from steps.common.errors import ConfigurationError
from steps.train.features import build_preprocessor
from steps.train.model_schemas import MODEL_NAMES, MODEL_SCHEMAS, ModelSchema, ModelSettings

logger = logging.getLogger(__name__)

# The feature matrix's dtype per model (float64 for the others). torch_lasso reads float32 and
# accumulates its Gram matrix in float64, so half the memory costs no accuracy that matters;
# scikit-learn's histogram gradient boosting converts anything to float64 (a copy), so it gets
# float64 to begin with.
FEATURE_DTYPES: dict[str, str] = {"torch_lasso": "float32"}

_MODEL_SETTINGS: TypeAdapter[ModelSchema] = TypeAdapter(ModelSettings)


def model_settings(config: Mapping[str, Any] | ModelSchema) -> ModelSchema:
    """The settings `config` describes, validated by its model's schema."""
    if isinstance(config, ModelSchema):
        return config
    name = config.get("name")
    if name not in MODEL_SCHEMAS:
        raise ConfigurationError(f"model.name must be one of {list(MODEL_NAMES)}, got {name!r}")
    allowed = sorted(MODEL_SCHEMAS[name].model_fields)
    unknown = sorted(str(key) for key in config if key not in allowed)
    if unknown:
        raise ConfigurationError(
            f"unknown key(s) {unknown} for model {name!r}; allowed keys: {allowed}"
        )
    try:
        return _MODEL_SETTINGS.validate_python(dict(config))
    except ValidationError as error:
        problems = [
            f"model.{'.'.join(str(part) for part in problem['loc'][1:])}: {problem['msg']} "
            f"(got {problem.get('input')!r})"
            for problem in error.errors()
        ]
        raise ConfigurationError("; ".join(problems)) from None


def build_model(config: Mapping[str, Any] | ModelSchema) -> Pipeline:
    """Build preprocessing + regressor for the model `config` names: raw listing rows in, price
    out.

    `log_target: true` fits the regressor on log1p(price) and maps predictions back with expm1,
    because prices are right-skewed and multiplicative effects become additive.
    """
    settings = model_settings(config)
    regressor = settings.regressor()
    if settings.log_target:
        regressor = TransformedTargetRegressor(
            regressor=regressor, func=np.log1p, inverse_func=np.expm1, check_inverse=False
        )
    logger.info(
        "built model %s (log_target=%s, tfidf_max_features=%d, %s)",
        settings.model_name,
        settings.log_target,
        settings.tfidf_max_features,
        settings.hyperparameters(),
    )
    return Pipeline(
        [
            (
                "features",
                build_preprocessor(
                    settings.tfidf_max_features,
                    dtype=FEATURE_DTYPES.get(settings.model_name, "float64"),
                ),
            ),
            ("regressor", regressor),
        ]
    )
