"""Turn a model config (conf/model/*.yaml as a plain dict) into an unfitted price pipeline.

The pipeline takes raw listing rows and returns prices, so what MLflow stores is the whole model:
serving needs no separate preprocessing. Config mistakes fail here, before any data is read, with a
ConfigurationError that names the key and what is allowed.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np
from sklearn.base import RegressorMixin
from sklearn.compose import TransformedTargetRegressor
from sklearn.ensemble import HistGradientBoostingRegressor, RandomForestRegressor
from sklearn.pipeline import Pipeline

from steps.common.errors import ConfigurationError
from steps.train.features import build_preprocessor
from steps.train.torch_lasso import DEVICES, TorchLasso

logger = logging.getLogger(__name__)

MODEL_NAMES: tuple[str, ...] = ("torch_lasso", "random_forest", "hist_gradient_boosting")

# Keys every model config may carry, with their defaults where absent.
COMMON_DEFAULTS: dict[str, dict[str, Any]] = {
    "torch_lasso": {"log_target": True, "tfidf_max_features": 200},
    "random_forest": {"log_target": False, "tfidf_max_features": 5},
    "hist_gradient_boosting": {"log_target": True, "tfidf_max_features": 200},
}
# Regressor hyperparameters each model accepts (passed through to the estimator).
HYPERPARAMETERS: dict[str, tuple[str, ...]] = {
    "torch_lasso": ("alpha", "max_iter", "tol", "device"),
    "random_forest": (
        "n_estimators",
        "max_depth",
        "min_samples_split",
        "min_samples_leaf",
        "max_features",
        "n_jobs",
        "random_state",
    ),
    "hist_gradient_boosting": (
        "learning_rate",
        "max_iter",
        "max_leaf_nodes",
        "max_depth",
        "min_samples_leaf",
        "l2_regularization",
        "max_features",
        "early_stopping",
        "random_state",
    ),
}


def _allowed_keys(name: str) -> list[str]:
    return sorted(["name", *COMMON_DEFAULTS[name], *HYPERPARAMETERS[name]])


def _is_int(value: Any) -> bool:
    return isinstance(value, int | np.integer) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float | np.integer | np.floating) and not isinstance(value, bool)


def _check_common(name: str, cfg: Mapping[str, Any]) -> tuple[bool, int]:
    defaults = COMMON_DEFAULTS[name]
    log_target = cfg.get("log_target", defaults["log_target"])
    if not isinstance(log_target, bool | np.bool_):
        raise ConfigurationError(f"model.log_target must be true or false, got {log_target!r}")
    tfidf = cfg.get("tfidf_max_features", defaults["tfidf_max_features"])
    if not _is_int(tfidf) or tfidf < 1:
        raise ConfigurationError(f"model.tfidf_max_features must be an int >= 1, got {tfidf!r}")
    return bool(log_target), int(tfidf)


def _torch_lasso(params: dict[str, Any]) -> TorchLasso:
    alpha = params.get("alpha", 1.0)
    if not _is_number(alpha) or not np.isfinite(alpha) or alpha < 0:
        raise ConfigurationError(f"model.alpha must be a number >= 0, got {alpha!r}")
    max_iter = params.get("max_iter", 1000)
    if not _is_int(max_iter) or max_iter < 1:
        raise ConfigurationError(f"model.max_iter must be an int >= 1, got {max_iter!r}")
    tol = params.get("tol", 1e-4)
    if not _is_number(tol) or not np.isfinite(tol) or tol <= 0:
        raise ConfigurationError(f"model.tol must be a number > 0, got {tol!r}")
    device = params.get("device", "auto")
    if device not in DEVICES:
        raise ConfigurationError(f"model.device must be one of {list(DEVICES)}, got {device!r}")
    return TorchLasso(
        alpha=float(alpha), max_iter=int(max_iter), tol=float(tol), device=str(device)
    )


def _random_forest(params: dict[str, Any]) -> RandomForestRegressor:
    model = RandomForestRegressor(**params)
    try:
        # sklearn's own declared constraints: the same rules fit() would apply, checked early.
        model._validate_params()
    except ValueError as exc:  # InvalidParameterError is a ValueError
        raise ConfigurationError(f"invalid random_forest hyperparameter: {exc}") from exc
    return model


def _hist_gradient_boosting(params: dict[str, Any]) -> HistGradientBoostingRegressor:
    model = HistGradientBoostingRegressor(**params)
    try:
        model._validate_params()
    except ValueError as exc:  # InvalidParameterError is a ValueError
        raise ConfigurationError(f"invalid hist_gradient_boosting hyperparameter: {exc}") from exc
    return model


_BUILDERS: dict[str, Callable[[dict[str, Any]], RegressorMixin]] = {
    "torch_lasso": _torch_lasso,
    "random_forest": _random_forest,
    "hist_gradient_boosting": _hist_gradient_boosting,
}


def build_model(model_cfg: Mapping[str, Any]) -> Pipeline:
    """Build preprocessing + regressor for `model_cfg['name']`: raw listing rows in, price out.

    `log_target: true` fits the regressor on log1p(price) and maps predictions back with expm1,
    because prices are right-skewed and multiplicative effects become additive.
    """
    name = model_cfg.get("name")
    if name not in MODEL_NAMES:
        raise ConfigurationError(f"model.name must be one of {list(MODEL_NAMES)}, got {name!r}")
    unknown = sorted(str(k) for k in model_cfg if k not in _allowed_keys(name))
    if unknown:
        raise ConfigurationError(
            f"unknown key(s) {unknown} for model {name!r}; allowed keys: {_allowed_keys(name)}"
        )
    log_target, tfidf_max_features = _check_common(name, model_cfg)
    params = {k: model_cfg[k] for k in HYPERPARAMETERS[name] if k in model_cfg}

    regressor: RegressorMixin = _BUILDERS[name](params)
    if log_target:
        regressor = TransformedTargetRegressor(
            regressor=regressor, func=np.log1p, inverse_func=np.expm1, check_inverse=False
        )
    logger.info(
        "built model %s (log_target=%s, tfidf_max_features=%d, %s)",
        name,
        log_target,
        tfidf_max_features,
        params,
    )
    return Pipeline(
        [
            ("features", build_preprocessor(tfidf_max_features)),
            ("regressor", regressor),
        ]
    )
