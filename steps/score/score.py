"""Entry point `score`: price listings with a registered version and check them for drift.

`models:/<name>@<alias>` (the champion by default) is resolved to its version once, and that
version is what scores: verified and loaded by the project's loader (no pickle, no code from
the artifact: steps/common/model_format.py). The listings (get_data's raw_data) are held to the
scoring contract (steps/validate/listing_checks.py: the model's input columns and a unique id;
the price may be absent), and every listing gets one row in `predictions.parquet`: `id`,
`predicted_price`, `model_version`. The run is tagged with the version it scored with.

Drift: each profiled feature of the listings is compared with the reference profile that
`train` logged on the version's training run (steps/score/profile.py) by its PSI
(steps/score/drift.py); `drift.json`, one metric per feature and the notes tell the flow which
features crossed `drift_threshold`. A version trained before profiles existed scores without
the check (a warning says so).

With `output`, the predictions are also written there, last and atomically (a temporary file
beside it, then a rename), so a failed run never leaves a half-written file.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import uuid
from pathlib import Path
from typing import Any

import mlflow
import numpy as np
import pandas as pd
from mlflow.exceptions import MlflowException

from steps.common.entrypoint import run_entry_point
from steps.common.errors import ConfigurationError, DataValidationError, PreconditionError
from steps.common.listing_columns import LISTING_COLUMNS, TARGET
from steps.common.listing_rows import raw_rows
from steps.common.model_format import load_price_model
from steps.common.outputs import publish_file, publish_note
from steps.common.params_cli import params_parser, with_params
from steps.common.tables import read_table, write_table
from steps.common.tracking import download_input, log_to_parent, scratch_dir, step_run
from steps.common.wandb_mirror import WandbMirror
from steps.contract import (
    DATA_SHA_TAG,
    DRIFT_METRIC_PREFIX,
    DRIFT_NOTE,
    DRIFTED_NOTE,
    HAS_PRICE_NOTE,
    INPUT_DIGEST_NOTE,
    MODEL_VERSION_NOTE,
    OUTPUT_NOTE,
    SCORED_ALIAS_TAG,
    SCORED_MODEL_TAG,
    SCORED_VERSION_TAG,
    content_digest,
)
from steps.registry.registry_ops import alias_version
from steps.score.drift import MEASURE, FeatureDrift, drifted_features, feature_drift
from steps.score.profile import PROFILE_FILE, ProfileError, ReferenceProfile
from steps.score.schema import ScoreParams
from steps.validate.listing_checks import build_scoring_schema, validate_scoring_input

logger = logging.getLogger(__name__)

PREDICTIONS_FILE = "predictions.parquet"
DRIFT_FILE = "drift.json"
_RUNS_URI = "runs:/"


def build_parser() -> argparse.ArgumentParser:
    return params_parser(ScoreParams, "score", __doc__)


def resolve_version(name: str, alias: str) -> str:
    """The version `alias` points at now; PreconditionError when none does."""
    version = alias_version(name, alias)
    if version is None:
        raise PreconditionError(f"no version of {name} has alias {alias}: run the pipeline first")
    return version


def check_output(output: str) -> Path | None:
    """The output path, checked before any work: its directory exists, it is no directory."""
    if not output:
        return None
    path = Path(output)
    if path.is_dir():
        raise ConfigurationError(f"scoring.output {path} is a directory: name a file in it")
    if not path.parent.is_dir():
        raise ConfigurationError(
            f"scoring.output {path}: directory {path.parent} does not exist; create it first"
        )
    return path


def write_atomically(frame: pd.DataFrame, path: Path) -> None:
    """Write the table as Parquet at `path` through a temporary file beside it and a rename:
    readers see the old file or the whole new one, never a part."""
    temporary = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
    try:
        write_table(frame, temporary)
        os.replace(temporary, path)
    finally:
        temporary.unlink(missing_ok=True)


def input_digest(uri: str, local: Path) -> str:
    """ "sha256:<hex>" of the source bytes get_data read (the tag on the run that made `uri`),
    else of the table itself (an input given by hand)."""
    if uri.startswith(_RUNS_URI):
        run_id = uri[len(_RUNS_URI) :].split("/", 1)[0]
        try:
            digest = mlflow.MlflowClient().get_run(run_id).data.tags.get(DATA_SHA_TAG)
        except MlflowException:
            digest = None
        if digest:
            return f"sha256:{digest}"
    return content_digest(local)


def model_columns(model: Any) -> list[str]:
    """The raw columns the model reads: its input signature, else the listing columns."""
    schema = model.metadata.get_input_schema()
    if schema is not None:
        return list(schema.input_names())
    return [name for name in LISTING_COLUMNS if name != TARGET]


def predict(model: Any, listings: pd.DataFrame, columns: list[str], version: str) -> pd.DataFrame:
    """One row per listing: its id, the model's price and the version that priced it."""
    try:
        predicted = model.predict(raw_rows(listings, columns))
    except MlflowException as error:
        raise DataValidationError(
            f"the listings do not fit the input signature of version {version}: {error.message}"
        ) from None
    prices = np.asarray(predicted, dtype=float).ravel()
    return pd.DataFrame(
        {
            "id": listings["id"].astype("int64").to_numpy(),
            "predicted_price": prices,
            "model_version": np.full(len(listings), int(version), dtype="int64"),
        }
    )


def reference_profile(name: str, version: str, work: Path) -> ReferenceProfile | str:
    """The profile `train` logged for the version's training data, or why there is none."""
    run_id = mlflow.MlflowClient().get_model_version(name, version).run_id
    if not run_id:
        return f"version {version} names no training run"
    try:
        local = mlflow.artifacts.download_artifacts(
            run_id=run_id, artifact_path=PROFILE_FILE, dst_path=str(work)
        )
    except (MlflowException, OSError):
        return (
            f"training run {run_id} of version {version} has no {PROFILE_FILE} (trained before "
            "train logged one); retrain and promote to have drift measured"
        )
    try:
        return ReferenceProfile.from_dict(json.loads(Path(local).read_text(encoding="utf-8")))
    except (ProfileError, ValueError) as error:
        return f"{PROFILE_FILE} of training run {run_id} cannot be read: {error}"


def log_drift(scores: list[FeatureDrift], work: Path) -> dict[str, float]:
    """drift.json (one row per feature), a metric per feature, the largest score; the metrics."""
    path = work / DRIFT_FILE
    path.write_text(json.dumps([score.as_dict() for score in scores], indent=2) + "\n")
    mlflow.log_artifact(str(path))
    metrics = {f"{DRIFT_METRIC_PREFIX}{score.feature}": score.score for score in scores}
    top = max((score.score for score in scores), default=0.0)
    metrics |= {"drift_max": top, "drifted_features": float(len(drifted_features(scores)))}
    mlflow.log_metrics(metrics)
    log_to_parent({"drift_max": top})
    return metrics


def drift_line(scores: list[FeatureDrift], threshold: float) -> str:
    if not scores:
        return "no profiled feature"
    top = max(scores, key=lambda score: score.score)
    over = drifted_features(scores)
    verdict = f"drifted: {', '.join(over)}" if over else "no feature drifted"
    return f"{verdict}; max {MEASURE} {top.score:.3f} on {top.feature} (threshold {threshold:g})"


def main(params: ScoreParams) -> None:
    name, alias = params.registered_model, params.alias
    output = check_output(params.output)
    with step_run() as run, scratch_dir() as work:
        version = resolve_version(name, alias)
        mlflow.set_tags(
            {SCORED_MODEL_TAG: name, SCORED_ALIAS_TAG: alias, SCORED_VERSION_TAG: version}
        )
        local = download_input(params.input_artifact, work)
        listings = read_table(local)
        # This version, not the alias: a promotion meanwhile does not change what scores.
        model = load_price_model(f"models:/{name}/{version}")
        columns = model_columns(model)
        listings = validate_scoring_input(listings, build_scoring_schema(columns))
        has_price = TARGET in listings and bool(listings[TARGET].notna().any())
        predictions = predict(model, listings, columns, version)
        digest = input_digest(params.input_artifact, local)
        mlflow.set_tag(DATA_SHA_TAG, digest.removeprefix("sha256:"))

        profile = reference_profile(name, version, work)
        if isinstance(profile, str):
            logger.warning("drift not measured: %s", profile)
            scores: list[FeatureDrift] = []
            metrics: dict[str, float] = {}
            drift_note = f"not measured: {profile}"
        else:
            scores = feature_drift(profile, listings, params.drift_threshold)
            metrics = log_drift(scores, work)
            drift_note = drift_line(scores, params.drift_threshold)

        table = write_table(predictions, work / PREDICTIONS_FILE)
        publish_file("predictions", table)
        counts = {"rows_scored": float(len(predictions)), "model_version": float(version)}
        mlflow.log_metrics(counts)
        log_to_parent({"rows_scored": len(predictions)})
        with WandbMirror("score", params.model_dump(), run.info.run_id) as mirror:
            mirror.use_input("model", f"models:/{name}/{version}", "model")
            mirror.log_metrics(metrics | counts)
            mirror.log_artifact(table, "predictions", "dataset")
        notes = {
            MODEL_VERSION_NOTE: version,
            DRIFTED_NOTE: ",".join(drifted_features(scores)),
            HAS_PRICE_NOTE: str(has_price).lower(),
            INPUT_DIGEST_NOTE: digest,
            DRIFT_NOTE: drift_note,
            OUTPUT_NOTE: str(output or ""),
        }
        for note, text in notes.items():
            publish_note(note, text)
        if output is not None:
            write_atomically(predictions, output)
        logger.info(
            "scored %d listing(s) with %s version %s (%s); %s",
            len(predictions),
            name,
            version,
            f"written to {output}" if output else "no output path",
            drift_note,
        )


if __name__ == "__main__":
    run_entry_point(build_parser(), with_params(ScoreParams, main))
