"""Alibaba Cloud OSS through `oss2`: locations, credentials from the environment, error kinds,
and the one upload path (a PUT, or a resumable multipart upload for large files).

Credentials never travel as parameters: `OssSettings.from_env()` reads `OSS_ACCESS_KEY_ID`,
`OSS_ACCESS_KEY_SECRET`, `OSS_ENDPOINT` and, for STS credentials, `OSS_SECURITY_TOKEN` from the
environment (which `.env` fills once at process start), in the process that needs them. Nothing
here puts a credential into a message, a repr or a log line; the service's own error bodies are
never passed on verbatim either, because OSS echoes the access key id (and the string to sign)
in them.
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Literal
from urllib.parse import urlsplit

from steps.common.url_secrets import redact_url

if TYPE_CHECKING:
    import oss2

SCHEME = "oss"
ENV_ACCESS_KEY_ID = "OSS_ACCESS_KEY_ID"
ENV_ACCESS_KEY_SECRET = "OSS_ACCESS_KEY_SECRET"
ENV_ENDPOINT = "OSS_ENDPOINT"
ENV_SECURITY_TOKEN = "OSS_SECURITY_TOKEN"
CREDENTIAL_VARIABLES = (ENV_ACCESS_KEY_ID, ENV_ACCESS_KEY_SECRET, ENV_SECURITY_TOKEN)
# Uploads from this size up are multipart (parallel parts of PART_SIZE, resumable).
MULTIPART_THRESHOLD = 64 << 20
PART_SIZE = 16 << 20
PARALLEL_PARTS = 4
# OSS bucket names: 3-63 characters, lowercase letters, digits and hyphens, no hyphen at the ends.
_BUCKET = re.compile(r"^[a-z0-9][a-z0-9-]{1,61}[a-z0-9]$")

# oss2 logs request headers (the Authorization header names the access key id, the STS token is
# a header) and its constructors log the key id, all at DEBUG. Keep it at WARNING whatever the
# process's log level.
logging.getLogger("oss2").setLevel(logging.WARNING)

FailureKind = Literal["transient", "credentials", "not_found", "permanent"]


class OssSettingError(ValueError):
    """A setting is missing or malformed; the message names the variable or key to fix."""


@dataclass(frozen=True)
class OssLocation:
    """`oss://BUCKET/PREFIX`: a bucket and a key prefix inside it (possibly a whole key)."""

    bucket: str
    prefix: str

    @property
    def uri(self) -> str:
        return f"{SCHEME}://{self.bucket}/{self.prefix}"

    def key_uri(self, key: str) -> str:
        return f"{SCHEME}://{self.bucket}/{key}"


def is_oss_uri(text: str) -> bool:
    return text.lower().startswith(f"{SCHEME}://")


def parse_oss_uri(text: str) -> OssLocation:
    """Split `oss://BUCKET/PREFIX`; credentials, queries or a bad bucket name are refused."""
    parts = urlsplit(text)
    if parts.scheme.lower() != SCHEME:
        raise OssSettingError(f"{text!r} is not an oss://BUCKET/PREFIX URI")
    if "@" in parts.netloc:
        raise OssSettingError(
            "an oss:// URI must not carry credentials; set OSS_ACCESS_KEY_ID and "
            "OSS_ACCESS_KEY_SECRET in the environment or in .env instead"
        )
    if parts.query or parts.fragment:
        raise OssSettingError(f"{redact_url(text)!r}: an oss:// URI takes no query or fragment")
    bucket = parts.netloc
    if not _BUCKET.match(bucket):
        raise OssSettingError(
            f"{bucket!r} is not a valid OSS bucket name (3-63 lowercase letters, digits and "
            "hyphens); write oss://BUCKET/PREFIX"
        )
    return OssLocation(bucket=bucket, prefix=parts.path.lstrip("/"))


@dataclass(frozen=True)
class OssSettings:
    """Where and as whom to connect. The repr shows the endpoint and nothing secret."""

    endpoint: str
    access_key_id: str = field(repr=False)
    access_key_secret: str = field(repr=False)
    security_token: str | None = field(default=None, repr=False)

    @classmethod
    def from_env(
        cls,
        environ: Mapping[str, str] | None = None,
        *,
        purpose: str = "reading oss://",
        where: str = "where the pipeline starts",
    ) -> OssSettings:
        """The settings in `environ` (os.environ by default); `purpose` and `where` word the
        error for the process that needs them (the pipeline, the tracking server)."""
        env = os.environ if environ is None else environ
        values = {
            name: (env.get(name) or "").strip() for name in (*CREDENTIAL_VARIABLES, ENV_ENDPOINT)
        }
        missing = [
            name
            for name in (ENV_ACCESS_KEY_ID, ENV_ACCESS_KEY_SECRET, ENV_ENDPOINT)
            if not values[name]
        ]
        if missing:
            raise OssSettingError(
                f"{purpose} needs {', '.join(missing)}: set "
                f"{'it' if len(missing) == 1 else 'them'} in the environment or in a .env file "
                f"{where} (OSS_SECURITY_TOKEN too for STS credentials)"
            )
        return cls(
            endpoint=normalize_endpoint(values[ENV_ENDPOINT]),
            access_key_id=values[ENV_ACCESS_KEY_ID],
            access_key_secret=values[ENV_ACCESS_KEY_SECRET],
            security_token=values[ENV_SECURITY_TOKEN] or None,
        )


def normalize_endpoint(endpoint: str) -> str:
    """`oss-cn-hangzhou.aliyuncs.com` -> `https://oss-cn-hangzhou.aliyuncs.com` (HTTPS unless
    a scheme is given, e.g. http://127.0.0.1:9000 for a local server)."""
    text = endpoint.strip().rstrip("/")
    if "://" not in text:
        text = f"https://{text}"
    parts = urlsplit(text)
    if parts.scheme not in ("http", "https") or not parts.netloc or parts.path or parts.query:
        raise OssSettingError(
            f"{ENV_ENDPOINT}={endpoint!r} is not an endpoint; give a host such as "
            "oss-cn-hangzhou.aliyuncs.com or a URL such as https://oss-cn-hangzhou.aliyuncs.com"
        )
    if "@" in parts.netloc:
        raise OssSettingError(f"{ENV_ENDPOINT} must not carry credentials")
    return text


def make_bucket(settings: OssSettings, bucket: str, timeout_s: float) -> oss2.Bucket:
    """An `oss2.Bucket` with CRC64 checks on, signing with the key (or STS token) in settings.

    `timeout_s` bounds connecting and each read from the socket. oss2 does not retry a failed
    request itself; callers decide what a failure means (see `classify`).
    """
    import oss2

    auth: oss2.Auth | oss2.StsAuth
    if settings.security_token:
        auth = oss2.StsAuth(
            settings.access_key_id, settings.access_key_secret, settings.security_token
        )
    else:
        auth = oss2.Auth(settings.access_key_id, settings.access_key_secret)
    return oss2.Bucket(auth, settings.endpoint, bucket, connect_timeout=timeout_s, enable_crc=True)


def upload_path(
    bucket: oss2.Bucket,
    key: str,
    local: Path,
    *,
    multipart_threshold: int = MULTIPART_THRESHOLD,
    part_size: int = PART_SIZE,
    state_dir: Path | None = None,
) -> oss2.models.PutObjectResult:
    """Put the file `local` at `key`: one PUT below `multipart_threshold`, from it a multipart
    upload with PARALLEL_PARTS parts in flight and a checkpoint under `state_dir` (oss2's
    ~/.py-oss-upload when None), so repeating a failed upload of the same file to the same key
    sends only the missing parts. CRC64 is checked either way (make_bucket turns it on).

    oss2's errors pass through unchanged: what a failure means is the caller's (`classify`).
    """
    import oss2

    store = oss2.ResumableStore(root=str(state_dir)) if state_dir else None
    return oss2.resumable_upload(
        bucket,
        key,
        str(local),
        store=store,
        multipart_threshold=multipart_threshold,
        part_size=part_size,
        num_threads=PARALLEL_PARTS,
    )


@dataclass(frozen=True)
class OssFailure:
    """What a failure means: whether a retry may help, and a message safe to show anywhere."""

    kind: FailureKind
    message: str

    @property
    def transient(self) -> bool:
        return self.kind == "transient"


_CREDENTIALS_HINT = f"check {ENV_ACCESS_KEY_ID} and {ENV_ACCESS_KEY_SECRET}"
_CODE_HINTS: dict[str, str] = {
    "InvalidAccessKeyId": f"the access key id is unknown: {_CREDENTIALS_HINT}",
    "SignatureDoesNotMatch": (
        f"the signature does not match: {ENV_ACCESS_KEY_SECRET} does not belong to "
        f"{ENV_ACCESS_KEY_ID}; {_CREDENTIALS_HINT}"
    ),
    "InvalidSecurityToken": (
        f"the STS token is invalid: check {ENV_SECURITY_TOKEN} (it must come with the "
        f"temporary {ENV_ACCESS_KEY_ID} and {ENV_ACCESS_KEY_SECRET} it was issued with)"
    ),
    "SecurityTokenExpired": (
        f"the STS token has expired: refresh {ENV_SECURITY_TOKEN}, {ENV_ACCESS_KEY_ID} and "
        f"{ENV_ACCESS_KEY_SECRET}"
    ),
    "AccessDenied": (
        f"access denied: the key in {ENV_ACCESS_KEY_ID}/{ENV_ACCESS_KEY_SECRET} lacks permission "
        "for this bucket or object (or the bucket belongs to another account)"
    ),
    "RequestTimeTooSkewed": "this machine's clock is more than 15 minutes off: fix the clock",
    "NoSuchBucket": f"the bucket does not exist at this endpoint: check the bucket in the URI and "
    f"{ENV_ENDPOINT} (the bucket's region)",
    "NoSuchKey": "the object does not exist (it may have been deleted): check the URI",
}


def classify(error: BaseException, action: str, endpoint: str | None = None) -> OssFailure:
    """Sort a failure of an OSS call into transient (retry) or permanent, with a safe message.

    Timeouts, dropped connections, 5xx and 429 answers and a CRC/size mismatch are transient;
    403 and bad credentials, 404 and other 4xx answers are permanent.
    """
    import oss2.exceptions
    import requests
    import urllib3.exceptions

    where = f" at {endpoint}" if endpoint else ""
    if isinstance(error, oss2.exceptions.InconsistentError):
        return OssFailure("transient", f"{action}: the data arrived corrupted (CRC64 mismatch)")
    if isinstance(error, oss2.exceptions.RequestError):
        return OssFailure(
            "transient", f"{action}: OSS{where} unreachable ({_reason(error.exception)})"
        )
    if isinstance(error, oss2.exceptions.ServerError):
        status, code = int(error.status), str(error.code or "")
        request = f" (request id {error.request_id})" if error.request_id else ""
        label = f"HTTP {status}{' ' + code if code else ''}"
        if status >= 500 or status == 429:
            return OssFailure("transient", f"{action}: OSS{where} answered {label}{request}")
        hint = _CODE_HINTS.get(code)
        if status == 403:
            hint = hint or f"access refused: {_CREDENTIALS_HINT}"
            return OssFailure("credentials", f"{action}: OSS answered {label}{request}; {hint}")
        if status == 404:
            hint = hint or "not found: check the URI"
            return OssFailure("not_found", f"{action}: OSS answered {label}{request}; {hint}")
        return OssFailure("permanent", f"{action}: OSS answered {label}{request}")
    if isinstance(
        error,
        requests.RequestException | urllib3.exceptions.HTTPError | ConnectionError | TimeoutError,
    ):
        return OssFailure(
            "transient", f"{action}: connection to OSS{where} failed ({_reason(error)})"
        )
    return OssFailure("permanent", f"{action}: {type(error).__name__}")


def _reason(error: BaseException) -> str:
    """A short cause with no URL or header in it (requests' messages carry the URL)."""
    import requests

    if isinstance(error, (requests.Timeout, TimeoutError)):
        return f"timed out: {type(error).__name__}"
    return type(error).__name__
