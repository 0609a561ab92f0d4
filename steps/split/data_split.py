"""Entry point `data_split`: stratified, seeded train/validation/test tables.

The split is decided from the stratification column alone; the tables are then taken from the
Arrow data (compact text, no Python object per value), one split at a time.
"""

from __future__ import annotations

import argparse
import logging

import mlflow
import pyarrow.parquet as pq

from steps.common.entrypoint import run_entry_point
from steps.common.outputs import publish_file
from steps.common.params_cli import params_parser, with_params
from steps.common.tables import read_arrow, read_table, table_columns
from steps.common.tracking import download_input, scratch_dir, step_run
from steps.common.wandb_mirror import WandbMirror
from steps.split.schema import DataSplitParams
from steps.split.splitting import check_stratify_column, split_positions, stratification

logger = logging.getLogger(__name__)


def build_parser() -> argparse.ArgumentParser:
    return params_parser(DataSplitParams, "data_split", __doc__)


def main(params: DataSplitParams) -> None:
    with step_run() as run, scratch_dir() as work:
        source = download_input(params.input_artifact, work)
        stratify_by = stratification(params.stratify_by)
        check_stratify_column(stratify_by, table_columns(source))
        strata = read_table(source, [stratify_by])[stratify_by] if stratify_by else None
        table = read_arrow(source)
        parts = split_positions(
            table.num_rows,
            strata,
            test_size=params.test_size,
            val_size=params.val_size,
            seed=params.seed,
        )
        del strata
        metrics = {}
        with WandbMirror("data_split", params.model_dump(), run.info.run_id) as mirror:
            for name, positions in zip(("train", "val", "test"), parts, strict=True):
                path = work / f"{name}.parquet"
                pq.write_table(table.take(positions), path)
                publish_file(f"{name}_data", path)
                mirror.log_artifact(path, f"{name}_data", "dataset")
                metrics[f"rows_{name}"] = float(len(positions))
            mlflow.log_metrics(metrics)
            mirror.log_metrics(metrics)
        logger.info(
            "split %d rows into %s (stratified by %s)", table.num_rows, metrics, stratify_by
        )


if __name__ == "__main__":
    run_entry_point(build_parser(), with_params(DataSplitParams, main))
