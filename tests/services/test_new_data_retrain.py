"""Retraining when new data lands, scoring with the champion and drift, on a real Prefect
server with `python -m deployments.serve` and a loopback OSS server.

One timeline, run once for the module (each step costs a pipeline run):
- listings uploaded with `flows.upload_data` start a `retrain-on-new-data` run on exactly that
  object; the same bytes uploaded again start nothing; another object starts one more;
- a file that fails data_check fails its run at data_check and makes no model version, even
  though its event was sent twice (an uploader that crashed after sending, before marking the
  object seen, then ran again);
- an object written straight to OSS is found by a `watch-sources` run;
- `flows.score` scores with the champion; scoring data that drifted starts a retrain on it.
The latency from an announcement (an upload, a watcher pass, a scoring run) to its run's start
is written to `new-data-latency.txt` in the services output folder.
"""

from __future__ import annotations

import statistics
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import mlflow
import pandas as pd
import pytest
from prefect.client.orchestration import SyncPrefectClient
from prefect.client.schemas.filters import (
    DeploymentFilter,
    DeploymentFilterId,
    FlowRunFilter,
    FlowRunFilterId,
)
from prefect.client.schemas.objects import FlowRun
from prefect.client.schemas.sorting import FlowRunSort, TaskRunSort
from prefect.events.filters import EventFilter, EventIDFilter
from prefect.exceptions import ObjectNotFound

from orchestration.events import (
    DATA_ARRIVED,
    DRIFT_DETECTED,
    ListingsEvent,
    ListingsObject,
    arrival,
    send,
)
from orchestration.source_inventory import etag_fingerprint
from steps.contract import FLOW_RUN_TAG, STEP_TAG
from steps.ingest.demo_data import generate_listings
from tests.services.conftest import (
    LISTINGS_BUCKET,
    PROJECT_ROOT,
    PrefectServer,
    Served,
    output_dir,
    wait_for,
    wait_for_final_states,
)

RETRAIN = "retrain_on_new_data/retrain-on-new-data"
WATCH = "watch_sources/watch-sources"
START_WITHIN_S = 60.0
NO_SECOND_RUN_FOR_S = 90.0
SAMPLE = PROJECT_ROOT.parent / "shared" / "data" / "nyc_airbnb_sample1.csv"
ROWS = 1500


def _listings_file(path: Path, seed: int, **columns: Any) -> Path:
    frame = generate_listings(ROWS, seed=seed)
    for name, value in columns.items():
        frame[name] = value(frame[name]) if callable(value) else value
    frame.to_csv(path, index=False)
    return path


def _command(
    args: list[str], env: dict[str, str], cwd: Path, timeout_s: float = 600
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, *args],
        env=env,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout_s,
        check=False,
    )


def _retrain_runs(client: SyncPrefectClient) -> list[FlowRun]:
    deployment = client.read_deployment_by_name(RETRAIN)
    return client.read_flow_runs(
        deployment_filter=DeploymentFilter(id=DeploymentFilterId(any_=[deployment.id])),
        sort=FlowRunSort.EXPECTED_START_TIME_ASC,
        limit=200,
        offset=0,
    )


def _runs_for(client: SyncPrefectClient, source: str) -> list[FlowRun]:
    return [run for run in _retrain_runs(client) if run.parameters.get("source") == source]


def _started(client: SyncPrefectClient, source: str) -> FlowRun | None:
    runs = [run for run in _runs_for(client, source) if run.start_time is not None]
    return runs[0] if runs else None


def _latency_s(client: SyncPrefectClient, run: FlowRun) -> float:
    """Seconds from the event that started `run` (as the server stored it: when its sender
    made it, right after the upload, the listing or the scoring) to the run's start."""
    origin = run.parameters["origin"]
    subject = ListingsObject(run.parameters["source"], run.parameters["fingerprint"])
    event_id = ListingsEvent(
        DRIFT_DETECTED if origin == "drift" else DATA_ARRIVED, subject, origin
    ).id
    wanted = EventFilter(id=EventIDFilter(id=[event_id]))
    [event] = wait_for(
        lambda: list(client.read_events(filter=wanted, limit=5).events), 30, "the stored event"
    )
    assert run.start_time is not None
    return run.start_time.timestamp() - event.occurred.timestamp()


@dataclass
class Timeline:
    """What the module's timeline did and saw."""

    uploads: dict[str, str] = field(default_factory=dict)  # name -> oss:// URI
    outputs: dict[str, subprocess.CompletedProcess[str]] = field(default_factory=dict)
    # name -> seconds from its event's making to its retrain run's start.
    latencies_s: dict[str, float] = field(default_factory=dict)
    report: Path | None = None

    def write_report(self) -> None:
        """The latencies, as the closing note and docs/events.md quote them."""
        assert self.report is not None
        uploads = [self.latencies_s[name] for name in ("a", "b") if name in self.latencies_s]
        every = list(self.latencies_s.values())
        self.report.write_text(
            f"upload -> retrain run started: median {statistics.median(uploads):.1f} s over "
            f"{len(uploads)} uploads\n"
            f"any announcement -> retrain run started: median {statistics.median(every):.1f} s "
            f"over {len(every)} ("
            + ", ".join(f"{name} {seconds:.1f} s" for name, seconds in self.latencies_s.items())
            + ")\n"
        )

    final: dict[str, FlowRun] = field(default_factory=dict)  # name -> its retrain run, finished
    repeat_uploaded_at: float = 0.0
    watcher: FlowRun | None = None
    scored: Path | None = None
    drifted_source: str = ""


@pytest.fixture(scope="module")
def timeline(
    prefect_server: PrefectServer, served: Served, tmp_path_factory: pytest.TempPathFactory
) -> Timeline:
    client = prefect_server.client()

    def registered() -> bool:
        try:
            return all(client.read_deployment_by_name(name) for name in (RETRAIN, WATCH))
        except ObjectNotFound:
            return False

    wait_for(registered, 180, "deployments.serve to register retrain-on-new-data, watch-sources")
    work = tmp_path_factory.mktemp("new-data")
    env = prefect_server.client_env() | served.oss_env
    seen = Timeline()

    def upload(name: str, path: Path, prefix: str = "nyc/2026-12/") -> None:
        done = _command(
            ["-m", "flows.upload_data", str(path), f"oss://{LISTINGS_BUCKET}/{prefix}"], env, work
        )
        assert done.returncode == 0, done.stderr
        seen.uploads[name] = done.stdout.strip()
        seen.outputs[f"upload-{name}"] = done

    def finished(name: str) -> None:
        """Wait for `name`'s run to start (recording the latency from its event) and finish:
        the deployment trains one object at a time, so each latency is measured on an idle one."""
        run = wait_for(
            lambda: _started(client, seen.uploads[name]),
            START_WITHIN_S,
            f"a retrain run of {name} to start",
        )
        assert run.start_time is not None
        seen.latencies_s[name] = _latency_s(client, run)
        [seen.final[name]] = wait_for_final_states(client, [run.id], 900, served.process).values()

    # A good file: one run, started within a minute.
    good = _listings_file(work / "listings-a.csv", seed=1)
    upload("a", good)
    finished("a")
    # The same bytes again: announced already, so no event and no run.
    again = _command(
        ["-m", "flows.upload_data", str(good), f"oss://{LISTINGS_BUCKET}/nyc/2026-12/"], env, work
    )
    seen.outputs["upload-a-again"] = again
    seen.repeat_uploaded_at = time.time()
    # A file data_check refuses, whose event goes out twice: sent by an uploader that then died
    # before marking it seen, and again by the upload repeated after that.
    bad = _listings_file(work / "bronx-only.csv", seed=3, neighbourhood_group="Bronx")
    stored = served.oss.put(LISTINGS_BUCKET, "nyc/2026-12/bronx-only.csv", bad.read_bytes())
    early = f"oss://{LISTINGS_BUCKET}/nyc/2026-12/bronx-only.csv"
    send(
        [arrival(ListingsObject(early, etag_fingerprint(stored.etag), len(stored.data)), "upload")]
    )
    upload("bad", bad)
    finished("bad")  # its run starts from the first of its two events
    # Another good file: one more run.
    upload("b", _listings_file(work / "listings-b.csv", seed=2))
    finished("b")
    # Written straight to OSS by another tool: the watcher finds it.
    direct = _listings_file(work / "direct.csv", seed=4)
    served.oss.put(LISTINGS_BUCKET, "direct/2026-12/direct.csv", direct.read_bytes())
    seen.uploads["direct"] = f"oss://{LISTINGS_BUCKET}/direct/2026-12/direct.csv"
    from prefect.deployments import run_deployment

    watcher = run_deployment(
        WATCH,
        parameters={"overrides": [f"watch.sources=[oss://{LISTINGS_BUCKET}/direct/]"]},
        timeout=0,
    )
    assert isinstance(watcher, FlowRun)
    [seen.watcher] = wait_for_final_states(client, [watcher.id], 300, served.process).values()
    finished("direct")
    # Let the repeated upload's window run out before the count of runs is read.
    time.sleep(max(0.0, seen.repeat_uploaded_at + NO_SECOND_RUN_FOR_S - time.time()))

    seen.report = output_dir(work) / "new-data-latency.txt"
    seen.write_report()
    return seen


def test_an_upload_starts_one_retrain_on_exactly_that_object(
    prefect_server: PrefectServer, served: Served, timeline: Timeline
) -> None:
    run = timeline.final["a"]
    assert run.state is not None and run.state.is_completed(), run.state
    assert run.parameters["source"] == timeline.uploads["a"]
    assert run.parameters["origin"] == "upload"
    assert run.parameters["fingerprint"].startswith("etag:")
    store = mlflow.MlflowClient(tracking_uri=served.tracking_uri)
    [parent] = store.search_runs(
        [e.experiment_id for e in store.search_experiments()],
        filter_string=f"tags.`{FLOW_RUN_TAG}` = '{run.id}' AND tags.`{STEP_TAG}` = 'pipeline'",
    )
    assert parent.data.params["source"] == timeline.uploads["a"]
    assert max(timeline.latencies_s.values()) < START_WITHIN_S


def test_the_same_bytes_uploaded_again_start_no_second_run(
    prefect_server: PrefectServer, timeline: Timeline
) -> None:
    again = timeline.outputs["upload-a-again"]
    assert again.returncode == 0 and "already announced" in again.stderr
    assert time.time() - timeline.repeat_uploaded_at >= NO_SECOND_RUN_FOR_S
    assert len(_runs_for(prefect_server.client(), timeline.uploads["a"])) == 1


def test_another_object_starts_one_more_run(
    prefect_server: PrefectServer, timeline: Timeline
) -> None:
    runs = _runs_for(prefect_server.client(), timeline.uploads["b"])
    assert len(runs) == 1
    assert timeline.final["b"].state is not None and timeline.final["b"].state.is_completed()


def test_a_file_failing_data_check_fails_its_one_run_there_without_a_model_version(
    prefect_server: PrefectServer, served: Served, timeline: Timeline
) -> None:
    client = prefect_server.client()
    runs = _runs_for(client, timeline.uploads["bad"])
    assert len(runs) == 1, "its event went out twice; it must train (and fail) once"
    run = timeline.final["bad"]
    assert run.state is not None and run.state.is_failed()
    message = run.state.message or ""
    assert "data_check" in message and "KL" in message, message
    tasks = client.read_task_runs(
        flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[run.id])),
        sort=TaskRunSort.EXPECTED_START_TIME_ASC,
        limit=100,
        offset=0,
    )
    failed = [task.name for task in tasks if task.state is not None and task.state.is_failed()]
    assert [name.split("-", 1)[0] for name in failed] == ["data_check"], failed
    store = mlflow.MlflowClient(tracking_uri=served.tracking_uri)
    steps = store.search_runs(
        [e.experiment_id for e in store.search_experiments()],
        filter_string=f"tags.`{FLOW_RUN_TAG}` = '{run.id}'",
    )
    run_ids = {step.info.run_id for step in steps}
    assert not {"train", "promote"} & {step.data.tags.get(STEP_TAG) for step in steps}
    versions = store.search_model_versions()
    assert not [version for version in versions if version.run_id in run_ids]


def test_an_object_written_straight_to_oss_is_found_by_the_watcher(
    prefect_server: PrefectServer, timeline: Timeline
) -> None:
    assert timeline.watcher is not None and timeline.watcher.state is not None
    assert timeline.watcher.state.is_completed(), timeline.watcher.state
    [run] = _runs_for(prefect_server.client(), timeline.uploads["direct"])
    assert run.parameters["origin"] == "watcher"
    assert timeline.final["direct"].state is not None
    assert timeline.final["direct"].state.is_completed(), timeline.final["direct"].state


def _champion_version(served: Served) -> str:
    store = mlflow.MlflowClient(tracking_uri=served.tracking_uri)
    return str(store.get_model_version_by_alias("housing_price", "champion").version)


@pytest.mark.skipif(not SAMPLE.exists(), reason=f"the real sample is not at {SAMPLE}")
def test_scoring_the_real_sample_predicts_every_row_with_the_champion(
    prefect_server: PrefectServer, served: Served, timeline: Timeline, tmp_path: Path
) -> None:
    env = prefect_server.client_env() | {"MLFLOW_TRACKING_URI": served.tracking_uri}
    out = tmp_path / "scores.parquet"
    done = _command(
        ["-m", "flows.score", f"data.source={SAMPLE}", f"scoring.output={out}"], env, tmp_path
    )
    assert done.returncode == 0, done.stderr[-3000:]
    scores = pd.read_parquet(out)
    listings = pd.read_csv(SAMPLE)
    assert len(scores) == len(listings)
    assert list(scores["id"]) == list(listings["id"])
    assert set(scores["model_version"].astype(str)) == {_champion_version(served)}
    assert scores["predicted_price"].notna().all()


def test_drifted_scoring_data_starts_a_retrain_on_it(
    prefect_server: PrefectServer, served: Served, timeline: Timeline, tmp_path: Path
) -> None:
    shifted = _listings_file(
        tmp_path / "shifted.csv",
        seed=5,
        neighbourhood_group="Staten Island",
        price=lambda price: price * 3,
    )
    env = prefect_server.client_env() | {"MLFLOW_TRACKING_URI": served.tracking_uri}
    done = _command(["-m", "flows.score", f"data.source={shifted}"], env, tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "neighbourhood_group" in done.stdout, done.stdout
    client = prefect_server.client()
    source = str(shifted.resolve())
    run = wait_for(lambda: _started(client, source), START_WITHIN_S, "the drift retrain")
    assert run.parameters["origin"] == "drift"
    assert run.parameters["fingerprint"].startswith("sha256:")
    assert run.start_time is not None
    timeline.latencies_s["drift"] = _latency_s(client, run)
    timeline.write_report()
    wait_for_final_states(client, [run.id], 600, served.process)
