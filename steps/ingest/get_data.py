"""Entry point `get_data`: any listing source in, one Parquet artifact out (`raw_data`)."""

from __future__ import annotations

import argparse
import logging

import mlflow

from steps.common.entrypoint import run_entry_point
from steps.common.errors import ConfigurationError, SourceError
from steps.common.listing_columns import TARGET
from steps.common.outputs import publish_file
from steps.common.params_cli import params_parser, with_params
from steps.common.tracking import scratch_dir, step_run
from steps.common.url_secrets import (
    MissingEnvironmentVariable,
    redact_url,
    resolve_env_references,
)
from steps.common.wandb_mirror import WandbMirror
from steps.contract import DATA_SHA_TAG
from steps.ingest.csv_to_parquet import convert_csv_to_parquet
from steps.ingest.schema import GetDataParams
from steps.ingest.source_limits import SourceLimits
from steps.ingest.sources import fetch_source, source_kind

logger = logging.getLogger(__name__)


def build_parser() -> argparse.ArgumentParser:
    return params_parser(GetDataParams, "get_data", __doc__)


def source_limits(params: GetDataParams) -> SourceLimits:
    """The bounds of this run's source, from its parameters."""
    return SourceLimits(
        max_source_mb=params.max_source_mb,
        max_compression_ratio=params.max_compression_ratio,
        download_deadline_s=params.download_deadline_s,
    )


def read_source_reference(source: str) -> str:
    """The source to read: `${oc.env:NAME}` references resolved from this process's environment
    (how a credentialed URL reaches the step without being stored anywhere)."""
    try:
        return resolve_env_references(source)
    except MissingEnvironmentVariable as missing:
        raise ConfigurationError(
            f"data.source reads ${{oc.env:{missing.name}}}, but the step's environment has no "
            f"{missing.name}: export it (or put it in .env) where the pipeline is started"
        ) from None


def check_source_digest(expected: str, read: str) -> None:
    """The bytes read must be the ones the flow fingerprinted, or the step's run would be cached
    under the digest of a file that has since been replaced."""
    if expected and expected.removeprefix("sha256:") != read:
        raise SourceError(
            f"the source changed between the pipeline's fingerprint (sha256 "
            f"{expected.removeprefix('sha256:')[:12]}...) and get_data's read (sha256 "
            f"{read[:12]}...): something replaced the file while the pipeline started; run the "
            "pipeline again once the file is no longer being written"
        )


def main(params: GetDataParams) -> None:
    source = read_source_reference(params.source)
    shown = redact_url(source)
    limits = source_limits(params)
    with step_run() as run, scratch_dir() as work:
        kind = source_kind(source)
        fetched = fetch_source(
            source,
            work,
            demo_rows=params.demo_rows,
            demo_seed=params.demo_seed,
            timeout_s=params.http_timeout_s,
            limits=limits,
        )
        stats = convert_csv_to_parquet(
            fetched.path,
            work / "raw.parquet",
            params.compression,
            limits=limits,
            optional_columns=() if params.require_price else (TARGET,),
        )
        check_source_digest(params.source_sha256, stats.input_sha256)
        mlflow.set_tags(
            {
                "data.source_kind": kind,
                "data.source": shown,
                DATA_SHA_TAG: stats.input_sha256,
            }
            | fetched.lineage
        )
        mlflow.log_metrics({"rows_out": stats.rows, "input_bytes": stats.input_bytes})
        publish_file("raw_data", work / "raw.parquet")
        logger.info("read %d rows (sha256 %s) from %s", stats.rows, stats.input_sha256, kind)
        with WandbMirror(
            "get_data", params.model_dump() | {"source": shown}, run.info.run_id
        ) as mirror:
            mirror.log_metrics({"rows_out": stats.rows})
            mirror.log_artifact(work / "raw.parquet", "raw_data", "dataset")


if __name__ == "__main__":
    run_entry_point(build_parser(), with_params(GetDataParams, main))
