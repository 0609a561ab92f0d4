"""Step caching: a step whose inputs did not change is not run again.

The key of a step run is a digest of the entry point's name, its normalized parameters, the
digests of its input artifacts (content digests where the producing step published one, else
the artifact's URI) and the code version: a digest of every project module the entry point
imports (connectors/ and tasks/ too, wherever it reaches them) plus MLproject, conda.yml and the
locked library versions (constraints.txt). A local source enters by its content digest, which
get_data checks against the bytes it reads.

A finished run carrying the same key is reused only if this pipeline wrote it: its parent run
vouches for it under that key, and each expected output is the run's own artifact whose content
still has its recorded digest. A run forged with a matching tag is passed over.
Because a failed step leaves no finished run, re-running a pipeline that failed at step k
reuses steps 1..k-1 and starts at step k.
"""

from __future__ import annotations

import ast
import functools
import hashlib
import json
import logging
import re
import tempfile
import tomllib
from collections.abc import Mapping, Sequence
from pathlib import Path
from urllib.parse import unquote, urlparse

import mlflow
import yaml
from mlflow.entities import Run
from mlflow.exceptions import MlflowException
from prefect import task

from steps.contract import (
    CACHE_TAG,
    DIGEST_TAG_PREFIX,
    PARENT_RUN_TAG,
    STEP_TAG,
    VOUCH_TAG_PREFIX,
    content_digest,
)
from tasks.tracking_store import outputs_of

logger = logging.getLogger(__name__)

_MAX_CANDIDATES = 20
# What decides an entry point's results besides its own imports: its command and environment
# (MLproject, conda.yml) and the exact version of every library (constraints.txt).
_ENVIRONMENT_FILES = ("MLproject", "conda.yml", "constraints.txt")
_MODULE_OF_COMMAND = re.compile(r"python\s+-m\s+([\w.]+)")


def step_module(project_root: Path, step: str) -> str:
    """The module MLproject runs for entry point `step` (`python -m MODULE ...`)."""
    entry_points = yaml.safe_load((project_root / "MLproject").read_text())["entry_points"]
    match = _MODULE_OF_COMMAND.search(entry_points[step]["command"])
    if match is None:
        raise ValueError(f"MLproject entry point {step!r} does not run `python -m MODULE`")
    return match.group(1)


def _module_file(project_root: Path, name: str) -> Path | None:
    """The project's file for module `name`, or None when it is not the project's."""
    base = project_root.joinpath(*name.split("."))
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


def _imported_names(path: Path, name: str) -> set[str]:
    """Every module `path` (module `name`) imports anywhere in its code, function bodies and
    relative imports included, plus `importlib.import_module("...")` with a literal name."""
    tree = ast.parse(path.read_bytes(), filename=str(path))
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                parts = package.split(".")
                parent = ".".join(parts[: len(parts) - node.level + 1])
                base = f"{parent}.{node.module}" if node.module else parent
            else:
                base = node.module or ""
            names.add(base)
            names.update(f"{base}.{alias.name}" for alias in node.names)  # submodules
        elif (
            isinstance(node, ast.Call)
            and getattr(node.func, "attr", getattr(node.func, "id", "")) == "import_module"
            and node.args
            and isinstance(node.args[0], ast.Constant)
            and isinstance(node.args[0].value, str)
        ):
            names.add(node.args[0].value)
    return names


def import_closure(project_root: Path, module: str) -> list[Path]:
    """The project's files that running `module` imports, directly or not: the module, every
    project module it reaches (steps/, connectors/, tasks/...) and each one's parent packages'
    `__init__.py` (run on import too). Third-party modules are covered by constraints.txt."""
    seen: dict[str, Path] = {}
    pending = [module]
    while pending:
        name = pending.pop()
        parts = name.split(".")
        # A module's parent packages run first; `a.b.c` also tries `a.b` when c is a name.
        for depth in range(1, len(parts) + 1):
            prefix = ".".join(parts[:depth])
            if prefix in seen:
                continue
            path = _module_file(project_root, prefix)
            if path is None:
                continue
            seen[prefix] = path
            pending.extend(_imported_names(path, prefix))
    return sorted(set(seen.values()))


def artifact_plugins(project_root: Path) -> list[str]:
    """The project's MLflow artifact-store plugins (pyproject entry points): MLflow imports
    them inside every step that reads or writes artifacts of such a store."""
    pyproject = tomllib.loads((project_root / "pyproject.toml").read_text())
    plugins = pyproject.get("project", {}).get("entry-points", {})
    targets = plugins.get("mlflow.artifact_repository", {}).values()
    return sorted(str(target).split(":", 1)[0] for target in targets)


@functools.lru_cache(maxsize=32)
def code_version(project_root: Path, step: str) -> str:
    """A digest of everything that decides what entry point `step` computes: the code of every
    project module it imports (its artifact-store plugins included), and the environment files
    (locked library versions included)."""
    digest = hashlib.sha256()
    files: set[Path] = set()
    for module in [step_module(project_root, step), *artifact_plugins(project_root)]:
        files.update(import_closure(project_root, module))
    for path in [*sorted(files), *(project_root / name for name in _ENVIRONMENT_FILES)]:
        digest.update(str(path.relative_to(project_root)).encode() + b"\0")
        digest.update(path.read_bytes() if path.is_file() else b"(absent)")
        digest.update(b"\0")
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
    return content_digest(path) if path.is_file() else None


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


def vouch_tag(run_id: str) -> str:
    """The tag by which a pipeline's parent run records that its child `run_id` ran under a
    cache key: a run claiming a key is reused only if its parent says so too."""
    return f"{VOUCH_TAG_PREFIX}{run_id}"


def find_cached_run(
    experiment_id: str, key: str, step: str, expected_outputs: Sequence[str]
) -> Run | None:
    """The newest FINISHED run carrying cache key `key` that this pipeline wrote (see
    `why_not_reusable`); candidates that fail the checks are logged and passed over."""
    candidates = mlflow.MlflowClient().search_runs(
        [experiment_id],
        f"tags.`{CACHE_TAG}` = '{key}' and attributes.status = 'FINISHED'",
        order_by=["attributes.start_time DESC"],
        max_results=_MAX_CANDIDATES,
    )
    for run in candidates:
        reason = why_not_reusable(run, key, step, expected_outputs)
        if reason is None:
            return run
        logger.warning(
            "%s: not reusing run %s although it carries the cache key: %s",
            step,
            run.info.run_id,
            reason,
        )
    return None


def why_not_reusable(run: Run, key: str, step: str, expected_outputs: Sequence[str]) -> str | None:
    """None when `run` is a genuine cached result of `step` under `key`: a run of that step,
    whose parent pipeline run recorded it under that key, with every expected output an
    artifact of its own whose content still has the digest it recorded. Else why not."""
    client = mlflow.MlflowClient()
    tags = run.data.tags
    run_id = run.info.run_id
    if tags.get(CACHE_TAG) != key:
        return "its cache key differs"
    if tags.get(STEP_TAG) != step:
        return f"it is a run of {tags.get(STEP_TAG)!r}, not of {step!r}"
    parent_id = tags.get(PARENT_RUN_TAG)
    if not parent_id:
        return "it has no parent pipeline run"
    try:
        parent = client.get_run(parent_id)
    except MlflowException:
        return f"its parent run {parent_id} does not exist"
    if parent.info.experiment_id != run.info.experiment_id:
        return "its parent run is in another experiment"
    if parent.data.tags.get(vouch_tag(run_id)) != key:
        return f"its parent run {parent_id} did not record it under this key"
    outputs = outputs_of(run)
    missing = sorted(set(expected_outputs) - set(outputs))
    if missing:
        return f"it lacks the outputs {missing}"
    for name in expected_outputs:
        problem = _output_problem(client, run, name, outputs[name])
        if problem:
            return problem
    return None


def _output_problem(client: mlflow.MlflowClient, run: Run, name: str, uri: str) -> str | None:
    """Why output `name` at `uri` is not the run's own, intact artifact (None when it is)."""
    run_id = run.info.run_id
    if uri.startswith(f"runs:/{run_id}/"):
        recorded = run.data.tags.get(f"{DIGEST_TAG_PREFIX}{name}")
        if not recorded:
            return f"output {name} has no recorded digest"
        with tempfile.TemporaryDirectory(prefix="cache-check-") as scratch:
            local = Path(mlflow.artifacts.download_artifacts(artifact_uri=uri, dst_path=scratch))
            if not local.is_file():
                return f"output {name} is not a file"
            actual = content_digest(local)
        if actual != recorded:
            return f"output {name}'s content does not match its recorded digest"
        return None
    model_id = uri.removeprefix("models:/")
    if uri.startswith("models:/m-") and "/" not in model_id:
        try:
            model = client.get_logged_model(model_id)
        except MlflowException:
            return f"output {name} ({uri}) does not exist"
        if model.source_run_id != run_id:
            return f"output {name} ({uri}) was logged by another run"
        return None
    return f"output {name} ({uri}) is not an artifact or model of the run itself"
