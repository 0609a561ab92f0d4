"""Put a local data file on OSS, where `data.source=oss://BUCKET/PREFIX` will find it.

A plain function rather than a Prefect task: one upload needs no orchestration state, and
starting a Prefect API for it would only add seconds. Files from `multipart_threshold` up go
through `connectors.oss.upload_path` (multipart, parallel parts, a local checkpoint so a re-run
after a failure sends only the missing parts); smaller ones are one PUT. CRC64 is checked either
way. The MLflow artifact store on OSS (`connectors.oss_artifacts`) uploads the same way.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from connectors.oss import (
    MULTIPART_THRESHOLD,
    PART_SIZE,
    OssFailure,
    OssSettings,
    classify,
    make_bucket,
    parse_oss_uri,
    upload_path,
)


class UploadFailed(Exception):
    """The upload did not happen; `failure.kind` says whether a retry may help."""

    def __init__(self, failure: OssFailure) -> None:
        super().__init__(failure.message)
        self.failure = failure


@dataclass(frozen=True)
class UploadResult:
    uri: str
    size: int
    etag: str
    crc64: int | None
    multipart: bool


def destination_key(prefix: str, local: Path) -> str:
    """`data/` or an empty prefix takes the file's own name; anything else is the whole key."""
    return f"{prefix}{local.name}" if not prefix or prefix.endswith("/") else prefix


def upload_file(
    local: Path,
    destination: str,
    *,
    settings: OssSettings | None = None,
    timeout_s: float = 60.0,
    multipart_threshold: int = MULTIPART_THRESHOLD,
    part_size: int = PART_SIZE,
    state_dir: Path | None = None,
) -> UploadResult:
    """Upload `local` to `destination` (oss://BUCKET/PREFIX) and return where it landed.

    Raises ValueError (connectors.oss.OssSettingError) for a bad destination or missing
    settings, FileNotFoundError for a missing local file, UploadFailed when OSS refuses or fails.
    """
    location = parse_oss_uri(destination)
    if not local.is_file():
        raise FileNotFoundError(f"{local} is not a file")
    settings = settings or OssSettings.from_env()
    bucket = make_bucket(settings, location.bucket, timeout_s)
    key = destination_key(location.prefix, local)
    uri = location.key_uri(key)
    size = local.stat().st_size
    multipart = size >= multipart_threshold
    try:
        result = upload_path(
            bucket,
            key,
            local,
            multipart_threshold=multipart_threshold,
            part_size=part_size,
            state_dir=state_dir,
        )
    except Exception as error:
        raise UploadFailed(classify(error, f"uploading to {uri}", settings.endpoint)) from None
    return UploadResult(
        uri=uri, size=size, etag=str(result.etag), crc64=result.crc, multipart=multipart
    )
