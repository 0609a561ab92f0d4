"""The Dask cluster a sweep's variants run on: a temporary local one, or an existing one.

Prefect's `DaskTaskRunner` (prefect-dask) does the work; this module decides its settings:

* a local cluster of `n_workers` workers: threads of the flow's process by default (each
  variant's steps are processes of their own anyway, forked from the flow's warm server, so
  worker processes would only add imports), or processes (`sweep.dask.processes=true`) on
  loopback, as on a real cluster;
* each variant step's math libraries limited to its share of the cores (two steps each
  spinning up every core would only fight; OpenMP's busy waiting makes it far worse);
* worker processes reach the same Prefect API as the flow, even Prefect's temporary local one
  (otherwise each would start a temporary API of its own and report nowhere useful);
* Dask's Nanny writes its pre-spawn variables into the environment of the process that starts
  the cluster; they are put back, and the flow's own steps never see them;
* an existing cluster is used as it is: its workers bring their own environment.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import tempfile
import threading
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import dask
from prefect.client.orchestration import get_client
from prefect_dask import DaskTaskRunner

from orchestration.config import DaskConfig

# OpenMP, MKL and OpenBLAS pools; LOKY_MAX_CPU_COUNT is what joblib counts as "all cores" for
# n_jobs=-1 (the random forest), so that it too means the step's share.
_THREAD_VARIABLES = (
    "OMP_NUM_THREADS",
    "MKL_NUM_THREADS",
    "OPENBLAS_NUM_THREADS",
    "LOKY_MAX_CPU_COUNT",
)


def available_cores() -> int:
    """The cores this process may run on (a container's or taskset's limit included)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not on Linux
        return os.cpu_count() or 1


def step_threads(settings: DaskConfig, cores: int) -> int:
    """Math-library threads per step: as configured, else an equal share of the cores."""
    if settings.step_threads is not None:
        return settings.step_threads
    return max(1, cores // (settings.n_workers * settings.threads_per_worker))


def describe(settings: DaskConfig, cores: int) -> str:
    """Where the variants run, in words for the summary."""
    if settings.address:
        return f"the Dask cluster at {settings.address}"
    workers = _count(settings.n_workers, "worker")
    where = f"{workers} processes" if settings.processes else f"{workers} in this process"
    return (
        f"a local Dask cluster ({where}, {_count(settings.threads_per_worker, 'task')} at a "
        f"time each; {_count(step_threads(settings, cores), 'math thread')} per step; "
        f"{_count(cores, 'core')})"
    )


def _count(number: int, thing: str) -> str:
    return f"{number} {thing}" if number == 1 else f"{number} {thing}s"


def step_environment(settings: DaskConfig, cores: int) -> dict[str, str]:
    """The math-library thread budget of each variant step's process: its share of this
    machine's cores on a local cluster; on an existing cluster only a configured one (its
    machines' cores are theirs to know)."""
    if settings.address and settings.step_threads is None:
        return {}
    return dict.fromkeys(_THREAD_VARIABLES, str(step_threads(settings, cores)))


def worker_environment(settings: DaskConfig, cores: int, api_url: str | None) -> dict[str, str]:
    """What each local worker process starts with, beyond this process's environment."""
    environment = step_environment(settings, cores)
    if api_url:
        environment["PREFECT_API_URL"] = api_url
    return environment


def task_runner(
    settings: DaskConfig, cores: int, api_url: str | None, scratch: Path
) -> DaskTaskRunner:
    if settings.address:
        return DaskTaskRunner(address=settings.address)
    common = {
        "n_workers": settings.n_workers,
        "threads_per_worker": settings.threads_per_worker,
        "dashboard_address": None,
        "local_directory": str(scratch),
    }
    if not settings.processes:
        # Worker threads in this process, talking in-process (no port at all).
        return DaskTaskRunner(
            cluster_class="distributed.LocalCluster", cluster_kwargs=common | {"processes": False}
        )
    return DaskTaskRunner(
        cluster_class="distributed.LocalCluster",
        cluster_kwargs=common
        | {
            "processes": True,
            "host": "127.0.0.1",
            "env": worker_environment(settings, cores, api_url),
        },
    )


def _prefect_api_url() -> str | None:
    """The API this flow reports to (the temporary one included), for the workers."""
    with get_client(sync_client=True) as client:
        url = str(client.api_url)
    return url or None


@contextlib.contextmanager
def _variables_kept(names: Sequence[str]) -> Iterator[None]:
    """Put these environment variables back as they were: Dask's Nanny writes its pre-spawn
    variables into the environment of the process that starts the cluster. Only these: the
    flow's thread goes on changing others (PATH, for its entry points) meanwhile."""
    saved = {name: os.environ.get(name) for name in names}
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def warm_up_worker(warm_fork: bool) -> None:
    """Run on every worker once it is up: the imports of the entry-point task (MLflow, Prefect's
    task engine) and the fork server's, so that the first variant does not wait for them."""
    import tasks.run_entry_point  # noqa: F401

    if warm_fork:
        from warm_backend.client import prestart

        prestart()


@contextlib.contextmanager
def _quiet(*names: str) -> Iterator[None]:
    """distributed logs every worker's start and stop at INFO, and prefect-dask a dashboard
    link even where the dashboard is off; the flow's log is for its steps."""
    loggers = [logging.getLogger(name) for name in names]
    levels = [item.level for item in loggers]
    for item in loggers:
        item.setLevel(logging.WARNING)
    try:
        yield
    finally:
        for item, level in zip(loggers, levels, strict=True):
            item.setLevel(level)


class ClusterStart:
    """Starts the cluster in a background thread, so that the shared steps run meanwhile."""

    def __init__(
        self, runner: DaskTaskRunner, settings: DaskConfig, warm_fork: bool, scratch: Path
    ) -> None:
        self.runner = runner
        self.scratch = str(scratch)
        self.settings = settings
        self.warm_fork = warm_fork
        self.error: BaseException | None = None
        self._thread = threading.Thread(target=self._start, name="dask-cluster-start")
        self._thread.start()

    def _start(self) -> None:
        try:
            # The workers get their variables from `env`; these only keep the workers' own
            # distributed logs at WARNING (they must be set before a worker process starts).
            pre_spawn = {"DASK_LOGGING__DISTRIBUTED": "warning"}
            with (
                _variables_kept([*pre_spawn, "PYTHONHASHSEED"]),
                dask.config.set(
                    {
                        "distributed.nanny.pre-spawn-environ": pre_spawn,
                        # The scheduler's and nannies' scratch space, removed with the cluster.
                        "temporary-directory": self.scratch,
                    }
                ),
            ):
                client = self.runner.client  # a local cluster starts; a remote one is joined
            if not client.scheduler_info().get("workers"):
                raise SweepClusterError(
                    f"{describe(self.settings, available_cores())} has no workers; start some "
                    "(dask worker SCHEDULER_ADDRESS) or use a local cluster "
                    "(sweep.dask.address=null)"
                )
            if self.own_processes:
                client.run(warm_up_worker, self.warm_fork)  # while the shared steps run
        except SweepClusterError as error:
            self.error = error
        except (OSError, TimeoutError) as error:
            if not self.settings.address:  # a local cluster's own failure: as it is
                self.error = error
                return
            self.error = SweepClusterError(
                f"cannot reach the Dask scheduler at {self.settings.address}: {error}; start "
                "it (dask scheduler) or use a local cluster (sweep.dask.address=null)"
            )
        except BaseException as error:
            self.error = error

    @property
    def own_processes(self) -> bool:
        """Whether the workers are processes apart from the flow's (imports and a fork server
        of their own); worker threads of a local cluster share the flow's."""
        return bool(self.settings.address) or self.settings.processes

    def wind_down(self) -> None:
        """Before a local cluster closes: stop its worker processes' fork servers, so that each
        worker exits at once instead of being killed after Dask's grace period. An existing
        cluster's workers keep theirs, for the next sweep."""
        self._thread.join()
        local_processes = self.settings.processes and not self.settings.address
        if self.warm_fork and local_processes and self.error is None:
            from warm_backend.client import shutdown_all

            with contextlib.suppress(Exception):  # the cluster closes regardless
                self.runner.client.run(shutdown_all)

    def ready(self) -> DaskTaskRunner:
        """The runner once its cluster is up; the start's error if it failed."""
        self._thread.join()
        if self.error is not None:
            raise self.error
        return self.runner


class SweepClusterError(RuntimeError):
    """The Dask cluster could not be started or reached; the message says what to do."""


@contextlib.contextmanager
def cluster_starting(
    settings: DaskConfig, warm_fork: bool, log: logging.Logger | logging.LoggerAdapter[Any]
) -> Iterator[ClusterStart]:
    """A task runner whose cluster starts now, in the background; closed on exit."""
    cores = available_cores()
    scratch = Path(tempfile.mkdtemp(prefix="sweep-dask-"))
    # Only worker processes of a local cluster need telling where the Prefect API is.
    api_url = _prefect_api_url() if settings.processes and not settings.address else None
    runner = task_runner(settings, cores, api_url, scratch)
    with contextlib.ExitStack() as stack:
        stack.callback(shutil.rmtree, scratch, True)
        stack.enter_context(_quiet("distributed", "prefect.task_runner.dask"))
        stack.enter_context(runner)
        start = ClusterStart(runner, settings, warm_fork, scratch)
        stack.callback(start.wind_down)  # never close the runner under a starting cluster
        log.info("starting %s", describe(settings, cores))
        yield start
