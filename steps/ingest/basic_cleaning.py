"""Entry point `basic_cleaning`: price bounds, the NYC box, dates, duplicates (`clean_data`)."""

from __future__ import annotations

import argparse
import dataclasses
import logging

import mlflow

from steps.common.entrypoint import run_entry_point
from steps.common.errors import DataValidationError
from steps.common.outputs import publish_file
from steps.common.params_cli import params_parser, with_params
from steps.common.tracking import download_input, scratch_dir, step_run
from steps.common.wandb_mirror import WandbMirror
from steps.ingest.cleaning import CleaningStats, clean_parquet
from steps.ingest.schema import BasicCleaningParams

logger = logging.getLogger(__name__)


def build_parser() -> argparse.ArgumentParser:
    return params_parser(BasicCleaningParams, "basic_cleaning", __doc__)


def check_drop_fraction(stats: CleaningStats, max_drop_fraction: float) -> None:
    """A source the rules mostly reject is the wrong data, not data to train on: stop here."""
    dropped = stats.rows_in - stats.rows_out
    if stats.rows_in and dropped / stats.rows_in <= max_drop_fraction and stats.rows_out:
        return
    raise DataValidationError(
        f"cleaning dropped {dropped} of {stats.rows_in} rows (more than "
        f"cleaning.max_drop_fraction={max_drop_fraction:g}): {stats.dropped_price} with a price "
        f"outside the bounds or missing, {stats.dropped_outside_box} outside the NYC bounding "
        f"box, {stats.dropped_duplicate_id} with a duplicated id; check the source data"
    )


def main(params: BasicCleaningParams) -> None:
    with step_run() as run, scratch_dir() as work:
        output = work / "clean.parquet"
        stats = clean_parquet(download_input(params.input_artifact, work), output, params)
        metrics = {k: float(v) for k, v in dataclasses.asdict(stats).items()}
        mlflow.log_metrics(metrics)
        check_drop_fraction(stats, params.max_drop_fraction)
        publish_file("clean_data", output)
        logger.info("cleaning kept %d of %d rows", stats.rows_out, stats.rows_in)
        with WandbMirror("basic_cleaning", params.model_dump(), run.info.run_id) as mirror:
            mirror.log_metrics(metrics)
            mirror.log_artifact(output, "clean_data", "dataset")


if __name__ == "__main__":
    run_entry_point(build_parser(), with_params(BasicCleaningParams, main))
