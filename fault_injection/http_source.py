"""A loopback HTTP server that serves listing files and misbehaves on demand.

Used by the tests of `data.source=http(s)://...`: real sockets, real `requests`, real retries.
"""

from __future__ import annotations

import base64
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit


@dataclass
class Behaviour:
    """What the server does with the next requests: a queue of faults, then `body`."""

    body: bytes = b""
    content_type: str = "text/csv"
    faults: list[int] = field(default_factory=list)  # HTTP status per request, 0: serve body
    delay_s: float = 0.0
    # > 0: send the body one byte at a time, this long apart (a server that drips).
    drip_s: float = 0.0
    # False: no Content-Length; the body ends when the connection closes.
    send_length: bool = True
    requests: int = 0
    # A credentialed, signed URL: HTTP basic auth (user, password) and query parameters that
    # must all be present; any request without them is answered 401/403, as S3 would.
    credentials: tuple[str, str] | None = None
    signed_query: dict[str, str] = field(default_factory=dict)
    refused: int = 0


class _Handler(BaseHTTPRequestHandler):
    behaviour: Behaviour

    def do_GET(self) -> None:
        behaviour = self.server.behaviour  # type: ignore[attr-defined]
        behaviour.requests += 1
        status = _refusal(behaviour, self.headers.get("Authorization", ""), self.path)
        if status:
            behaviour.refused += 1
        elif behaviour.faults:
            status = behaviour.faults.pop(0)
        if behaviour.delay_s:
            time.sleep(behaviour.delay_s)
        if status:
            self.send_response(status)
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        self.send_response(200)
        self.send_header("Content-Type", behaviour.content_type)
        if behaviour.send_length:
            self.send_header("Content-Length", str(len(behaviour.body)))
        self.end_headers()
        if not behaviour.drip_s:
            self.wfile.write(behaviour.body)
            return
        try:
            for index in range(len(behaviour.body)):
                self.wfile.write(behaviour.body[index : index + 1])
                self.wfile.flush()
                time.sleep(behaviour.drip_s)
        except OSError:  # the client gave up: what the drip tests want
            return

    def log_message(self, format: str, *args: object) -> None:  # keep test output quiet
        return


def _refusal(behaviour: Behaviour, authorization: str, path: str) -> int:
    """401 without the expected credentials, 403 without the expected signature, else 0."""
    if behaviour.credentials is not None:
        expected = base64.b64encode(":".join(behaviour.credentials).encode()).decode()
        if authorization != f"Basic {expected}":
            return 401
    query = parse_qs(urlsplit(path).query)
    if any(query.get(name) != [value] for name, value in behaviour.signed_query.items()):
        return 403
    return 0


@contextmanager
def http_source(behaviour: Behaviour) -> Iterator[str]:
    """Serve `behaviour` on 127.0.0.1; yields the URL of /listings.csv."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    server.behaviour = behaviour  # type: ignore[attr-defined]
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/listings.csv"
    finally:
        server.shutdown()
        server.server_close()
