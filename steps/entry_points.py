"""Every MLflow entry point of steps/: its module and its parameter schema.

MLproject is generated from this table (`python -m steps.mlproject`); the order is the
pipeline's, then the maintenance entry points, then the scoring one.
"""

from __future__ import annotations

from dataclasses import dataclass

from pydantic import BaseModel

from steps.evaluate.schema import EvaluateParams
from steps.ingest.schema import BasicCleaningParams, GetDataParams
from steps.registry.schema import PromoteParams, RollbackParams
from steps.score.schema import ScoreParams
from steps.split.schema import DataSplitParams
from steps.train.schema import TrainParams
from steps.validate.schema import DataCheckParams


@dataclass(frozen=True)
class EntryPoint:
    name: str
    # `python -m MODULE`: its build_parser() is built from `params`.
    module: str
    params: type[BaseModel]
    # Shown above the entry point in MLproject.
    comment: str = ""


ENTRY_POINTS: tuple[EntryPoint, ...] = (
    EntryPoint("get_data", "steps.ingest.get_data", GetDataParams),
    EntryPoint("basic_cleaning", "steps.ingest.basic_cleaning", BasicCleaningParams),
    EntryPoint("data_check", "steps.validate.data_check", DataCheckParams),
    EntryPoint("data_split", "steps.split.data_split", DataSplitParams),
    EntryPoint("train", "steps.train.train", TrainParams),
    EntryPoint("evaluate", "steps.evaluate.evaluate", EvaluateParams),
    EntryPoint("promote", "steps.registry.promote", PromoteParams),
    EntryPoint(
        "rollback",
        "steps.registry.rollback",
        RollbackParams,
        comment="Maintenance entry point, run by flows/promotion.py (not a pipeline step).",
    ),
    EntryPoint(
        "score",
        "steps.score.score",
        ScoreParams,
        comment="Scoring entry point, run by flows/score.py after get_data (not a pipeline step).",
    ),
)
ENTRY_POINT_BY_NAME: dict[str, EntryPoint] = {entry.name: entry for entry in ENTRY_POINTS}
