"""A credentialed, signed source URL leaves no trace: the real CLI, both backends, every store.

The loopback server answers only requests that carry the user's password (HTTP basic auth) and
the URL's signature, as a presigned S3 URL would. The pipeline gets the URL only through the
environment (`data.source='${oc.env:LISTINGS_URL}'`). While it runs, the argv of every process
on the machine is sampled; afterwards the password, the signature and the basic-auth header are
searched for in the bytes of every file the run left (MLflow's SQLite store and artifacts, the
W&B directory, Prefect's database and logs under a temporary PREFECT_HOME), in the CLI's
stdout and stderr, and in every command line seen.
"""

from __future__ import annotations

import base64
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import psutil
import pytest

from fault_injection.http_source import Behaviour, http_source
from steps.ingest.demo_data import generate_listings
from tests.services.conftest import base_env

USER = "pipelineuser"
PASSWORD = "Pw0rdSECRETq7Zk2"
SIGNATURE = "5ig5ECRET9f8e7d6c5b4a3"
CREDENTIAL = "AKIAFAKESECRET42/20260101/us-east-1/s3/aws4_request"
REFERENCE = "${oc.env:LISTINGS_URL}"
PIPELINE_TIMEOUT_S = 420.0
SAMPLE_EVERY_S = 0.05


def _secrets() -> dict[str, bytes]:
    basic = base64.b64encode(f"{USER}:{PASSWORD}".encode())
    return {
        "password": PASSWORD.encode(),
        "signature": SIGNATURE.encode(),
        "basic-auth header": basic,
        "credential key id": b"AKIAFAKESECRET42",
    }


class ArgvSampler:
    """The command line of every process on the machine, every ~50 ms, in a thread."""

    def __init__(self) -> None:
        self.seen: set[str] = set()
        self.samples = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, name="argv-sampler", daemon=True)

    def _sample(self) -> None:
        while not self._stop.is_set():
            for process in psutil.process_iter(["cmdline"]):
                cmdline = process.info.get("cmdline")
                if cmdline:
                    self.seen.add("\0".join(cmdline))
            self.samples += 1
            self._stop.wait(SAMPLE_EVERY_S)

    def __enter__(self) -> ArgvSampler:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join()


@dataclass(frozen=True)
class Finished:
    code: int | None
    stdout: str
    stderr: str
    root: Path
    argv: set[str]
    samples: int


@pytest.fixture(scope="module")
def signed_source() -> Iterator[tuple[str, Behaviour]]:
    """The loopback server and the full, secret URL of its listings."""
    body = generate_listings(2000, seed=17).to_csv(index=False).encode()
    behaviour = Behaviour(
        body=body,
        credentials=(USER, PASSWORD),
        signed_query={"X-Amz-Signature": SIGNATURE, "X-Amz-Credential": CREDENTIAL},
    )
    with http_source(behaviour) as url:
        host = url.split("://", 1)[1]
        query = (
            f"X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential={CREDENTIAL}"
            f"&X-Amz-Expires=900&X-Amz-Signature={SIGNATURE}"
        )
        yield f"http://{USER}:{PASSWORD}@{host}?{query}", behaviour


def _run_cli(root: Path, secret_url: str, overrides: list[str]) -> Finished:
    """`python -m flows.train_pipeline` with its own PREFECT_HOME (an ephemeral Prefect API and
    database there), tracking store and W&B directory, all under `root`."""
    root.mkdir(parents=True)
    env = base_env(root) | {
        "LISTINGS_URL": secret_url,
        "WANDB_MODE": "offline",
        "WANDB_DIR": str(root),
        "WANDB_SILENT": "true",
        # The ephemeral API starts on a loaded machine too (Prefect's default waits 20 s).
        "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "180",
    }
    command = [sys.executable, "-m", "flows.train_pipeline", *overrides]
    with ArgvSampler() as sampler:
        try:
            done = subprocess.run(
                command, env=env, cwd=root, capture_output=True, text=True,
                timeout=PIPELINE_TIMEOUT_S, check=False,
            )  # fmt: skip
            code, out, err = done.returncode, done.stdout, done.stderr
        except subprocess.TimeoutExpired as expired:
            code, out, err = None, str(expired.stdout), str(expired.stderr)
    return Finished(code, out, err, root, sampler.seen, sampler.samples)


def _leaks(finished: Finished) -> list[str]:
    """Where any secret appears: files (by path), stdout, stderr, a sampled command line."""
    found = []
    files = {p: p.read_bytes() for p in finished.root.rglob("*") if p.is_file()}
    texts = {
        "stdout": finished.stdout.encode(),
        "stderr": finished.stderr.encode(),
        **{f"argv {argv.replace(chr(0), ' ')[:200]}": argv.encode() for argv in finished.argv},
    }
    for name, secret in _secrets().items():
        for path, data in files.items():
            if secret in data:
                found.append(f"{name} in {path.relative_to(finished.root)}")
        found += [f"{name} in {where}" for where, data in texts.items() if secret in data]
    return found


@pytest.mark.parametrize("backend", ["warm-fork", "local"])
def test_a_signed_url_from_the_environment_is_stored_nowhere(
    backend: str, signed_source: tuple[str, Behaviour], tmp_path: Path
) -> None:
    secret_url, behaviour = signed_source
    served_before, refused_before = behaviour.requests, behaviour.refused
    started = time.monotonic()
    finished = _run_cli(
        tmp_path / backend,
        secret_url,
        [f"data.source={REFERENCE}", f"main.backend={backend}", "task.retries=0"],
    )
    seconds = time.monotonic() - started
    assert finished.code == 0, finished.stderr[-4000:]
    # The step really read the signed URL, credentials and signature included.
    assert behaviour.requests > served_before
    assert behaviour.refused == refused_before
    # The search looked where the traces are: each store holds the reference as written.
    mlflow_db = tmp_path / backend / "mlruns" / "mlflow.db"
    prefect_db = tmp_path / backend / "prefect-home" / "prefect.db"
    assert REFERENCE.encode() in mlflow_db.read_bytes()
    assert REFERENCE.encode() in prefect_db.read_bytes()
    assert list((tmp_path / backend).rglob("*.wandb"))
    assert list((tmp_path / backend / "mlruns" / "artifacts").rglob("*.parquet"))
    assert finished.samples > 10
    assert any("flows.train_pipeline" in argv for argv in finished.argv)
    if backend == "local":  # each step is a process of its own, with the source in its argv
        assert any("steps.ingest.get_data" in argv and REFERENCE in argv for argv in finished.argv)
    assert not _leaks(finished), _leaks(finished)
    print(f"{backend}: pipeline {seconds:.1f} s, {finished.samples} argv samples")  # noqa: T201


def test_the_secret_url_written_out_is_refused_and_nothing_is_stored(
    signed_source: tuple[str, Behaviour], tmp_path: Path
) -> None:
    secret_url, behaviour = signed_source
    served_before = behaviour.requests
    finished = _run_cli(tmp_path / "refused", secret_url, [f"data.source='{secret_url}'"])
    assert finished.code == 2, finished.stderr[-4000:]
    assert REFERENCE.replace("LISTINGS_URL", "NAME") in finished.stderr
    assert "credentials" in finished.stderr
    assert behaviour.requests == served_before
    assert not (tmp_path / "refused" / "mlruns").exists()
    assert not list((tmp_path / "refused").rglob("*.wandb"))
    # The CLI's own argv holds the URL (the user typed it): every other trace must not.
    finished.argv.difference_update(a for a in set(finished.argv) if "flows.train_pipeline" in a)
    assert not _leaks(finished), _leaks(finished)
