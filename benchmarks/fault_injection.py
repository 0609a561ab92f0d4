"""Faults injected into the real pipeline, and whether it ends consistent.

Each scenario runs the real flow over the real entry points in a fresh working directory (its
own SQLite tracking store, W&B offline, a temporary Prefect API) and injects one fault:
transient HTTP failures, a step killed with SIGKILL, a step past its timeout, the tracking
database locked mid-run, retries exhausted, two pipelines at once on the same stores, and
promoting pipelines SIGKILLed (whole tree, or the flow process alone) at every point of the
promote step's critical section and at random moments (fault_injection/promotion_faults.py).
Afterwards the stores are audited: every finished step run's outputs must be readable, no
failed run may announce an output, every registered version must belong to a distinct run,
and the champion must point at a READY version. Data lost counts what the audit finds missing.

    python -m benchmarks.fault_injection            (make bench-faults)
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sqlite3
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import mlflow
import psutil

from benchmarks._report import Report, command_line, out
from steps.contract import OUTPUT_TAG_PREFIX

SMALL = ["data.demo_rows=2500", "task.retry_delay_s=0.5", "task.retry_jitter=0"]


@contextlib.contextmanager
def workspace() -> Iterator[Path]:
    """A fresh working directory with its own stores, restored environment afterwards."""
    saved = dict(os.environ)
    previous_dir = Path.cwd()
    with tempfile.TemporaryDirectory(prefix="faults-") as directory:
        root = Path(directory)
        os.environ.update(
            {
                "MLFLOW_TRACKING_URI": f"sqlite:///{root / 'mlruns' / 'mlflow.db'}",
                "WANDB_MODE": "offline",
                "WANDB_DIR": str(root),
            }
        )
        os.chdir(root)
        try:
            yield root
        finally:
            os.chdir(previous_dir)
            os.environ.clear()
            os.environ.update(saved)


def audit(root: Path) -> int:
    """Count what a consistent store must not have: lost outputs, half-published ones."""
    client = mlflow.MlflowClient(tracking_uri=os.environ["MLFLOW_TRACKING_URI"])
    lost = 0
    experiments = client.search_experiments()
    ids = [e.experiment_id for e in experiments]
    for run in client.search_runs(ids, max_results=5000) if ids else []:
        outputs = {k: v for k, v in run.data.tags.items() if k.startswith(OUTPUT_TAG_PREFIX)}
        if run.info.status == "FAILED":
            lost += len(outputs)  # a failed run must not announce anything
            continue
        if run.info.status != "FINISHED":
            continue
        for uri in outputs.values():
            if uri.startswith("runs:/"):
                try:
                    mlflow.artifacts.download_artifacts(
                        uri, dst_path=tempfile.mkdtemp(dir=root), tracking_uri=client.tracking_uri
                    )
                except Exception:
                    lost += 1
    with contextlib.suppress(Exception):
        versions = client.search_model_versions("name = 'housing_price'")
        lost += len(versions) - len({v.run_id for v in versions})
        champion = client.get_model_version_by_alias("housing_price", "champion")
        lost += champion.status != "READY"
    return lost


def _pipeline(overrides: list[str]) -> None:
    from flows.train_pipeline import train_pipeline

    train_pipeline(overrides=overrides)


def transient_http(root: Path) -> bool:
    from fault_injection.http_source import Behaviour, http_source
    from steps.ingest.demo_data import generate_listings

    body = generate_listings(2500, seed=1).to_csv(index=False).encode()
    with http_source(Behaviour(body=body, faults=[503, 502])) as url:
        _pipeline([*SMALL, f"data.source={url}", "task.retries=2"])
    return True


def killed_step(root: Path) -> bool:
    from fault_injection.process_faults import kill_when_started

    killer = kill_when_started("steps.train.train")
    _pipeline([*SMALL, "task.retries=1", "main.backend=local"])
    killer.join()
    return bool(killer.killed)  # type: ignore[attr-defined]


def timed_out_step(root: Path) -> bool:
    from fault_injection.http_source import Behaviour, http_source
    from steps.ingest.demo_data import generate_listings

    body = generate_listings(2500, seed=2).to_csv(index=False).encode()
    behaviour = Behaviour(body=body, delay_s=30)
    with http_source(behaviour) as url:

        def speed_up() -> None:  # the first attempt hangs; later ones are answered at once
            while behaviour.requests == 0:
                time.sleep(0.05)
            behaviour.delay_s = 0

        threading.Thread(target=speed_up, daemon=True).start()
        _pipeline([*SMALL, f"data.source={url}", "task.retries=1", "task.timeout_s=5"])
    return True


def locked_store(root: Path) -> bool:
    database = root / "mlruns" / "mlflow.db"

    def lock_while_training() -> None:
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline:
            for process in psutil.Process().children(recursive=True):
                with contextlib.suppress(psutil.Error):
                    if "steps.train.train" in " ".join(process.cmdline()):
                        holder = sqlite3.connect(database, isolation_level=None, timeout=30)
                        holder.execute("BEGIN EXCLUSIVE")
                        time.sleep(8)  # past SQLite's busy timeout of the step's writes
                        holder.execute("ROLLBACK")
                        holder.close()
                        return
            time.sleep(0.05)

    thread = threading.Thread(target=lock_while_training)
    thread.start()
    _pipeline([*SMALL, "task.retries=3", "task.retry_delay_s=3", "main.backend=local"])
    thread.join()
    return True


def retries_exhausted(root: Path) -> bool:
    from fault_injection.http_source import Behaviour, http_source
    from tasks.step_failure import StepFailed

    with http_source(Behaviour(faults=[503] * 10)) as url:
        try:
            _pipeline([*SMALL, f"data.source={url}", "task.retries=1"])
        except StepFailed as failure:
            return failure.transient  # the expected, clean failure
    return False


def two_pipelines(root: Path) -> bool:
    errors: list[BaseException] = []

    def run(model: str) -> None:
        try:
            _pipeline([*SMALL, f"model={model}", "task.retries=2"])
        except BaseException as error:
            errors.append(error)

    threads = [threading.Thread(target=run, args=(m,)) for m in ("torch_lasso", "random_forest")]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return not errors


PROMOTE_RANDOM_TRIALS = 4


def killed_promotions(root: Path) -> bool:
    """Trials of fault_injection/promotion_faults.py on a store seeded here: each kill, then one
    clean run, must leave every registry invariant intact; prints the counts and the
    longest wait."""
    import random

    from fault_injection.promotion_faults import run_until_killed, standard_trials

    _pipeline([*SMALL, "model=random_forest", "model.n_estimators=40"])
    _pipeline([*SMALL, "main.steps=train", "model=torch_lasso"])
    seed = root / "mlruns" / "mlflow.db"
    base = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_")}
    results = []
    for number, trial in enumerate(standard_trials(random.Random(14), PROMOTE_RANDOM_TRIALS)):
        result = run_until_killed(trial, seed, root / f"trial-{number}", base)
        out(
            f"  {trial.label}: killed={result.killed} next run exit {result.recovery_code}, "
            f"lock wait {result.lock_wait_s:.1f} s, broken: {result.violations or 'none'}"
        )
        results.append(result)
    kills = sum(r.killed for r in results)
    survived = sum(r.survived for r in results)
    longest = max((r.lock_wait_s for r in results), default=0.0)
    out(
        f"promotion kill trials: {len(results)} run, {kills} kills, {survived} survived, "
        f"longest wait for the lock after a kill {longest:.1f} s"
    )
    return survived == len(results)


SCENARIOS: dict[str, Callable[[Path], bool]] = {
    "HTTP 503 then 502 on download": transient_http,
    "train step SIGKILLed": killed_step,
    "download past its timeout": timed_out_step,
    "tracking DB locked 8 s while training": locked_store,
    "retries exhausted (expected failure)": retries_exhausted,
    "two pipelines at once": two_pipelines,
    "promoting pipelines SIGKILLed inside promote": killed_promotions,
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.fault_injection")
    parser.add_argument("--only", help="run the scenarios whose name contains this text")
    parser.add_argument("--results-dir", type=Path)
    parser.add_argument("--check", action="store_true", help="exit 1 unless all survive")
    args = parser.parse_args(argv)
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    os.environ.setdefault("DO_NOT_TRACK", "true")
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    from prefect.testing.utilities import prefect_test_harness

    report = Report("fault_injection", command_line())
    rows: list[list[Any]] = []
    with prefect_test_harness(server_startup_timeout=120):
        for name, scenario in SCENARIOS.items():
            if args.only and args.only not in name:
                continue
            started = time.monotonic()
            with workspace() as root:
                try:
                    survived = scenario(root)
                    detail = ""
                except Exception as error:
                    survived, detail = False, f"{type(error).__name__}: {str(error)[:80]}"
                lost = audit(root)
            seconds = time.monotonic() - started
            out(f"{name}: survived={survived} lost={lost} ({seconds:.0f} s) {detail}")
            rows.append([name, survived, lost, round(seconds, 1), detail])
    report.table("Faults", ["fault", "survived", "data lost", "seconds", "detail"], rows)
    injected, survivors = len(rows), sum(bool(r[1]) for r in rows)
    total_lost = sum(int(r[2]) for r in rows)
    report.table(
        "Totals", ["faults injected", "survived", "data lost"], [[injected, survivors, total_lost]]
    )
    report.target("all faults survived", survivors == injected, "all", survivors == injected)
    report.target("data lost", total_lost, "0", total_lost == 0)
    report.finish(args.results_dir)
    return 1 if args.check and not report.all_met else 0


if __name__ == "__main__":
    raise SystemExit(main())
