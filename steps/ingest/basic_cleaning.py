"""Entry point `basic_cleaning`: price bounds, the NYC box, dates, duplicates (`clean_data`)."""

from __future__ import annotations

import argparse
import dataclasses
import logging

import mlflow

from steps.common.entrypoint import run_entry_point
from steps.common.outputs import publish_file
from steps.common.tables import read_table, write_table
from steps.common.tracking import download_input, scratch_dir, step_run
from steps.common.wandb_mirror import WandbMirror
from steps.ingest.cleaning import clean_listings

logger = logging.getLogger(__name__)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="basic_cleaning", description=__doc__)
    parser.add_argument("--input_artifact", required=True, help="URI of the raw_data output")
    parser.add_argument("--min_price", type=float, required=True)
    parser.add_argument("--max_price", type=float, required=True)
    parser.add_argument("--min_longitude", type=float, required=True)
    parser.add_argument("--max_longitude", type=float, required=True)
    parser.add_argument("--min_latitude", type=float, required=True)
    parser.add_argument("--max_latitude", type=float, required=True)
    return parser


def main(args: argparse.Namespace) -> None:
    with step_run() as run, scratch_dir() as work:
        raw = read_table(download_input(args.input_artifact, work))
        clean, stats = clean_listings(
            raw,
            min_price=args.min_price,
            max_price=args.max_price,
            min_longitude=args.min_longitude,
            max_longitude=args.max_longitude,
            min_latitude=args.min_latitude,
            max_latitude=args.max_latitude,
        )
        metrics = {k: float(v) for k, v in dataclasses.asdict(stats).items()}
        mlflow.log_metrics(metrics)
        output = write_table(clean, work / "clean.parquet")
        publish_file("clean_data", output)
        logger.info("cleaning kept %d of %d rows", stats.rows_out, stats.rows_in)
        with WandbMirror("basic_cleaning", vars(args), run.info.run_id) as mirror:
            mirror.log_metrics(metrics)
            mirror.log_artifact(output, "clean_data", "dataset")


if __name__ == "__main__":
    run_entry_point(build_parser(), main)
