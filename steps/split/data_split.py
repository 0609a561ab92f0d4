"""Entry point `data_split`: stratified, seeded train/validation/test tables."""

from __future__ import annotations

import argparse
import logging

import mlflow

from steps.common.entrypoint import run_entry_point
from steps.common.outputs import publish_file
from steps.common.params_cli import params_parser, with_params
from steps.common.tables import read_table, write_table
from steps.common.tracking import download_input, scratch_dir, step_run
from steps.common.wandb_mirror import WandbMirror
from steps.split.schema import DataSplitParams
from steps.split.splitting import split_listings

logger = logging.getLogger(__name__)


def build_parser() -> argparse.ArgumentParser:
    return params_parser(DataSplitParams, "data_split", __doc__)


def main(params: DataSplitParams) -> None:
    with step_run() as run, scratch_dir() as work:
        frame = read_table(download_input(params.input_artifact, work))
        parts = split_listings(
            frame,
            test_size=params.test_size,
            val_size=params.val_size,
            seed=params.seed,
            stratify_by=params.stratify_by,
        )
        metrics = {}
        with WandbMirror("data_split", params.model_dump(), run.info.run_id) as mirror:
            for name, part in zip(("train", "val", "test"), parts, strict=True):
                path = write_table(part, work / f"{name}.parquet")
                publish_file(f"{name}_data", path)
                mirror.log_artifact(path, f"{name}_data", "dataset")
                metrics[f"rows_{name}"] = float(len(part))
            mlflow.log_metrics(metrics)
            mirror.log_metrics(metrics)
        logger.info("split %d rows into %s", len(frame), metrics)


if __name__ == "__main__":
    run_entry_point(build_parser(), with_params(DataSplitParams, main))
