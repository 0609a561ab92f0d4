"""The promotion lock and transaction under SIGKILL and under real concurrency, process by process.

One seeded SQLite store (a random-forest champion, a better torch-lasso candidate trained and
evaluated) is copied for each trial and race. Fault trials kill `main.steps=promote` pipelines
inside the critical section (fault_injection/promotion_faults.py) and audit the registry after one
clean run. Races start two pipelines in separate OS processes, each with its own PREFECT_HOME, that
promote different candidates to a fresh registered model at the same moment: once sharing only
the tracking store (each its own temporary Prefect API), once sharing a Prefect server too.
(Separate processes sharing only a real `mlflow server` on PostgreSQL: test_tracking_server.py.)
"""

from __future__ import annotations

import json
import os
import random
import shutil
import subprocess
from pathlib import Path

import mlflow
import pytest

from fault_injection.promotion_faults import (
    LEASE_S,
    LOCK_TIMEOUT_S,
    RUN_TIMEOUT_S,
    TrialResult,
    best_version,
    pipeline_env,
    run_until_killed,
    standard_trials,
    start_pipeline,
    violations,
)
from tests.services.conftest import SMALL_RUN, PrefectServer, base_env, output_dir

SEED_RUNS = (
    [*SMALL_RUN, "model=random_forest", "model.n_estimators=40"],  # the whole pipeline: v1
    ["main.steps=train,evaluate", "task.retries=0", "model=torch_lasso"],
)
CANDIDATES = {
    "random-forest": ["model=random_forest", "model.n_estimators=40"],
    "lasso": ["model=torch_lasso"],
}
# Races per case: the case that shares only the tracking store (what two machines share) gets
# PROMOTION_RACES, the one that also shares a Prefect API one less (at least one).
RACES = int(os.environ.get("PROMOTION_RACES", "2"))
RANDOM_TRIALS = int(os.environ.get("PROMOTION_FAULT_RANDOM_TRIALS", "2"))


@pytest.fixture(scope="module")
def seed(prefect_server: PrefectServer, services_home: Path) -> Path:
    root = services_home / "promotion-seed"
    uri = f"sqlite:///{root / 'mlruns' / 'mlflow.db'}"
    env = pipeline_env(prefect_server.client_env(), root, uri)
    for number, overrides in enumerate(SEED_RUNS):
        log = root / f"seed-{number}.log"
        root.mkdir(exist_ok=True)
        code = start_pipeline(overrides, env, root / "work", log).wait(timeout=RUN_TIMEOUT_S)
        assert code == 0, log.read_text()[-4000:]
    return root / "mlruns" / "mlflow.db"


def _table(results: list[TrialResult]) -> str:
    return "\n".join(
        f"{r.trial.label}: killed={r.killed} recovery_exit={r.recovery_code} "
        f"lock_wait={r.lock_wait_s:.1f}s {r.seconds:.0f}s {r.violations} {r.left_running}"
        for r in results
    )


def test_sigkill_inside_promote_at_each_point_and_at_random_is_repaired_by_the_next_run(
    seed: Path, services_home: Path, prefect_server: PrefectServer
) -> None:
    rng = random.Random(int(os.environ.get("PROMOTION_FAULT_SEED", "14")))
    trials = standard_trials(rng, RANDOM_TRIALS)
    # PROMOTION_FAULT_ONLY=3,8: those trials alone (a quick look at one failing kill).
    only = os.environ.get("PROMOTION_FAULT_ONLY")
    if only:
        trials = [trials[int(i)] for i in only.split(",")]
    results = []
    for number, trial in enumerate(trials):
        root = services_home / "promotion-faults" / f"trial-{number}"
        # Each pipeline its own PREFECT_HOME, on the session's Prefect server (a temporary API per
        # process would double the time of a trial; the races and `make bench-faults` use one).
        result = run_until_killed(trial, seed, root, prefect_server.client_env())
        results.append(result)
        best = best_version(result.tracking_uri, "housing_price")
        client = mlflow.MlflowClient(tracking_uri=result.tracking_uri)
        champion = str(client.get_model_version_by_alias("housing_price", "champion").version)
        if champion != best:
            result.violations.append(f"champion {champion} is not the best version {best}")
    longest = max(r.lock_wait_s for r in results)
    kills = sum(r.killed for r in results)
    survived = sum(r.survived for r in results)
    summary = (
        f"{len(results)} trials, {kills} kills, {survived} survived, longest wait for the lock "
        f"after a kill {longest:.1f} s (lease {LEASE_S:g} s, timeout {LOCK_TIMEOUT_S:g} s)\n"
    )
    # Kept for a person to look at (SERVICES_OUTPUT_DIR under make test-services).
    report = output_dir(services_home / "promotion-faults") / "promotion-faults.txt"
    report.write_text(_table(results) + "\n" + summary)
    failed = [r for r in results if not r.survived]
    assert not failed, _table(results)
    assert longest < LOCK_TIMEOUT_S / 4, _table(results)


def _race(
    seed: Path, root: Path, name: str, base: dict[str, str] | None, home: Path
) -> tuple[str, list[str]]:
    (root / "mlruns").mkdir(parents=True)
    shutil.copy(seed, root / "mlruns" / "mlflow.db")
    uri = f"sqlite:///{root / 'mlruns' / 'mlflow.db'}"
    running = {}
    for label, overrides in CANDIDATES.items():
        own = root / label
        env = pipeline_env(base if base is not None else base_env(own), own, uri)
        running[label] = start_pipeline(
            [
                "main.steps=train,evaluate,promote",
                "main.backend=local",
                "task.retries=2",
                f"main.registered_model={name}",
                "promotion.lock_lease_s=5",
                *overrides,
            ],
            env,
            own / "work",
            root / f"{label}.log",
        )
    for label, popen in running.items():
        try:
            code = popen.wait(timeout=RUN_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            popen.kill()
            code = None
        assert code == 0, (root / f"{label}.log").read_text()[-4000:]
    problems = violations(uri, name)
    client = mlflow.MlflowClient(tracking_uri=uri)
    champion = str(client.get_model_version_by_alias(name, "champion").version)
    if champion != best_version(uri, name):
        problems.append(f"champion {champion} is not the best version")
    tags = client.get_registered_model(name).tags
    history = [json.loads(v) for k, v in sorted(tags.items()) if k.startswith("history.")]
    if len(history) != 2 or len(client.search_model_versions(f"name = '{name}'")) != 2:
        problems.append(f"two candidates, yet history {history}")
    return champion, problems


@pytest.mark.parametrize("shared", ["tracking store only", "Prefect API too"])
def test_promoters_in_separate_processes_are_serialized_and_the_best_wins(
    seed: Path, services_home: Path, prefect_server: PrefectServer, shared: str
) -> None:
    problems = {}
    races = RACES if shared == "tracking store only" else max(1, RACES - 1)
    for race in range(races):
        root = services_home / "promotion-races" / shared.replace(" ", "-") / f"race-{race}"
        base = prefect_server.client_env() if shared == "Prefect API too" else None
        _, found = _race(seed, root, f"race_{race}", base, root)
        if found:
            problems[race] = found
    assert not problems, problems
