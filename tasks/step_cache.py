"""Step caching: a step whose inputs did not change is not run again.

The key of a step run is a digest of the entry point's name, its normalized parameters, the
digests of its input artifacts (content digests where the producing step published one, else
the artifact's URI) and the code version (a digest of the entry points' code and MLproject).
A finished run carrying the same key is reused: its outputs and metrics stand for the step.
Because a failed step leaves no finished run, re-running a pipeline that failed at step k
reuses steps 1..k-1 and starts at step k.
"""

from __future__ import annotations

import functools
import hashlib
import json
from collections.abc import Mapping
from pathlib import Path
from urllib.parse import unquote, urlparse

from mlflow.entities import Run
from prefect import task

from tasks.tracking_store import newest_finished_run

CACHE_TAG = "cache.key"
_CODE_GLOBS = ("steps/**/*.py", "MLproject", "conda.yml")
_CHUNK = 1 << 20


@functools.lru_cache(maxsize=4)
def code_version(project_root: Path) -> str:
    """A digest of everything that decides what an entry point computes."""
    digest = hashlib.sha256()
    for pattern in _CODE_GLOBS:
        for path in sorted(project_root.glob(pattern)):
            if "__pycache__" in path.parts:
                continue
            digest.update(str(path.relative_to(project_root)).encode())
            digest.update(path.read_bytes())
    return digest.hexdigest()


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


@task(name="fingerprint-source", persist_result=False)
def fingerprint_source(source: str) -> str | None:
    """What identifies a data source's content: None when only downloading it would tell."""
    if source == "demo":
        return "demo"
    parsed = urlparse(source)
    if parsed.scheme not in ("", "file"):
        return None  # remote sources change behind the same URL: never cached
    path = Path(unquote(parsed.path) if parsed.scheme == "file" else source)
    return f"sha256:{file_sha256(path)}" if path.is_file() else None


def cache_key(
    step: str,
    parameters: Mapping[str, str],
    input_digests: Mapping[str, str],
    code: str,
) -> str:
    payload = json.dumps(
        {"step": step, "parameters": dict(parameters), "inputs": dict(input_digests), "code": code},
        sort_keys=True,
    )
    return hashlib.sha256(payload.encode()).hexdigest()


def find_cached_run(experiment_id: str, key: str) -> Run | None:
    return newest_finished_run(experiment_id, CACHE_TAG, key)
