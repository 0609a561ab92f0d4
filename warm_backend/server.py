"""The fork server: import the entry points' heavy modules once, then fork a child per run.

    python -m warm_backend.server --socket PATH [--lifeline-fd FD]

The server is single-threaded (a selector loop, no threads ever, so forking is safe). Per
request it forks a child that takes the client's stdin/stdout/stderr, the request's environment,
working directory and argv, and runs the module as `__main__` like `python -m` would; the server
reaps the child and reports its exit status to the client. A crashed or killed child is just an
exit status here. The server exits when the lifeline pipe from its parent (the flow process)
reaches EOF, i.e. when the parent is gone, and on SIGTERM; it then terminates the children it
still has, since nobody is left to wait for them.
"""

from __future__ import annotations

import argparse
import atexit
import contextlib
import importlib
import os
import pkgutil
import runpy
import selectors
import signal
import socket
import sys
import threading
import time
import traceback
from pathlib import Path
from typing import Any, NoReturn

from processes.lifeline import owner_gone
from warm_backend.protocol import decode_lines, encode, exit_code_of

# What the entry points import, heaviest first; each is best effort (a missing optional module
# is simply imported, or not, by the child itself). Import only: no stores, no threads, no work.
PRELOAD_MODULES = (
    "numpy",
    "pandas",
    "pyarrow",
    "pyarrow.parquet",
    "pyarrow.csv",
    "pyarrow.compute",
    "scipy.sparse",
    "sklearn",
    "sklearn.pipeline",
    "sklearn.compose",
    "sklearn.preprocessing",
    "sklearn.impute",
    "sklearn.feature_extraction.text",
    "sklearn.ensemble",
    "sklearn.metrics",
    "sklearn.model_selection",
    "torch",
    "mlflow",
    "mlflow.tracking",
    "mlflow.entities",
    "mlflow.artifacts",
    "mlflow.models",
    "mlflow.pyfunc",
    "mlflow.sklearn",
    "mlflow.store.tracking.sqlalchemy_store",
    "mlflow.store.model_registry.sqlalchemy_store",
    "mlflow.store.artifact.local_artifact_repo",
    "mlflow.store.artifact.runs_artifact_repo",
    "sqlalchemy",
    "alembic",
    "pandera",
    "pandera.pandas",
    "wandb",
    "wandb.sdk.wandb_settings",
    # wandb.init imports these on every run (job-input detection): ~60 pydantic models whose
    # field docstrings pydantic extracts with inspect, >1 s each time.
    "wandb.apis.public",
    "wandb.sdk.launch",
    "matplotlib",
    "matplotlib.pyplot",
    "skops.io",
    "dotenv",
)
# The project's own entry-point code, imported after the libraries.
PRELOAD_PACKAGES = ("steps",)

_READ_CHUNK = 1 << 16
_MAX_FDS = 3


def _log(message: str) -> None:
    sys.stderr.write(f"warm-fork server [{os.getpid()}]: {message}\n")
    sys.stderr.flush()


def preload(modules: tuple[str, ...] = PRELOAD_MODULES) -> tuple[list[str], list[str]]:
    """Import the heavy modules once, here, so that every forked child finds them imported."""
    # Headless plotting, as the entry points select it themselves before importing pyplot.
    os.environ.setdefault("MPLBACKEND", "Agg")
    loaded, failed = [], []
    for name in modules:
        try:
            importlib.import_module(name)
            loaded.append(name)
        except Exception as error:  # optional or broken: the child imports it itself, or fails
            failed.append(f"{name} ({type(error).__name__}: {error})")
    # wandb builds its pydantic Settings class lazily; create (not initialise) it once here.
    with contextlib.suppress(Exception):
        import wandb

        wandb.Settings()
    # wandb.init lists the installed distributions (parsing ~200 METADATA files, 0.2-0.5 s) on
    # every run; the environment does not change under a flow, so list it once, here, and let
    # every child reuse the same list (wandb looks the function up at call time).
    with contextlib.suppress(Exception):
        import wandb.util

        installed = tuple(wandb.util.working_set())
        wandb.util.working_set = lambda: iter(installed)
    # MLflow maps every installed distribution to its modules (importlib_metadata over all
    # RECORD files, ~1 s) whenever a model is saved or loaded; the map is a module-level cache.
    with contextlib.suppress(Exception):
        from mlflow.utils import requirements_utils

        requirements_utils._init_packages_to_modules_map()
    for package_name in PRELOAD_PACKAGES:
        try:
            package = importlib.import_module(package_name)
        except Exception as error:
            failed.append(f"{package_name} ({type(error).__name__}: {error})")
            continue
        for info in pkgutil.walk_packages(package.__path__, prefix=f"{package_name}."):
            try:
                importlib.import_module(info.name)
                loaded.append(info.name)
            except Exception as error:
                failed.append(f"{info.name} ({type(error).__name__}: {error})")
    return loaded, failed


def _limit_threads(value: str | None) -> None:
    """Apply the request's OMP_NUM_THREADS to the libraries preloaded here: they read it when
    they were imported, in the server, so a fresh value in the child alone would not reach
    them (a sweep gives each of its parallel steps a share of the cores this way)."""
    if not value or not value.isdigit() or int(value) < 1:
        return
    threads = int(value)
    try:
        from threadpoolctl import threadpool_limits

        threadpool_limits(limits=threads)  # OpenMP and BLAS pools, for this process
    except ImportError:  # pragma: no cover - scikit-learn brings threadpoolctl
        pass
    torch = sys.modules.get("torch")
    if torch is not None:
        torch.set_num_threads(threads)


def _run_child(request: dict[str, Any], fds: list[int]) -> int:
    """In the forked child: become `python -m module args` in the request's environment."""
    for number, fd in enumerate(fds[:_MAX_FDS]):
        os.dup2(fd, number)
    for fd in fds:
        if fd > 2:
            os.close(fd)
    os.environ.clear()
    os.environ.update(request["env"])
    _limit_threads(os.environ.get("OMP_NUM_THREADS"))
    cwd = request["cwd"]
    os.chdir(cwd)
    os.environ["PWD"] = cwd
    # `python -m` puts the working directory first on sys.path.
    if sys.path and sys.path[0] in ("", _SERVER_PATH0):
        sys.path[0] = cwd
    else:
        sys.path.insert(0, cwd)
    module = request["module"]
    sys.argv = [module, *request["args"]]
    # Run the module's code afresh as __main__, as `python -m` does; the preloaded copy would
    # otherwise sit beside it in sys.modules (and runpy warns about exactly that).
    sys.modules.pop(module, None)
    # A fresh interpreter draws numpy's global seed from the OS; a forked one would share it.
    numpy = sys.modules.get("numpy")
    if numpy is not None:
        numpy.random.seed()
    # Diagnostics: WARM_FORK_PROFILE_DIR=dir writes a cProfile of each child's run there.
    profile_dir = os.environ.get("WARM_FORK_PROFILE_DIR")
    profiler = None
    if profile_dir:
        import cProfile

        profiler = cProfile.Profile()
        profiler.enable()
    try:
        runpy.run_module(module, run_name="__main__", alter_sys=True)
        code = 0
    except SystemExit as exit_:
        if exit_.code is not None and not isinstance(exit_.code, int):
            sys.stderr.write(f"{exit_.code}\n")
        code = exit_code_of(exit_.code)
    except BaseException:
        traceback.print_exc()
        code = 1
    if profiler is not None and profile_dir:
        profiler.disable()
        profiler.dump_stats(os.path.join(profile_dir, f"{module}-{os.getpid()}.prof"))
    return code


def _finish_child(code: int) -> NoReturn:
    """What interpreter shutdown does, then leave without unwinding into the server's frames."""
    try:
        shutdown = getattr(threading, "_shutdown", None)
        if shutdown is not None:
            shutdown()  # join non-daemon threads, as at the end of a normal run
        atexit._run_exitfuncs()
    except BaseException:
        traceback.print_exc()
        code = code or 1
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):
            stream.flush()
    os._exit(code)


_SERVER_PATH0 = sys.path[0] if sys.path else ""


class ForkServer:
    def __init__(self, socket_path: str, lifeline_fd: int | None) -> None:
        self.socket_path = socket_path
        self.lifeline_fd = lifeline_fd
        self.selector = selectors.DefaultSelector()
        self.children: dict[int, socket.socket | None] = {}
        self.listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.wake_r, self.wake_w = os.pipe()
        self.stopping = False

    # -- set-up -------------------------------------------------------------------------------
    def open(self) -> None:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.socket_path)
        self.listener.bind(self.socket_path)
        os.chmod(self.socket_path, 0o600)
        self.listener.listen(64)
        self.listener.setblocking(False)
        self.selector.register(self.listener, selectors.EVENT_READ, "accept")
        os.set_blocking(self.wake_r, False)
        os.set_blocking(self.wake_w, False)
        signal.set_wakeup_fd(self.wake_w, warn_on_full_buffer=False)
        signal.signal(signal.SIGCHLD, lambda *_: None)
        signal.signal(signal.SIGTERM, self._stop)
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # the flow process decides, not Ctrl-C
        self.selector.register(self.wake_r, selectors.EVENT_READ, "wake")
        if self.lifeline_fd is not None:
            self.selector.register(self.lifeline_fd, selectors.EVENT_READ, "lifeline")

    def _stop(self, *_: Any) -> None:
        self.stopping = True

    # -- loop ---------------------------------------------------------------------------------
    def serve(self) -> None:
        while not self.stopping:
            for key, _ in self.selector.select(timeout=1.0):
                if key.data == "accept":
                    self._accept()
                elif key.data == "wake":
                    with contextlib.suppress(BlockingIOError):
                        os.read(self.wake_r, 4096)
                elif key.data == "lifeline":
                    if owner_gone(self.lifeline_fd):  # type: ignore[arg-type]
                        self.stopping = True  # the flow process is gone
                elif isinstance(key.data, tuple):
                    self._client_event(key.fileobj, key.data[1])  # type: ignore[arg-type]
            self._reap()
        self.close()

    def _accept(self) -> None:
        try:
            conn, _ = self.listener.accept()
        except BlockingIOError:
            return
        conn.settimeout(10.0)
        try:
            request, fds = self._read_request(conn)
        except Exception as error:
            self._reply(conn, {"error": f"bad request: {error}"})
            conn.close()
            return
        try:
            self._handle(conn, request, fds)
        finally:
            for fd in fds:
                with contextlib.suppress(OSError):
                    os.close(fd)

    @staticmethod
    def _read_request(conn: socket.socket) -> tuple[dict[str, Any], list[int]]:
        buffer = bytearray()
        fds: list[int] = []
        while b"\n" not in buffer:
            data, received, _, _ = socket.recv_fds(conn, _READ_CHUNK, _MAX_FDS)
            fds.extend(received)
            if not data:
                raise ConnectionError("closed before a whole request arrived")
            buffer.extend(data)
        (request,) = decode_lines(buffer)[:1]
        return request, fds

    def _handle(self, conn: socket.socket, request: dict[str, Any], fds: list[int]) -> None:
        op = request.get("op")
        if op == "ping":
            self._reply(conn, {"pong": os.getpid(), "children": len(self.children)})
            conn.close()
            return
        if op == "shutdown":
            self._reply(conn, {"ok": True})
            conn.close()
            self.stopping = True
            return
        if op != "run":
            self._reply(conn, {"error": f"unknown op {op!r}"})
            conn.close()
            return
        for stream in (sys.stdout, sys.stderr):
            stream.flush()
        pid = os.fork()
        if pid == 0:  # the child: never returns into the server loop
            code = 1
            try:
                self._become_child(conn)
                code = _run_child(request, fds)
            finally:
                _finish_child(code)
        self.children[pid] = conn
        if self._reply(conn, {"pid": pid}):
            conn.setblocking(False)
            self.selector.register(conn, selectors.EVENT_READ, ("client", pid))
        else:
            self.children[pid] = None

    def _become_child(self, conn: socket.socket) -> None:
        """Drop everything that is the server's: handlers, sockets, pipes, other clients."""
        signal.set_wakeup_fd(-1)
        signal.signal(signal.SIGCHLD, signal.SIG_DFL)
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        signal.signal(signal.SIGINT, signal.default_int_handler)
        os.setsid()  # its own process group, like `mlflow run`'s children
        with contextlib.suppress(Exception):
            self.selector.close()
        for other in self.children.values():
            if other is not None:
                other.close()
        conn.close()
        self.listener.close()
        os.close(self.wake_r)
        os.close(self.wake_w)
        if self.lifeline_fd is not None:
            os.close(self.lifeline_fd)

    @staticmethod
    def _reply(conn: socket.socket, message: dict[str, Any]) -> bool:
        try:
            conn.sendall(encode(message))
            return True
        except OSError:
            return False

    def _client_event(self, conn: socket.socket, pid: int) -> None:
        """A client hung up (or sent something it should not): forget it, keep the child."""
        try:
            data = conn.recv(4096)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            data = b""
        if not data:
            self.selector.unregister(conn)
            conn.close()
            if self.children.get(pid) is conn:
                self.children[pid] = None

    def _reap(self) -> None:
        while self.children:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                self.children.clear()
                return
            if pid == 0:
                return
            conn = self.children.pop(pid, None)
            if conn is None:
                continue
            with contextlib.suppress(KeyError, ValueError):
                self.selector.unregister(conn)
            conn.setblocking(True)
            self._reply(conn, {"exit": os.waitstatus_to_exitcode(status)})
            conn.close()

    def close(self) -> None:
        """Stop: terminate the children nobody will wait for, then leave."""
        for pid in list(self.children):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + 5.0
        while self.children and time.monotonic() < deadline:
            self._reap()
            time.sleep(0.05)
        for pid in list(self.children):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        self._reap()
        self.listener.close()
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.socket_path)
        # The client made a private folder for the socket; a client that was killed cannot
        # remove it, so the server does (only if empty).
        with contextlib.suppress(OSError):
            os.rmdir(os.path.dirname(self.socket_path))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="warm-fork-server", description=__doc__)
    parser.add_argument("--socket", required=True, help="Unix socket path to listen on")
    parser.add_argument("--lifeline-fd", type=int, default=None, help="EOF here: parent gone")
    parser.add_argument("--no-preload", action="store_true", help="fork a bare interpreter")
    args = parser.parse_args(argv)
    started = time.perf_counter()
    server = ForkServer(args.socket, args.lifeline_fd)
    if not args.no_preload:
        _, failed = preload()
        if failed:
            _log("not preloaded (imported by the children themselves): " + "; ".join(failed))
    if threading.active_count() > 1:
        _log(f"{threading.active_count()} threads after preloading; forking is still done")
    server.open()
    if os.environ.get("WARM_FORK_VERBOSE"):
        _log(f"ready in {time.perf_counter() - started:.2f} s on {Path(args.socket).name}")
    server.serve()
    return 0


if __name__ == "__main__":
    sys.exit(main())
