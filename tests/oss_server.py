"""A small Alibaba OSS-protocol server on loopback, for tests that run the real `oss2` client.

It speaks the part of the OSS REST API the pipeline and `flows.upload_data` use, with path-style
addressing (what oss2 uses for an IP endpoint such as http://127.0.0.1:PORT):

- ListObjects (V1: prefix, delimiter, marker, max-keys) and ListObjectsV2 (list-type=2:
  continuation-token, start-after), url-encoded keys, pagination by max-keys;
- GetObject (with Range), HeadObject, PutObject (ETag and x-oss-hash-crc64ecma returned, the
  body checked against Content-MD5 when sent), multipart upload (initiate, part, complete, abort),
  DeleteObject and DeleteMultipleObjects (POST ?delete, at most 1000 keys, Content-MD5 required);
- the V1 request signature (`Authorization: OSS AccessKeyId:Signature`, HMAC-SHA1 over the verb,
  Content-MD5, Content-Type, Date, the canonicalized x-oss-* headers and the canonicalized
  resource with its sub-resources), checked for the one configured key, plus the STS security
  token when one is configured, and the 15-minute clock-skew limit.

Faults are injected on demand (`fail_next`): an HTTP 503, a connection dropped halfway through
the body, or a response held back longer than the client's timeout. Every request is recorded
(`requests`), so a test can assert what the client did.
"""

from __future__ import annotations

import base64
import contextlib
import email.utils
import hashlib
import hmac
import socket
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Literal
from urllib.parse import parse_qsl, quote, unquote, urlsplit
from xml.etree import ElementTree

import crcmod

# CRC-64/ECMA-182, reflected (the "CRC-64/XZ" parameters): what OSS returns as x-oss-hash-crc64ecma.
_crc64 = crcmod.mkCrcFun(0x142F0E1EBA9EA3693, initCrc=0, rev=True, xorOut=0xFFFFFFFFFFFFFFFF)

# Query parameters that are part of the V1 canonicalized resource (OSS documentation, "Include
# signatures in the Authorization header"); every other parameter is left out of the signature.
SUBRESOURCES = frozenset(
    {
        "acl",
        "append",
        "bucketInfo",
        "cname",
        "comp",
        "continuation-token",
        "cors",
        "delete",
        "endTime",
        "img",
        "lifecycle",
        "live",
        "location",
        "logging",
        "objectMeta",
        "partNumber",
        "position",
        "qos",
        "referer",
        "replication",
        "replicationLocation",
        "replicationProgress",
        "response-cache-control",
        "response-content-disposition",
        "response-content-encoding",
        "response-content-language",
        "response-content-type",
        "response-expires",
        "restore",
        "security-token",
        "startTime",
        "stat",
        "status",
        "style",
        "styleName",
        "symlink",
        "tagging",
        "uploadId",
        "uploads",
        "versionId",
        "versioning",
        "versions",
        "website",
        "x-oss-process",
    }
)
MAX_CLOCK_SKEW_S = 15 * 60
_BODY_CHUNK = 1 << 16

FaultKind = Literal["503", "drop", "slow"]


def crc64(data: bytes) -> int:
    return int(_crc64(data))


@dataclass
class StoredObject:
    data: bytes
    etag: str
    crc64: int
    last_modified: float
    kind: str = "Normal"

    @classmethod
    def of(cls, data: bytes, etag: str | None = None, kind: str = "Normal") -> StoredObject:
        return cls(
            data=data,
            etag=etag or hashlib.md5(data).hexdigest().upper(),
            crc64=crc64(data),
            last_modified=time.time(),
            kind=kind,
        )


@dataclass
class Fault:
    kind: FaultKind
    method: str | None  # None: any method
    key_prefix: str | None  # None: any request; "" matches bucket-level requests too
    remaining: int
    delay_s: float = 0.0


@dataclass
class RecordedRequest:
    """One request as received; `status` is filled in once it is answered (0 until then)."""

    method: str
    bucket: str
    key: str
    query: dict[str, str]
    headers: dict[str, str]  # names in lower case
    status: int = 0


@dataclass
class _Upload:
    bucket: str
    key: str
    parts: dict[int, StoredObject] = field(default_factory=dict)


class OssError(Exception):
    def __init__(
        self, status: int, code: str, message: str, details: dict[str, str] | None = None
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.details = details or {}


class OssServer:
    """The server and its state; use as a context manager or call start()/stop()."""

    def __init__(
        self,
        access_key_id: str,
        access_key_secret: str,
        security_token: str | None = None,
        buckets: tuple[str, ...] = ("listings",),
    ) -> None:
        self.access_key_id = access_key_id
        self.access_key_secret = access_key_secret
        self.security_token = security_token
        self.buckets: dict[str, dict[str, StoredObject]] = {name: {} for name in buckets}
        self.requests: list[RecordedRequest] = []
        self._faults: list[Fault] = []
        self._uploads: dict[str, _Upload] = {}
        self._lock = threading.Lock()
        self._httpd: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # --- lifecycle -------------------------------------------------------------------------
    def start(self) -> OssServer:
        handler = type("BoundOssHandler", (_Handler,), {"server_state": self})
        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self._httpd.daemon_threads = True
        self._thread = threading.Thread(target=self._httpd.serve_forever, name="oss-server")
        self._thread.daemon = True
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
            self._httpd = None

    def __enter__(self) -> OssServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def endpoint(self) -> str:
        if self._httpd is None:
            raise RuntimeError("the server is not started")
        host, port = self._httpd.server_address[:2]
        return f"http://{host!s}:{port}"

    # --- state -----------------------------------------------------------------------------
    def put(self, bucket: str, key: str, data: bytes) -> StoredObject:
        stored = StoredObject.of(data)
        with self._lock:
            self.buckets.setdefault(bucket, {})[key] = stored
        return stored

    def get(self, bucket: str, key: str) -> StoredObject | None:
        with self._lock:
            return self.buckets.get(bucket, {}).get(key)

    def fail_next(
        self,
        kind: FaultKind,
        *,
        times: int = 1,
        method: str | None = "GET",
        key_prefix: str | None = None,
        delay_s: float = 0.0,
    ) -> None:
        """Inject a fault into the next `times` matching requests.

        "503" answers ServiceUnavailable; "drop" sends the headers and half the body of a GET,
        then closes the connection; "slow" holds the response back `delay_s` seconds.
        `key_prefix` limits the fault to object requests whose key starts with it.
        """
        with self._lock:
            self._faults.append(Fault(kind, method, key_prefix, times, delay_s))

    def clear_faults(self) -> None:
        with self._lock:
            self._faults.clear()

    def _take_fault(self, method: str, key: str) -> Fault | None:
        with self._lock:
            for fault in self._faults:
                if fault.method not in (None, method):
                    continue
                if fault.key_prefix is not None and not (key and key.startswith(fault.key_prefix)):
                    continue
                fault.remaining -= 1
                if fault.remaining <= 0:
                    self._faults.remove(fault)
                return fault
        return None

    def object_requests(self, method: str = "GET") -> list[RecordedRequest]:
        return [r for r in self.requests if r.method == method and r.key]


def _http_date(timestamp: float) -> str:
    return email.utils.formatdate(timestamp, usegmt=True)


def _iso8601(timestamp: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S.000Z", time.gmtime(timestamp))


def _xml(root: ElementTree.Element) -> bytes:
    return b'<?xml version="1.0" encoding="UTF-8"?>\n' + ElementTree.tostring(root)


def _child(
    parent: ElementTree.Element, tag: str, text: str | int | None = None
) -> ElementTree.Element:
    node = ElementTree.SubElement(parent, tag)
    if text is not None:
        node.text = str(text)
    return node


class _Handler(BaseHTTPRequestHandler):
    server_state: OssServer
    protocol_version = "HTTP/1.1"
    server_version = "AliyunOSS"
    sys_version = ""

    def log_message(self, format: str, *args: object) -> None:  # quiet: tests read .requests
        return

    # --- plumbing --------------------------------------------------------------------------
    def _parse(self) -> tuple[str, str, dict[str, str]]:
        parts = urlsplit(self.path)
        segments = parts.path.lstrip("/").split("/", 1)
        bucket = unquote(segments[0])
        key = unquote(segments[1]) if len(segments) > 1 else ""
        query = dict(parse_qsl(parts.query, keep_blank_values=True))
        return bucket, key, query

    def _read_body(self) -> bytes:
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            chunks = []
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    self.rfile.readline()
                    break
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
            return b"".join(chunks)
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    def _send(
        self,
        status: int,
        body: bytes = b"",
        headers: dict[str, str] | None = None,
        *,
        head: bool = False,
        length: int | None = None,
    ) -> None:
        self.send_response(status)
        request_id = uuid.uuid4().hex.upper()[:24]
        self.send_header("x-oss-request-id", request_id)
        self.send_header("Date", _http_date(time.time()))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(body) if length is None else length))
        self.end_headers()
        if not head and body:
            self.wfile.write(body)

    def _error(self, error: OssError, *, head: bool = False) -> None:
        root = ElementTree.Element("Error")
        _child(root, "Code", error.code)
        _child(root, "Message", error.message)
        _child(root, "RequestId", uuid.uuid4().hex.upper()[:24])
        _child(root, "HostId", "127.0.0.1")
        for tag, text in error.details.items():
            _child(root, tag, text)
        body = _xml(root)
        headers = {"Content-Type": "application/xml"}
        if head:  # HEAD has no body; OSS carries the error in a header instead
            headers["x-oss-err"] = base64.b64encode(body).decode()
            self._send(error.status, b"", headers, head=True, length=0)
            return
        self._send(error.status, body, headers)

    # --- signature -------------------------------------------------------------------------
    def _verify_signature(self, bucket: str, key: str, query: dict[str, str]) -> None:
        state = self.server_state
        authorization = self.headers.get("Authorization", "")
        if not authorization.startswith("OSS ") or ":" not in authorization:
            raise OssError(403, "AccessDenied", "AccessDenied: anonymous access is not allowed")
        access_key_id, _, signature = authorization[4:].rpartition(":")
        # Like OSS itself, the error bodies echo the key id (and the string to sign): a client
        # must never pass them on verbatim, which the secrets test checks.
        if not hmac.compare_digest(access_key_id, state.access_key_id):
            raise OssError(
                403,
                "InvalidAccessKeyId",
                "The OSS Access Key Id you provided does not exist in our records.",
                {"OSSAccessKeyId": access_key_id},
            )
        if state.security_token is not None:
            token = self.headers.get("x-oss-security-token", "")
            if not hmac.compare_digest(token, state.security_token):
                raise OssError(403, "InvalidSecurityToken", "The security token is invalid.")
        date = self.headers.get("x-oss-date") or self.headers.get("Date") or ""
        try:
            sent = email.utils.parsedate_to_datetime(date).timestamp()
        except (TypeError, ValueError):
            raise OssError(403, "AccessDenied", "The request has no valid Date header.") from None
        if abs(time.time() - sent) > MAX_CLOCK_SKEW_S:
            raise OssError(403, "RequestTimeTooSkewed", "The difference is more than 15 minutes.")
        string_to_sign = self.string_to_sign(bucket, key, query)
        expected = base64.b64encode(
            hmac.new(state.access_key_secret.encode(), string_to_sign.encode(), "sha1").digest()
        ).decode()
        if not hmac.compare_digest(signature, expected):
            raise OssError(
                403,
                "SignatureDoesNotMatch",
                "The request signature we calculated does not match the signature you provided.",
                {"StringToSign": string_to_sign, "OSSAccessKeyId": access_key_id},
            )

    def string_to_sign(self, bucket: str, key: str, query: dict[str, str]) -> str:
        canonical_headers = sorted(
            (name.lower(), value.strip())
            for name, value in self.headers.items()
            if name.lower().startswith("x-oss-")
        )
        headers_part = "".join(f"{name}:{value}\n" for name, value in canonical_headers)
        resource = f"/{bucket}/{key}" if bucket else "/"
        subresources = sorted((k, v) for k, v in query.items() if k in SUBRESOURCES)
        if subresources:
            resource += "?" + "&".join(f"{k}={v}" if v else k for k, v in subresources)
        return "\n".join(
            [
                self.command,
                self.headers.get("Content-MD5", ""),
                self.headers.get("Content-Type", ""),
                self.headers.get("x-oss-date") or self.headers.get("Date") or "",
                headers_part + resource,
            ]
        )

    # --- dispatch --------------------------------------------------------------------------
    def _handle(self) -> None:
        state = self.server_state
        bucket, key, query = self._parse()
        body = self._read_body() if self.command in ("PUT", "POST") else b""
        head = self.command == "HEAD"
        status = 200
        # Recorded before answering, so a client that got its answer always finds its request.
        headers = {name.lower(): value for name, value in self.headers.items()}
        record = RecordedRequest(self.command, bucket, key, query, headers)
        with state._lock:
            state.requests.append(record)
        try:
            fault = state._take_fault(self.command, key)
            if fault is not None and fault.kind == "slow":
                time.sleep(fault.delay_s)
            if fault is not None and fault.kind == "503":
                raise OssError(503, "ServiceUnavailable", "Please reduce your request rate.")
            self._verify_signature(bucket, key, query)
            if bucket not in state.buckets:
                raise OssError(404, "NoSuchBucket", "The specified bucket does not exist.")
            if not key:
                if self.command == "POST" and "delete" in query:
                    self._delete_many(bucket, query, body)
                elif self.command != "GET":
                    raise OssError(405, "MethodNotAllowed", "Only listing is supported here.")
                else:
                    self._list(bucket, query)
            elif self.command == "GET" and "uploadId" in query:
                self._list_parts(bucket, key, query)
            elif self.command in ("GET", "HEAD"):
                status = self._get(
                    bucket, key, head=head, drop=fault is not None and fault.kind == "drop"
                )
            elif self.command == "PUT":
                self._put(bucket, key, query, body)
            elif self.command == "POST":
                self._post(bucket, key, query, body)
            elif self.command == "DELETE":
                self._delete(bucket, key, query)
            else:
                raise OssError(405, "MethodNotAllowed", f"{self.command} is not supported.")
        except OssError as error:
            status = error.status
            self._error(error, head=head)
        except (TimeoutError, BrokenPipeError, ConnectionResetError):
            status = 499  # the client went away (e.g. it timed out first)
            self.close_connection = True
        finally:
            record.status = status

    do_GET = do_HEAD = do_PUT = do_POST = do_DELETE = _handle

    # --- operations ------------------------------------------------------------------------
    def _list(self, bucket: str, query: dict[str, str]) -> None:
        state = self.server_state
        v2 = query.get("list-type") == "2"
        prefix = query.get("prefix", "")
        delimiter = query.get("delimiter", "")
        url = query.get("encoding-type") == "url"
        try:
            max_keys = min(int(query.get("max-keys") or 100), 1000)
        except ValueError:
            raise OssError(400, "InvalidArgument", "max-keys must be an integer") from None
        if v2:
            token = query.get("continuation-token", "")
            after = (
                base64.urlsafe_b64decode(token).decode() if token else query.get("start-after", "")
            )
        else:
            after = query.get("marker", "")
        with state._lock:
            keys = sorted(k for k in state.buckets[bucket] if k.startswith(prefix) and k > after)
            objects = dict(state.buckets[bucket])

        contents: list[str] = []
        prefixes: list[str] = []
        last = ""
        truncated = False
        for name in keys:
            if delimiter:
                cut = name.find(delimiter, len(prefix))
                if cut >= 0:
                    common = name[: cut + len(delimiter)]
                    if prefixes and prefixes[-1] == common:
                        last = name
                        continue
                    if len(contents) + len(prefixes) >= max_keys:
                        truncated = True
                        break
                    prefixes.append(common)
                    last = name
                    continue
            if len(contents) + len(prefixes) >= max_keys:
                truncated = True
                break
            contents.append(name)
            last = name

        def encode(text: str) -> str:
            return quote(text, safe="/") if url else text

        root = ElementTree.Element("ListBucketResult")
        _child(root, "Name", bucket)
        _child(root, "Prefix", encode(prefix))
        if v2:
            _child(root, "StartAfter", encode(query.get("start-after", "")))
        else:
            _child(root, "Marker", encode(after))
        _child(root, "MaxKeys", max_keys)
        _child(root, "Delimiter", encode(delimiter))
        if url:
            _child(root, "EncodingType", "url")
        _child(root, "IsTruncated", "true" if truncated else "false")
        if truncated and v2:
            _child(root, "NextContinuationToken", base64.urlsafe_b64encode(last.encode()).decode())
        elif truncated:
            _child(root, "NextMarker", encode(last))
        if v2:
            _child(root, "KeyCount", len(contents) + len(prefixes))
        for name in contents:
            stored = objects[name]
            node = _child(root, "Contents")
            _child(node, "Key", encode(name))
            _child(node, "LastModified", _iso8601(stored.last_modified))
            _child(node, "ETag", f'"{stored.etag}"')
            _child(node, "Type", stored.kind)
            _child(node, "Size", len(stored.data))
            _child(node, "StorageClass", "Standard")
            if not v2 or query.get("fetch-owner") == "true":
                owner = _child(node, "Owner")
                _child(owner, "ID", "0")
                _child(owner, "DisplayName", "0")
        for common in prefixes:
            _child(_child(root, "CommonPrefixes"), "Prefix", encode(common))
        self._send(200, _xml(root), {"Content-Type": "application/xml"})

    def _list_parts(self, bucket: str, key: str, query: dict[str, str]) -> None:
        upload = self.server_state._uploads.get(query["uploadId"])
        if upload is None or (upload.bucket, upload.key) != (bucket, key):
            raise OssError(404, "NoSuchUpload", "The specified upload does not exist.")
        marker = int(query.get("part-number-marker") or 0)
        max_parts = min(int(query.get("max-parts") or 1000), 1000)
        numbers = sorted(n for n in upload.parts if n > marker)
        shown, truncated = numbers[:max_parts], len(numbers) > max_parts
        root = ElementTree.Element("ListPartsResult")
        _child(root, "Bucket", bucket)
        _child(root, "Key", key)
        _child(root, "UploadId", query["uploadId"])
        _child(root, "PartNumberMarker", marker)
        _child(root, "NextPartNumberMarker", shown[-1] if shown else marker)
        _child(root, "MaxParts", max_parts)
        _child(root, "IsTruncated", "true" if truncated else "false")
        for number in shown:
            part = upload.parts[number]
            node = _child(root, "Part")
            _child(node, "PartNumber", number)
            _child(node, "LastModified", _iso8601(part.last_modified))
            _child(node, "ETag", f'"{part.etag}"')
            _child(node, "HashCrc64ecma", part.crc64)
            _child(node, "Size", len(part.data))
        self._send(200, _xml(root), {"Content-Type": "application/xml"})

    def _object_headers(self, stored: StoredObject) -> dict[str, str]:
        return {
            "ETag": f'"{stored.etag}"',
            "Last-Modified": _http_date(stored.last_modified),
            "Content-Type": "application/octet-stream",
            "Accept-Ranges": "bytes",
            "x-oss-object-type": stored.kind,
            "x-oss-hash-crc64ecma": str(stored.crc64),
            "x-oss-storage-class": "Standard",
        }

    def _get(self, bucket: str, key: str, *, head: bool, drop: bool) -> int:
        stored = self.server_state.get(bucket, key)
        if stored is None:
            raise OssError(404, "NoSuchKey", "The specified key does not exist.")
        headers = self._object_headers(stored)
        data = stored.data
        status = 200
        byte_range = self.headers.get("Range", "")
        if byte_range.startswith("bytes="):
            start_text, _, end_text = byte_range[len("bytes=") :].partition("-")
            size = len(data)
            if start_text:
                start = int(start_text)
                end = min(int(end_text), size - 1) if end_text else size - 1
            else:  # suffix range: the last N bytes
                start, end = max(size - int(end_text), 0), size - 1
            if start < size and start <= end:
                status = 206
                headers["Content-Range"] = f"bytes {start}-{end}/{size}"
                data = data[start : end + 1]
            # an unsatisfiable range is ignored and the whole object served, as OSS does
        if head:
            self._send(status, b"", headers, head=True, length=len(data))
            return status
        if not drop:
            self.send_response(status)
            self.send_header("x-oss-request-id", uuid.uuid4().hex.upper()[:24])
            for name, value in headers.items():
                self.send_header(name, value)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            view = memoryview(data)
            for offset in range(0, len(view), _BODY_CHUNK):
                self.wfile.write(view[offset : offset + _BODY_CHUNK])
            return status
        # A dropped connection: full Content-Length announced, half the body sent, then gone.
        self.send_response(status)
        for name, value in headers.items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data[: len(data) // 2])
        self.wfile.flush()
        with contextlib.suppress(OSError):
            self.connection.shutdown(socket.SHUT_RDWR)
        self.close_connection = True
        return 598

    def _check_md5(self, body: bytes) -> None:
        sent = self.headers.get("Content-MD5")
        if sent and base64.b64encode(hashlib.md5(body).digest()).decode() != sent:
            raise OssError(400, "InvalidDigest", "The Content-MD5 you specified was invalid.")

    def _put(self, bucket: str, key: str, query: dict[str, str], body: bytes) -> None:
        state = self.server_state
        self._check_md5(body)
        if "uploadId" in query:
            upload = state._uploads.get(query["uploadId"])
            if upload is None or (upload.bucket, upload.key) != (bucket, key):
                raise OssError(404, "NoSuchUpload", "The specified upload does not exist.")
            part = StoredObject.of(body)
            with state._lock:
                upload.parts[int(query["partNumber"])] = part
            headers = {"ETag": f'"{part.etag}"', "x-oss-hash-crc64ecma": str(part.crc64)}
            self._send(200, b"", headers)
            return
        stored = state.put(bucket, key, body)
        headers = {"ETag": f'"{stored.etag}"', "x-oss-hash-crc64ecma": str(stored.crc64)}
        self._send(200, b"", headers)

    def _post(self, bucket: str, key: str, query: dict[str, str], body: bytes) -> None:
        state = self.server_state
        if "uploads" in query:
            upload_id = uuid.uuid4().hex.upper()
            with state._lock:
                state._uploads[upload_id] = _Upload(bucket, key)
            root = ElementTree.Element("InitiateMultipartUploadResult")
            _child(root, "Bucket", bucket)
            _child(root, "Key", key)
            _child(root, "UploadId", upload_id)
            self._send(200, _xml(root), {"Content-Type": "application/xml"})
            return
        if "uploadId" in query:
            upload = state._uploads.get(query["uploadId"])
            if upload is None or (upload.bucket, upload.key) != (bucket, key):
                raise OssError(404, "NoSuchUpload", "The specified upload does not exist.")
            try:
                listed = [
                    (int(_text(part, "PartNumber")), _text(part, "ETag").strip('"'))
                    for part in ElementTree.fromstring(body).findall("Part")
                ]
            except (ElementTree.ParseError, ValueError):
                raise OssError(
                    400, "MalformedXML", "The XML you provided was not well-formed."
                ) from None
            numbers = [number for number, _ in listed]
            if not listed or numbers != sorted(numbers):
                raise OssError(400, "InvalidPartOrder", "The list of parts was not in order.")
            chunks = []
            for number, etag in listed:
                part = upload.parts.get(number)
                if part is None or part.etag != etag:
                    raise OssError(400, "InvalidPart", f"Part {number} is missing or changed.")
                chunks.append(part.data)
            md5s = b"".join(bytes.fromhex(upload.parts[n].etag) for n in numbers)
            etag = f"{hashlib.md5(md5s).hexdigest().upper()}-{len(numbers)}"
            stored = StoredObject.of(b"".join(chunks), etag=etag, kind="Multipart")
            with state._lock:
                state.buckets[bucket][key] = stored
                del state._uploads[query["uploadId"]]
            root = ElementTree.Element("CompleteMultipartUploadResult")
            _child(root, "Location", f"{state.endpoint}/{bucket}/{quote(key)}")
            _child(root, "Bucket", bucket)
            _child(root, "Key", key)
            _child(root, "ETag", f'"{etag}"')
            headers = {
                "Content-Type": "application/xml",
                "ETag": f'"{etag}"',
                "x-oss-hash-crc64ecma": str(stored.crc64),
            }
            self._send(200, _xml(root), headers)
            return
        raise OssError(400, "InvalidArgument", "Unsupported POST request.")

    def _delete(self, bucket: str, key: str, query: dict[str, str]) -> None:
        state = self.server_state
        with state._lock:
            if "uploadId" in query:
                state._uploads.pop(query["uploadId"], None)
            else:
                state.buckets[bucket].pop(key, None)
        self._send(204)

    def _delete_many(self, bucket: str, query: dict[str, str], body: bytes) -> None:
        """DeleteMultipleObjects: the keys listed in the XML body; missing ones count as deleted,
        as on OSS. Quiet mode answers no keys."""
        if not self.headers.get("Content-MD5"):
            raise OssError(400, "MissingArgument", "Content-MD5 is required.")
        self._check_md5(body)
        try:
            root = ElementTree.fromstring(body)
            keys = [_text(node, "Key") for node in root.findall("Object")]
        except (ElementTree.ParseError, ValueError):
            raise OssError(
                400, "MalformedXML", "The XML you provided was not well-formed."
            ) from None
        if not keys or len(keys) > 1000:
            raise OssError(400, "MalformedXML", "Between 1 and 1000 keys may be deleted at once.")
        state = self.server_state
        with state._lock:
            for name in keys:
                state.buckets[bucket].pop(name, None)
        url = query.get("encoding-type") == "url"
        result = ElementTree.Element("DeleteResult")
        if url:
            _child(result, "EncodingType", "url")
        if (root.findtext("Quiet") or "false").lower() != "true":
            for name in keys:
                _child(_child(result, "Deleted"), "Key", quote(name, safe="/") if url else name)
        self._send(200, _xml(result), {"Content-Type": "application/xml"})


def _text(node: ElementTree.Element, tag: str) -> str:
    child = node.find(tag)
    if child is None or child.text is None:
        raise ValueError(tag)
    return child.text


@contextlib.contextmanager
def running_server(
    access_key_id: str, access_key_secret: str, security_token: str | None = None
) -> Iterator[OssServer]:
    with OssServer(access_key_id, access_key_secret, security_token) as server:
        yield server
