"""`oss://BUCKET/PREFIX` as an MLflow artifact store, on this project's own OSS client.

MLflow has no oss:// artifact repository, and the one third-party plugin is unmaintained (its
own variables, one listing page, no delete). This one is registered under pyproject's
`mlflow.artifact_repository` entry points, so `mlflow server --serve-artifacts
--artifacts-destination oss://BUCKET/PREFIX` (`MLFLOW_ARTIFACTS_DESTINATION=... make
mlflow-server`) keeps every artifact clients upload through the server under that prefix, and a
client given an oss:// artifact location writes there directly.

It reads the pipeline's credentials the pipeline's way (`connectors.oss.OssSettings`:
OSS_ACCESS_KEY_ID, OSS_ACCESS_KEY_SECRET, OSS_ENDPOINT, optional OSS_SECURITY_TOKEN, from the
environment, which `.env` fills where the tracking server starts) and reports failures with the
connector's classification, as MlflowExceptions whose error codes a client acts on: transient
(timeouts, dropped connections, 5xx, CRC mismatch) is 503, which MLflow's HTTP client retries;
bad credentials and 403 are 403, a missing object or bucket 404, missing settings 400, each with
the variable or URI to check and never a credential (OSS's own error bodies, which echo the key
id, are not passed on). oss2 itself retries nothing here.

Uploads from 64 MiB up are multipart with parallel parts (`connectors.oss.upload_path`, as
`flows.upload_data` does); downloads stream to a `.part` file, CRC64- and size-checked by oss2,
and take their name only when complete. Listings follow every page; deletes go in batches of up
to 1000 keys (OSS's limit per request).
"""

from __future__ import annotations

import logging
import os
import posixpath
import tempfile
from collections.abc import Iterator
from concurrent.futures import Future
from contextlib import nullcontext
from pathlib import Path
from typing import TYPE_CHECKING, NoReturn

from mlflow.entities import FileInfo
from mlflow.exceptions import MlflowException
from mlflow.protos.databricks_pb2 import (
    BAD_REQUEST,
    INVALID_PARAMETER_VALUE,
    PERMISSION_DENIED,
    RESOURCE_DOES_NOT_EXIST,
    TEMPORARILY_UNAVAILABLE,
)
from mlflow.store.artifact.artifact_repo import ArtifactRepository

from connectors.oss import (
    MULTIPART_THRESHOLD,
    PART_SIZE,
    FailureKind,
    OssSettingError,
    OssSettings,
    classify,
    make_bucket,
    parse_oss_uri,
    upload_path,
)

if TYPE_CHECKING:
    import oss2

logger = logging.getLogger(__name__)

# One listing request returns at most this many keys and folders (OSS's own maximum).
LIST_PAGE = 1000
# DeleteMultipleObjects takes at most 1000 keys per request.
DELETE_BATCH = 1000
# Connecting and each socket read; a model file of any size streams within it.
TIMEOUT_S = 60.0

_ERROR_CODES: dict[FailureKind, int] = {
    "transient": TEMPORARILY_UNAVAILABLE,
    "credentials": PERMISSION_DENIED,
    "not_found": RESOURCE_DOES_NOT_EXIST,
    "permanent": BAD_REQUEST,
}


def _oss_errors() -> tuple[type[BaseException], ...]:
    """What an OSS call raises that `classify` understands (and whose text must not be shown:
    oss2's ServerError carries the service's error body). Local file errors are not in it."""
    import oss2.exceptions
    import requests
    import urllib3.exceptions

    return (
        oss2.exceptions.OssError,
        requests.RequestException,
        urllib3.exceptions.HTTPError,
        ConnectionError,
        TimeoutError,
    )


def _within(key: str, path: str) -> bool:
    """Whether `key` is `path` itself or lies under it: deleting `a.txt` leaves `a.txt.bak`."""
    return not path or key == path or key.startswith(path.rstrip("/") + "/")


class OssArtifactRepository(ArtifactRepository):
    """Artifacts under `oss://BUCKET/PREFIX`; paths given to its methods are relative to it.

    The class attributes are the limits; a test shrinks them to exercise paging, batching and
    multipart uploads with a few small objects.
    """

    list_page_size = LIST_PAGE
    delete_batch_size = DELETE_BATCH
    multipart_threshold = MULTIPART_THRESHOLD
    part_size = PART_SIZE
    timeout_s = TIMEOUT_S

    def __init__(
        self, artifact_uri: str, tracking_uri: str | None = None, registry_uri: str | None = None
    ) -> None:
        # Checked before the base class keeps the URI (its repr shows it): a URI carrying a
        # key is refused without being stored anywhere.
        try:
            location = parse_oss_uri(artifact_uri)
        except OssSettingError as error:
            raise MlflowException(
                f"artifact store: {error}", error_code=INVALID_PARAMETER_VALUE
            ) from None
        try:
            settings = OssSettings.from_env(
                purpose=f"the artifact store {location.uri}",
                where="where the tracking server (make mlflow-server) or the client writing to "
                "it starts",
            )
        except OssSettingError as error:
            raise MlflowException(str(error), error_code=INVALID_PARAMETER_VALUE) from None
        super().__init__(artifact_uri, tracking_uri=tracking_uri, registry_uri=registry_uri)
        self._location = location
        self._root = location.prefix.strip("/")
        self._endpoint = settings.endpoint
        self._bucket: oss2.Bucket = make_bucket(settings, location.bucket, self.timeout_s)

    # --- paths -----------------------------------------------------------------------------
    def _key(self, path: str | None) -> str:
        """The object key of a path relative to the repository root."""
        return "/".join(part for part in (self._root, (path or "").strip("/")) if part)

    def _uri(self, key: str) -> str:
        return self._location.key_uri(key)

    def _fail(self, error: BaseException, action: str) -> NoReturn:
        """Raise `error` as an MlflowException with the connector's safe message and the error
        code its kind calls for. Called from an except block; the original is not chained, so
        no traceback shows the service's error body."""
        failure = classify(error, action, self._endpoint)
        message = f"{failure.message}; retrying may help" if failure.transient else failure.message
        if failure.kind != "not_found":  # a missing object is the caller's answer, not news
            logger.warning("%s", message)
        raise MlflowException(message, error_code=_ERROR_CODES[failure.kind]) from None

    # --- upload ----------------------------------------------------------------------------
    def _upload(self, local: Path, relative: str) -> None:
        key = self._key(relative)
        size = local.stat().st_size
        multipart = size >= self.multipart_threshold
        # A multipart upload's checkpoint lives as long as the call: on the server the local
        # file is a fresh temporary copy of the request, which a later call never resumes.
        state = (
            tempfile.TemporaryDirectory(prefix="oss-upload-") if multipart else nullcontext(None)
        )
        try:
            with state as state_dir:
                upload_path(
                    self._bucket,
                    key,
                    local,
                    multipart_threshold=self.multipart_threshold,
                    part_size=self.part_size,
                    state_dir=Path(state_dir) if state_dir else None,
                )
        except _oss_errors() as error:
            self._fail(error, f"uploading {self._uri(key)}")
        logger.debug("uploaded %s (%d bytes%s)", self._uri(key), size, ", multipart" * multipart)

    def log_artifact(
        self, local_file: str | os.PathLike[str], artifact_path: str | None = None
    ) -> None:
        local = Path(local_file)
        if not local.is_file():
            raise MlflowException(
                f"cannot log {local}: it is not a file", error_code=INVALID_PARAMETER_VALUE
            )
        self._upload(local, posixpath.join(artifact_path or "", local.name))

    def log_artifacts(
        self, local_dir: str | os.PathLike[str], artifact_path: str | None = None
    ) -> None:
        """Every file under `local_dir`, its folders kept, uploaded on the repository's thread
        pool; the first failure is raised once all have finished."""
        root = Path(local_dir)
        if not root.is_dir():
            raise MlflowException(
                f"cannot log {root}: it is not a directory", error_code=INVALID_PARAMETER_VALUE
            )
        base = (artifact_path or "").strip("/")
        uploads: list[Future[None]] = []
        for folder, _, names in os.walk(root):
            relative = Path(folder).relative_to(root).as_posix()
            for name in sorted(names):
                parts = (base, "" if relative == "." else relative, name)
                destination = "/".join(part for part in parts if part)
                uploads.append(
                    self.thread_pool.submit(self._upload, Path(folder, name), destination)
                )
        errors = [error for upload in uploads if (error := upload.exception()) is not None]
        if errors:
            raise errors[0]

    # --- listing ---------------------------------------------------------------------------
    def _objects(
        self, prefix: str, delimiter: str = ""
    ) -> Iterator[oss2.models.SimplifiedObjectInfo]:
        """Every entry under `prefix`, page after page (one request per page, no retries)."""
        import oss2

        try:
            yield from oss2.ObjectIterator(
                self._bucket,
                prefix=prefix,
                delimiter=delimiter,
                max_keys=self.list_page_size,
                max_retries=1,
            )
        except _oss_errors() as error:
            self._fail(error, f"listing {self._uri(prefix)}")

    def list_artifacts(self, path: str | None = None) -> list[FileInfo]:
        """Files (with sizes) and folders directly under `path`; [] for a file or nothing."""
        relative = (path or "").strip("/")
        prefix = self._key(relative)
        prefix = f"{prefix}/" if prefix else ""
        infos: list[FileInfo] = []
        for entry in self._objects(prefix, delimiter="/"):
            name = entry.key[len(prefix) :].rstrip("/")
            if not name:  # the folder marker of `path` itself
                continue
            child = posixpath.join(relative, name) if relative else name
            if entry.is_prefix():
                infos.append(FileInfo(child, True, None))
            else:
                infos.append(FileInfo(child, False, int(entry.size)))
        return sorted(infos, key=lambda info: info.path)

    # --- download --------------------------------------------------------------------------
    def _download_file(self, remote_file_path: str, local_path: str | os.PathLike[str]) -> None:
        """Stream the object to `<local_path>.part`, renamed to `local_path` once oss2 has
        checked its length and CRC64; on any failure no file is left."""
        key = self._key(remote_file_path)
        target = Path(local_path)
        partial = target.with_name(f"{target.name}.part")
        try:
            self._bucket.get_object_to_file(key, str(partial))
        except BaseException as error:
            partial.unlink(missing_ok=True)
            if isinstance(error, _oss_errors()):
                self._fail(error, f"downloading {self._uri(key)}")
            raise
        partial.replace(target)

    # --- delete ----------------------------------------------------------------------------
    def delete_artifacts(self, artifact_path: str | None = None) -> None:
        """Every object at or under `artifact_path` (the whole root when None), deleted in
        batches as the listing goes; a path with nothing under it is not an error."""
        base = self._key(artifact_path)
        batch: list[str] = []
        deleted = 0
        for entry in self._objects(base):
            if _within(entry.key, base):
                batch.append(entry.key)
            if len(batch) >= self.delete_batch_size:
                deleted += self._delete_batch(batch, base)
                batch = []
        if batch:
            deleted += self._delete_batch(batch, base)
        logger.info("deleted %d objects under %s", deleted, self._uri(base))

    def _delete_batch(self, keys: list[str], base: str) -> int:
        try:
            self._bucket.batch_delete_objects(keys)
        except _oss_errors() as error:
            self._fail(error, f"deleting {len(keys)} objects under {self._uri(base)}")
        return len(keys)
