"""Entry point `data_check`: the data contract, a gate that stops the pipeline before training."""

from __future__ import annotations

import argparse
import logging

import mlflow

from steps.common.entrypoint import run_entry_point
from steps.common.params_cli import params_parser, with_params
from steps.common.tables import read_table
from steps.common.tracking import download_input, scratch_dir, step_run
from steps.common.wandb_mirror import WandbMirror
from steps.validate.listing_checks import build_listing_schema, validate_listings
from steps.validate.schema import DataCheckParams

logger = logging.getLogger(__name__)


def build_parser() -> argparse.ArgumentParser:
    return params_parser(DataCheckParams, "data_check", __doc__)


def main(params: DataCheckParams) -> None:
    with step_run() as run, scratch_dir() as work:
        frame = read_table(download_input(params.input_artifact, work))
        schema = build_listing_schema(
            min_rows=params.min_rows, max_rows=params.max_rows, bounds=params
        )
        with WandbMirror("data_check", params.model_dump(), run.info.run_id) as mirror:
            report = validate_listings(
                frame,
                schema,
                {str(group): share for group, share in params.reference_distribution.items()},
                params.kl_threshold,
            )
            metrics = {"rows_checked": float(report.rows), "kl_divergence": report.kl_divergence}
            mlflow.log_metrics(metrics)
            mirror.log_metrics(metrics)
        logger.info(
            "data check passed: %d rows, KL divergence %.4f (threshold %.4f)",
            report.rows,
            report.kl_divergence,
            params.kl_threshold,
        )


if __name__ == "__main__":
    run_entry_point(build_parser(), with_params(DataCheckParams, main))
