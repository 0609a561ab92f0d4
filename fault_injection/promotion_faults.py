"""SIGKILL a promoting pipeline inside the promote step's critical section, then audit.

Shared by the services tier (tests/services/test_promotion_lock.py) and `make bench-faults`.
A trial copies a seeded SQLite store (a champion and a better, trained candidate), starts
`python -m flows.train_pipeline main.steps=promote` in its own session and PREFECT_HOME, and
kills it at one of the named failpoints (steps/registry/failpoints.py, action `pause`) or at a
random moment of the promote step: either the whole process tree or only the flow's process
(whose step then runs on, orphaned). One clean pipeline run follows; the registry must then
satisfy every invariant `violations` lists, and nothing the trial started may be left running.
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

import mlflow
import psutil
from mlflow.exceptions import MlflowException

from steps.contract import HISTORY_TAG_PREFIX, INTENT_TAG
from steps.registry.failpoints import ENV as FAILPOINT_ENV
from steps.registry.failpoints import POINTS

PROMOTE_STEP = "steps.registry.promote"
# Short lease and timeout for the trials: a dead holder is reclaimed in seconds, and a run that
# still waits after the timeout fails the trial instead of hanging it.
LEASE_S = 8.0
LOCK_TIMEOUT_S = 180.0
TRIAL_OVERRIDES = (
    "main.steps=promote",
    "main.backend=local",
    "task.retries=0",
    f"promotion.lock_lease_s={LEASE_S:g}",
    f"promotion.lock_timeout_s={LOCK_TIMEOUT_S:g}",
)
RUN_TIMEOUT_S = 600.0


@dataclass(frozen=True)
class Trial:
    kill: str  # "tree": the flow and everything under it | "flow": the flow's process alone
    point: str | None  # a failpoint, or None for a random moment of the promote step
    delay_s: float = 0.0  # for a random moment: how long after the step process appeared

    @property
    def label(self) -> str:
        where = self.point or f"random +{self.delay_s:.1f} s"
        return f"kill {self.kill} at {where}"


@dataclass
class TrialResult:
    trial: Trial
    killed: bool
    recovery_code: int | None  # None: the clean run did not end in RUN_TIMEOUT_S
    lock_wait_s: float
    violations: list[str] = field(default_factory=list)
    left_running: list[str] = field(default_factory=list)
    seconds: float = 0.0
    tracking_uri: str = ""  # the trial's store, for further checks

    @property
    def survived(self) -> bool:
        return (
            self.killed
            and self.recovery_code == 0
            and not self.violations
            and not self.left_running
        )


def standard_trials(rng: random.Random, random_trials: int) -> list[Trial]:
    """The whole tree killed at every point; the flow alone at two points inside the move;
    then `random_trials` random moments, alternating the two kinds of kill."""
    trials = [Trial("tree", point) for point in POINTS]
    trials += [Trial("flow", point) for point in ("promote.alias_moved", "promote.history_written")]
    trials += [
        # From the step process's start: its imports, then the lock and the move (about 5 to
        # 20 s in on a loaded 2-core machine; run_until_killed halves a delay that was too long).
        Trial("tree" if i % 2 == 0 else "flow", None, round(rng.uniform(2.0, 16.0), 1))
        for i in range(random_trials)
    ]
    return trials


def pipeline_env(base: Mapping[str, str], root: Path, tracking_uri: str) -> dict[str, str]:
    """A pipeline's environment: its own PREFECT_HOME (so, without PREFECT_API_URL in `base`,
    its own temporary Prefect API), the trial's store, W&B offline."""
    env = {k: v for k, v in base.items() if not k.startswith(("MLFLOW_", "WANDB_"))}
    env |= {
        "PREFECT_HOME": str(root / "prefect-home"),
        "MLFLOW_TRACKING_URI": tracking_uri,
        "MLFLOW_DISABLE_TELEMETRY": "true",
        "WANDB_MODE": "offline",
        "WANDB_DIR": str(root),
        "DO_NOT_TRACK": "true",
        # A temporary Prefect API starts in 20 s by default; not always on a loaded 2-core box.
        "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "180",
        "PATH": os.pathsep.join([str(Path(sys.executable).parent), base.get("PATH", "")]),
    }
    env.pop(FAILPOINT_ENV, None)
    return env


def start_pipeline(
    overrides: Sequence[str], env: Mapping[str, str], workdir: Path, log: Path
) -> subprocess.Popen[bytes]:
    workdir.mkdir(parents=True, exist_ok=True)
    with log.open("ab") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "flows.train_pipeline", *overrides],
            env=dict(env),
            cwd=workdir,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )


def family(pid: int) -> list[psutil.Process]:
    """A process and all its descendants (the step runs in a session of its own, so a process
    group would miss it)."""
    try:
        root = psutil.Process(pid)
        return [root, *root.children(recursive=True)]
    except psutil.NoSuchProcess:
        return []


def _step_started(pid: int) -> bool:
    for process in family(pid):
        with contextlib.suppress(psutil.Error):
            if PROMOTE_STEP in " ".join(process.cmdline()):
                return True
    return False


def _wait_for(condition: object, popen: subprocess.Popen[bytes], timeout_s: float) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if callable(condition) and condition():
            return True
        if popen.poll() is not None:
            return False
        time.sleep(0.05)
    return False


def _kill(processes: Sequence[psutil.Process]) -> None:
    for process in processes:
        with contextlib.suppress(psutil.Error):
            process.send_signal(signal.SIGKILL)


def run_trial(
    trial: Trial,
    seed_db: Path,
    root: Path,
    base_env: Mapping[str, str],
    extra_overrides: Sequence[str] = (),
    registered_model: str = "housing_price",
) -> TrialResult:
    """One kill and one clean run after it, on a private copy of the seeded store."""
    started = time.monotonic()
    (root / "mlruns").mkdir(parents=True)
    shutil.copy(seed_db, root / "mlruns" / "mlflow.db")
    tracking_uri = f"sqlite:///{root / 'mlruns' / 'mlflow.db'}"
    env = pipeline_env(base_env, root, tracking_uri)
    overrides = [*TRIAL_OVERRIDES, *extra_overrides]
    marker = root / "failpoint-reached"
    faulty = dict(env)
    if trial.point:
        faulty[FAILPOINT_ENV] = f"{trial.point}:pause={marker}"
    log = root / "pipeline.log"
    popen = start_pipeline(overrides, faulty, root / "killed", log)
    everything: list[psutil.Process] = []
    killed_at, reached, code = time.time(), False, None
    try:
        if trial.point:
            reached = _wait_for(marker.exists, popen, RUN_TIMEOUT_S)
        else:
            reached = _wait_for(lambda: _step_started(popen.pid), popen, RUN_TIMEOUT_S)
            time.sleep(trial.delay_s)
            reached = reached and _step_started(popen.pid)
        everything = family(popen.pid)
        killed_at = time.time()
        if reached:
            _kill(everything if trial.kill == "tree" else everything[:1])
        popen.wait(timeout=60)
        recovery = start_pipeline(overrides, env, root / "recovery", log)
        try:
            code = recovery.wait(timeout=RUN_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            code = None
        everything += family(recovery.pid)
        # An orphaned step (flow-only kill) finishes on its own; give it the time it needs.
        psutil.wait_procs([p for p in everything if _is_step(p)], timeout=RUN_TIMEOUT_S / 2)
    finally:
        left = _leftovers(everything)
        _kill(everything)
    wait = lock_wait_after(tracking_uri, killed_at if reached else 0.0)
    return TrialResult(
        trial,
        reached,
        code,
        wait,
        violations(tracking_uri, registered_model),
        left,
        time.monotonic() - started,
        tracking_uri,
    )


def run_until_killed(
    trial: Trial, seed_db: Path, root: Path, base_env: Mapping[str, str], attempts: int = 4
) -> TrialResult:
    """A trial; one at a random moment that came after the step had ended is tried again with
    half the delay (a fresh copy of the store each time)."""
    result = run_trial(trial, seed_db, root / "attempt-0", base_env)
    for attempt in range(1, attempts):
        if result.killed or trial.point is not None:
            break
        trial = replace(trial, delay_s=round(trial.delay_s / 2, 1))
        result = run_trial(trial, seed_db, root / f"attempt-{attempt}", base_env)
    return result


def _is_step(process: psutil.Process) -> bool:
    with contextlib.suppress(psutil.Error):
        return PROMOTE_STEP in " ".join(process.cmdline())
    return False


def _leftovers(processes: Sequence[psutil.Process]) -> list[str]:
    """Steps and pipelines of the trial still alive after both runs ended (not counting a
    Prefect temporary server a SIGKILLed flow could not stop: issue 14 item 4)."""
    left = []
    for process in processes:
        with contextlib.suppress(psutil.Error):
            if process.is_running() and process.status() != psutil.STATUS_ZOMBIE:
                line = " ".join(process.cmdline())
                if PROMOTE_STEP in line or "flows.train_pipeline" in line:
                    left.append(line)
    return left


def lock_wait_after(tracking_uri: str, since: float) -> float:
    """The longest wait for the promotion lock of a promote run started after `since`."""
    client = mlflow.MlflowClient(tracking_uri=tracking_uri)
    ids = [e.experiment_id for e in client.search_experiments()]
    runs = client.search_runs(ids, "tags.`pipeline.step` = 'promote'", max_results=1000)
    waits = [
        run.data.metrics["lock_wait_s"]
        for run in runs
        if "lock_wait_s" in run.data.metrics and run.info.start_time >= since * 1000 - 1000
    ]
    return max(waits, default=0.0)


def violations(tracking_uri: str, name: str) -> list[str]:
    """Every broken invariant of the registry after a crash and one clean run, in words."""
    client = mlflow.MlflowClient(tracking_uri=tracking_uri, registry_uri=tracking_uri)
    found: list[str] = []
    model = client.get_registered_model(name)
    if INTENT_TAG in model.tags:
        found.append("an intent record was left behind")
    history = [
        json.loads(v) for k, v in sorted(model.tags.items()) if k.startswith(HISTORY_TAG_PREFIX)
    ]
    sequences = [int(entry["sequence"]) for entry in history]
    if sequences != list(range(1, len(history) + 1)):
        found.append(f"history sequences are {sequences}, not 1..{len(history)}")
    aliases: dict[str, str | None] = {}
    for alias in ("champion", "challenger"):
        try:
            aliases[alias] = str(client.get_model_version_by_alias(name, alias).version)
        except MlflowException:
            aliases[alias] = None
    champion = aliases["champion"]
    if champion is None:
        found.append("no champion")
    elif client.get_model_version(name, champion).status != "READY":
        found.append(f"champion version {champion} is not READY")
    if champion is not None and aliases["challenger"] == champion:
        found.append(f"the challenger alias is on the champion, version {champion}")
    for alias, version in aliases.items():
        entries = [entry for entry in history if entry.get("alias") == alias]
        if version is not None and (not entries or str(entries[-1]["to_version"]) != version):
            last = entries[-1]["to_version"] if entries else None
            found.append(f"{alias} is version {version} but its last history entry names {last}")
    holder = None
    for entry in (e for e in history if e.get("alias") == "champion"):
        if entry.get("action") == "promote" and entry.get("from_version") != holder:
            found.append(f"move #{entry['sequence']} starts from {entry.get('from_version')}")
        holder = str(entry["to_version"])
    versions = client.search_model_versions(f"name = '{name}'")
    runs = [str(v.run_id) for v in versions]
    if len(runs) != len(set(runs)):
        found.append(f"a training run is registered twice: {sorted(runs)}")
    tickets = client.search_model_versions(f"name = '{name}.promotion-lock'")
    if tickets:
        found.append(f"lock tickets left: {[t.version for t in tickets]}")
    return found


def best_version(tracking_uri: str, name: str) -> str:
    """The registered version with the lowest test MAE, by its review tag."""
    client = mlflow.MlflowClient(tracking_uri=tracking_uri, registry_uri=tracking_uri)
    versions = client.search_model_versions(f"name = '{name}'")
    return str(min(versions, key=lambda v: float(v.tags["test_mae"])).version)
