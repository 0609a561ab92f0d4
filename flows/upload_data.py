"""Upload a listings file to Alibaba OSS for the pipeline: LOCAL_FILE oss://BUCKET/PREFIX.

    python -m flows.upload_data listings.csv oss://my-bucket/nyc/2019/
    .venv/bin/python -m flows.train_pipeline data.source=oss://my-bucket/nyc/2019/listings.csv

A PREFIX ending in '/' (or none) keeps the file's name. Credentials and endpoint come from
OSS_ACCESS_KEY_ID, OSS_ACCESS_KEY_SECRET, OSS_ENDPOINT (and OSS_SECURITY_TOKEN for STS) in the
environment or in .env. Prints the object's oss:// URI.

With a Prefect server configured (PREFECT_API_URL), the upload is announced at once: one
`listings.object.arrived` event (docs/events.md), which starts a run of the
`retrain-on-new-data` deployment. The same bytes uploaded again (same ETag) are not announced
again, so they start nothing.

Exit codes: 0 uploaded (and announced), 2 bad arguments, destination or credentials, 75 a
transient failure (try again: large files resume; an upload whose announcement failed is
announced by the next try), 1 otherwise.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence
from pathlib import Path

from connectors.oss_upload import MULTIPART_THRESHOLD, PART_SIZE, UploadFailed, upload_file
from flows.cli import Command, run_command
from orchestration.events import DATA_ARRIVED, ListingsObject
from orchestration.source_inventory import etag_fingerprint
from orchestration.source_ledger import announce
from steps.contract import EXIT_BAD_CONFIG, EXIT_BUG, EXIT_OK, EXIT_TRANSIENT

logger = logging.getLogger(__name__)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m flows.upload_data",
        description=(__doc__ or "").split("\n\n", 1)[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("local_file", type=Path, help="the CSV (or .csv.gz) to upload")
    parser.add_argument("destination", help="oss://BUCKET/PREFIX (a trailing '/' keeps the name)")
    parser.add_argument("--timeout-s", type=float, default=60.0, help="network timeout")
    parser.add_argument(
        "--multipart-threshold-mb",
        type=float,
        default=MULTIPART_THRESHOLD / 2**20,
        help="files from this size up go in resumable multipart uploads",
    )
    parser.add_argument("--part-size-mb", type=float, default=PART_SIZE / 2**20)
    return parser


def exit_code(error: BaseException) -> int:
    """A failed upload's exit code: 75 when trying again may help, 2 when the credentials or
    the destination must change, 1 otherwise."""
    assert isinstance(error, UploadFailed)
    if error.failure.transient:
        return EXIT_TRANSIENT
    return EXIT_BAD_CONFIG if error.failure.kind in ("credentials", "not_found") else EXIT_BUG


def _announce(subject: ListingsObject) -> int:
    """Tell the Prefect server about the upload, if one is configured."""
    from prefect.settings import PREFECT_API_URL

    if not PREFECT_API_URL.value():
        sys.stderr.write(
            "no Prefect server configured (PREFECT_API_URL): no event sent; a watch-sources "
            "pass over this prefix finds it\n"
        )
        return EXIT_OK
    try:
        announced = announce([subject], "upload")
    except Exception as error:  # the file is uploaded; only its announcement failed
        logger.debug("announcing %s failed", subject.source, exc_info=True)
        sys.stderr.write(
            f"uploaded, but the Prefect server did not take the event "
            f"({type(error).__name__}: {error}); run the same command again: it uploads the same "
            "bytes (same ETag) and sends the event\n"
        )
        return EXIT_TRANSIENT
    if announced:
        sys.stderr.write(f"announced: {DATA_ARRIVED} (starts retrain-on-new-data)\n")
    else:
        sys.stderr.write(f"already announced with this content ({subject.fingerprint}): no event\n")
    return EXIT_OK


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)

    def body(_started: object) -> int:
        logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
        result = upload_file(
            args.local_file,
            args.destination,
            timeout_s=args.timeout_s,
            multipart_threshold=int(args.multipart_threshold_mb * 2**20),
            part_size=int(args.part_size_mb * 2**20),
        )
        sys.stderr.write(
            f"uploaded {args.local_file} ({result.size:,} bytes, ETag {result.etag}"
            f"{', multipart' if result.multipart else ''})\n"
        )
        sys.stdout.write(result.uri + "\n")
        subject = ListingsObject(result.uri, etag_fingerprint(result.etag), result.size)
        return _announce(subject)

    command = Command(
        "upload",
        body,
        start=lambda arguments: None,  # no configuration: the arguments are all it takes
        expected=(UploadFailed,),
        exit_code=exit_code,
        # A bad destination or a missing file: the arguments must change.
        refused=(ValueError, FileNotFoundError),
        uses_prefect=False,
    )
    return run_command(command, [])


if __name__ == "__main__":
    sys.exit(main())
