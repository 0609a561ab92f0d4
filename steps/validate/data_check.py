"""Entry point `data_check`: the data contract, a gate that stops the pipeline before training."""

from __future__ import annotations

import argparse
import json
import logging

import mlflow

from steps.common.bounds import add_bound_arguments, bounds_of
from steps.common.entrypoint import run_entry_point
from steps.common.errors import ConfigurationError
from steps.common.tables import read_table
from steps.common.tracking import download_input, scratch_dir, step_run
from steps.common.wandb_mirror import WandbMirror
from steps.validate.listing_checks import build_listing_schema, validate_listings

logger = logging.getLogger(__name__)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="data_check", description=__doc__)
    parser.add_argument("--input_artifact", required=True, help="URI of the clean_data output")
    parser.add_argument("--min_rows", type=int, required=True)
    parser.add_argument("--max_rows", type=int, required=True)
    add_bound_arguments(parser)
    parser.add_argument("--kl_threshold", type=float, required=True)
    parser.add_argument(
        "--reference_distribution",
        required=True,
        help='JSON object of neighbourhood_group shares, e.g. {"Manhattan": 0.44, ...}',
    )
    return parser


def parse_reference(text: str) -> dict[str, float]:
    try:
        reference = json.loads(text)
        parsed = {str(k): float(v) for k, v in reference.items()}
    except (ValueError, AttributeError, TypeError) as error:
        raise ConfigurationError(
            "data_check.reference_distribution must map each neighbourhood_group to its share, "
            f'e.g. {{"Manhattan": 0.44}}; got {text!r}'
        ) from error
    return parsed


def main(args: argparse.Namespace) -> None:
    reference = parse_reference(args.reference_distribution)
    with step_run() as run, scratch_dir() as work:
        frame = read_table(download_input(args.input_artifact, work))
        schema = build_listing_schema(
            min_rows=args.min_rows, max_rows=args.max_rows, **bounds_of(args)
        )
        with WandbMirror("data_check", vars(args), run.info.run_id) as mirror:
            report = validate_listings(frame, schema, reference, args.kl_threshold)
            metrics = {"rows_checked": float(report.rows), "kl_divergence": report.kl_divergence}
            mlflow.log_metrics(metrics)
            mirror.log_metrics(metrics)
        logger.info(
            "data check passed: %d rows, KL divergence %.4f (threshold %.4f)",
            report.rows,
            report.kl_divergence,
            args.kl_threshold,
        )


if __name__ == "__main__":
    run_entry_point(build_parser(), main)
