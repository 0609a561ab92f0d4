"""What a hyperparameter search trains (`sweep.search=optuna`), checked before any work.

The search's models are the keys of `sweep.optuna.space`; each starts from its own
configuration (conf/model/NAME.yaml and the command line's `model.KEY=...` overrides that apply
to it, as in a grid sweep), and each trial replaces the values the study drew for it. The study's
database is derived here from the tracking store when not configured, so a search that could not
record its trials is refused before the first step.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from orchestration.config import ConfigError, PipelineConfig
from orchestration.search_space import OptunaConfig
from steps.common.url_secrets import hide_password
from steps.train.model_schemas import MODEL_SCHEMAS

# The study's file beside a local SQLite tracking store.
STUDY_FILE = "optuna.db"


def study_storage(settings: OptunaConfig, tracking_uri: str) -> str:
    """The study's database URL: `sweep.optuna.storage`, else optuna.db beside a local SQLite
    tracking store; ConfigError for any other store (it cannot host a study's tables, and
    workers elsewhere could not reach a local file)."""
    if settings.storage:
        return settings.storage
    if tracking_uri.startswith("sqlite:///"):
        database = Path(tracking_uri.removeprefix("sqlite:///"))
        return f"sqlite:///{database.parent / STUDY_FILE}"
    raise ConfigError(
        f"invalid configuration: sweep.optuna.storage: the study cannot live in tracking store "
        f"{hide_password(tracking_uri)}; with a tracking server or a PostgreSQL store, give the "
        "study a database of its own: sweep.optuna.storage=postgresql://USER@HOST:5432/DB (the "
        "password from PGPASSWORD or ~/.pgpass, never in the URL), or sqlite:///PATH when every "
        "worker runs on this machine"
    )


@dataclass(frozen=True)
class SearchPlan:
    """The search as it will run: each searched model's starting configuration, the study's
    settings and its database."""

    base: PipelineConfig
    # model name -> its configuration before a trial's values (shared sections identical).
    models: Mapping[str, PipelineConfig]
    storage: str

    @property
    def settings(self) -> OptunaConfig:
        return self.base.sweep.optuna

    @property
    def parallelism(self) -> int:
        dask = self.base.sweep.dask
        return self.settings.parallelism or dask.n_workers * dask.threads_per_worker

    def trial_config(self, model: str, values: Mapping[str, Any]) -> PipelineConfig:
        """The configuration of a trial of `model` with the values the study drew."""
        cfg = self.models[model]
        settings = MODEL_SCHEMAS[model].model_validate(cfg.model.model_dump() | dict(values))
        return cfg.model_copy(update={"model": settings})

    def study_name(self, data_digests: Sequence[str]) -> str:
        """`sweep.optuna.study_name` and a digest of what makes two searches comparable: the
        data split, the space and each model's fixed settings. A re-run of the same search
        resumes its study; a changed one starts its own."""
        identity = {
            "data": list(data_digests),
            "space": {
                model: {key: d.model_dump() for key, d in space.items()}
                for model, space in self.settings.space.items()
            },
            "models": {name: cfg.model.model_dump() for name, cfg in self.models.items()},
            "metric": self.base.promotion.metric,
        }
        text = json.dumps(identity, sort_keys=True, default=str)
        return f"{self.settings.study_name}-{hashlib.sha256(text.encode()).hexdigest()[:10]}"


def label(model: str, values: Mapping[str, Any]) -> str:
    """A trial's settings as overrides a person reads (and could pass to the pipeline)."""
    shown = " ".join(f"model.{key}={_override_value(value)}" for key, value in values.items())
    return f"model={model}" + (f" {shown}" if shown else "")


def _override_value(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)
