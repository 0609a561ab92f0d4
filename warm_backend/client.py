"""The flow process's side of the fork server: start it, talk to it, watch a forked child.

One server per flow process, started on first use, restarted
transparently when it has died, and stopped when the flow process exits (atexit, and the
lifeline pipe the server watches, which also covers a flow process that is killed).
"""

from __future__ import annotations

import atexit
import contextlib
import logging
import os
import select
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import psutil

from processes.lifeline import Lifeline
from warm_backend.protocol import decode_lines, encode

logger = logging.getLogger(__name__)

# Exit status reported for a child whose server died before reporting it (EX_TEMPFAIL: the
# same step may well succeed on a retry, with a fresh server).
EXIT_SERVER_LOST = 75
# How long the first request may wait for the server to import everything (a busy machine).
START_TIMEOUT_S = float(os.environ.get("WARM_FORK_START_TIMEOUT_S", "300"))
_POLL_S = 0.05


class WarmForkUnavailable(RuntimeError):
    """The fork server could not take the request; the caller runs the command another way."""


def _stdio_fds() -> tuple[list[int], list[int]]:
    """This process's fds 0, 1, 2 (what a subprocess would inherit); /dev/null where closed.
    Returns (fds to send, fds to close after sending)."""
    fds, opened = [], []
    for fd, mode in ((0, os.O_RDONLY), (1, os.O_WRONLY), (2, os.O_WRONLY)):
        try:
            os.fstat(fd)
            fds.append(fd)
        except OSError:
            null = os.open(os.devnull, mode)
            fds.append(null)
            opened.append(null)
    return fds, opened


class WarmServer:
    """One fork-server process and the Unix socket it listens on."""

    def __init__(self, project_root: Path) -> None:
        self.project_root = project_root
        self.directory = Path(tempfile.mkdtemp(prefix="warm-fork-"))
        self.socket_path = str(self.directory / "server.sock")
        self._lifeline = Lifeline()
        try:
            self.process = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "warm_backend.server",
                    "--socket",
                    self.socket_path,
                    "--lifeline-fd",
                    str(self._lifeline.child_end),
                ],
                cwd=str(project_root),
                stdin=subprocess.DEVNULL,
                pass_fds=(self._lifeline.child_end,),
                start_new_session=True,  # Ctrl-C reaches the flow, which decides
            )
        finally:
            self._lifeline.handed_over()
        logger.info("started warm-fork server %d for %s", self.process.pid, project_root)

    @property
    def alive(self) -> bool:
        return self.process.poll() is None

    def connect(self, timeout_s: float) -> socket.socket:
        """A connection to the server, waiting for it to finish importing on first start."""
        deadline = time.monotonic() + timeout_s
        while True:
            if not self.alive:
                raise WarmForkUnavailable(
                    f"the warm-fork server exited with {self.process.returncode}"
                )
            conn = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            try:
                conn.connect(self.socket_path)
                return conn
            except (FileNotFoundError, ConnectionRefusedError):
                conn.close()
            if time.monotonic() > deadline:
                raise WarmForkUnavailable(f"the warm-fork server was not ready in {timeout_s} s")
            time.sleep(_POLL_S)

    def stop(self, grace_s: float = 5.0) -> None:
        self._lifeline.cut()
        if self.alive:
            self.process.terminate()
            try:
                self.process.wait(grace_s)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        shutil.rmtree(self.directory, ignore_errors=True)


# The server runs from this checkout (its sys.path[0]); each child runs in its request's cwd.
PROJECT_ROOT = Path(__file__).resolve().parents[2]
_servers: dict[Path, WarmServer] = {}
_lock = threading.Lock()


def server_for(project_root: Path = PROJECT_ROOT) -> WarmServer:
    """The running server, started (or restarted, if it died) as needed."""
    with _lock:
        server = _servers.get(project_root)
        if server is not None and not server.alive:
            logger.warning(
                "warm-fork server %d had exited (%s); starting a new one",
                server.process.pid,
                server.process.returncode,
            )
            server.stop()
            server = None
        if server is None:
            if not _servers:
                atexit.register(shutdown_all)
            server = _servers[project_root] = WarmServer(project_root)
        return server


def prestart() -> None:
    """Start the server now (it imports for a few seconds) without waiting for it, so that it
    is ready by the time the first entry point is submitted."""
    try:
        server_for()
    except OSError as error:  # the first submit tries again, or falls back to a shell
        logger.warning("could not start the warm-fork server early: %s", error)


def shutdown_all() -> None:
    """Stop every server this process started (at exit; also handy in tests)."""
    with _lock:
        servers = list(_servers.values())
        _servers.clear()
    for server in servers:
        server.stop()


def _ask(conn: socket.socket, request: Mapping[str, Any], fds: Sequence[int] = ()) -> None:
    payload = encode(dict(request))
    sent = socket.send_fds(conn, [payload], list(fds)) if fds else conn.send(payload)
    if sent < len(payload):  # (sendall of nothing would still send, and may meet a closed peer)
        conn.sendall(payload[sent:])


def _answer(conn: socket.socket, server: WarmServer, timeout_s: float) -> dict[str, Any]:
    buffer = bytearray()
    deadline = time.monotonic() + timeout_s
    while True:
        readable, _, _ = select.select([conn], [], [], 0.5)
        if readable:
            data = conn.recv(65536)
            if not data:
                raise WarmForkUnavailable("the warm-fork server hung up")
            buffer.extend(data)
            messages = decode_lines(buffer)
            if messages:
                return messages[0]
        elif not server.alive:
            raise WarmForkUnavailable(f"the warm-fork server exited ({server.process.returncode})")
        if time.monotonic() > deadline:
            raise WarmForkUnavailable(f"no answer from the warm-fork server in {timeout_s} s")


def ping(timeout_s: float = START_TIMEOUT_S) -> dict[str, Any]:
    server = server_for()
    with server.connect(timeout_s) as conn:
        _ask(conn, {"op": "ping"})
        return _answer(conn, server, timeout_s)


def submit(
    module: str,
    args: Sequence[str],
    env: Mapping[str, str],
    cwd: str,
    timeout_s: float = START_TIMEOUT_S,
) -> WarmProcess:
    """Fork `python -m module args` in the warm server; a Popen-like handle of the child."""
    for attempt in (1, 2):
        server = server_for()
        try:
            conn = server.connect(timeout_s)
        except WarmForkUnavailable:
            if attempt == 2 or server.alive:
                raise
            continue  # it died while starting or since: once more with a fresh one
        fds, opened = _stdio_fds()
        try:
            request = {"op": "run", "module": module, "args": list(args), "env": dict(env)}
            _ask(conn, request | {"cwd": cwd}, fds)
            reply = _answer(conn, server, timeout_s)
        except (OSError, WarmForkUnavailable):
            conn.close()
            if attempt == 2 or server.alive:
                raise
            continue
        finally:
            for fd in opened:
                os.close(fd)
        if "pid" not in reply:
            conn.close()
            raise WarmForkUnavailable(f"the warm-fork server refused: {reply.get('error')}")
        return WarmProcess(conn, int(reply["pid"]), ["python", "-m", module, *args])
    raise WarmForkUnavailable("unreachable")  # pragma: no cover


class WarmProcess:
    """A child forked by the server, handled like `subprocess.Popen`: pid, poll(),
    wait(timeout) (raising subprocess.TimeoutExpired), send_signal/terminate/kill.

    The child is the server's child, not ours: its exit status arrives over the socket.
    """

    def __init__(self, conn: socket.socket, pid: int, args: Sequence[str]) -> None:
        self._conn: socket.socket | None = conn
        self._buffer = bytearray()
        self._orphaned = False
        self.pid = pid
        self.args = list(args)
        self.returncode: int | None = None

    def __repr__(self) -> str:
        return f"<WarmProcess pid={self.pid} returncode={self.returncode}>"

    def poll(self) -> int | None:
        if self.returncode is None:
            self._read(0.0)
        return self.returncode

    def wait(self, timeout: float | None = None) -> int:
        deadline = None if timeout is None else time.monotonic() + timeout
        while self.returncode is None:
            remaining = None if deadline is None else deadline - time.monotonic()
            if remaining is not None and remaining <= 0:
                raise subprocess.TimeoutExpired(self.args, timeout)  # type: ignore[arg-type]
            self._read(1.0 if remaining is None else min(remaining, 1.0))
        return self.returncode

    def send_signal(self, sig: int) -> None:
        if self.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.pid, sig)

    def terminate(self) -> None:
        self.send_signal(signal.SIGTERM)

    def kill(self) -> None:
        self.send_signal(signal.SIGKILL)

    def _read(self, timeout: float) -> None:
        if self._orphaned:
            self._watch_orphan(timeout)
            return
        if self._conn is None:
            return
        readable, _, _ = select.select([self._conn], [], [], timeout)
        if not readable:
            return
        try:
            data = self._conn.recv(4096)
        except OSError:
            data = b""
        if not data:
            self._lost_server()
            return
        self._buffer.extend(data)
        for message in decode_lines(self._buffer):
            if "exit" in message:
                self.returncode = int(message["exit"])
                self._close()

    def _lost_server(self) -> None:
        """The server died before reporting: the child (if still running) is an orphan now;
        wait for it to go, and report EXIT_SERVER_LOST since its own status is lost with it."""
        self._close()
        self._orphaned = True
        logger.warning(
            "the warm-fork server died while running pid %d; waiting for it to end", self.pid
        )

    def _watch_orphan(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while True:
            try:
                gone = psutil.Process(self.pid).status() == psutil.STATUS_ZOMBIE
            except psutil.NoSuchProcess:
                gone = True
            if gone:
                self.returncode = EXIT_SERVER_LOST
                return
            if time.monotonic() >= deadline:
                return
            time.sleep(min(0.1, max(0.0, deadline - time.monotonic())))

    def _close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def __del__(self) -> None:
        with contextlib.suppress(Exception):
            self._close()
