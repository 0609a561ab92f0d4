"""The Prefect-server ledger of new data, attacked the way production will: claims taken at the
same moment by separate OS processes, each with its own PREFECT_HOME (two machines sharing one
server), and a watcher whose every pass is a fresh process (a restart between passes).

Against the session's temporary Prefect API (a real server process with its own database).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

from prefect.settings import PREFECT_API_URL

from orchestration.events import ListingsObject
from orchestration.source_ledger import announce, claim, unseen
from steps.ingest.demo_data import generate_listings

PROJECT_ROOT = Path(__file__).resolve().parents[2]
CONTENDERS = 6

_CLAIMER = """
import json, os, sys, time
from pathlib import Path
from orchestration.events import ListingsObject
from orchestration.source_ledger import claim
go = Path(sys.argv[1])
while not go.exists():
    time.sleep(0.005)
held = claim(ListingsObject(sys.argv[2], sys.argv[3]), sys.argv[4])
print(json.dumps({"holder": held.holder, "mine": held.mine}))
"""


def _env(home: Path) -> dict[str, str]:
    api = PREFECT_API_URL.value()
    assert api, "the e2e session's temporary Prefect API is not set"
    env = {key: value for key, value in os.environ.items() if not key.startswith("PREFECT_")}
    return env | {
        "PREFECT_API_URL": api,
        "PREFECT_HOME": str(home),
        "PYTHONPATH": str(PROJECT_ROOT),
        "DO_NOT_TRACK": "true",
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
    }


def test_of_processes_claiming_one_object_at_once_exactly_one_trains(tmp_path: Path) -> None:
    source, fingerprint = f"oss://listings/race/{tmp_path.name}.csv", "etag:RACE"
    go = tmp_path / "go"
    contenders = [
        subprocess.Popen(
            [sys.executable, "-c", _CLAIMER, str(go), source, fingerprint, f"flow-run-{n}"],
            env=_env(tmp_path / f"home-{n}"),
            cwd=PROJECT_ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for n in range(CONTENDERS)
    ]
    time.sleep(8)  # every contender imported and waiting on the barrier
    go.touch()
    answers = []
    for process in contenders:
        out, err = process.communicate(timeout=240)
        assert process.returncode == 0, err
        answers.append(json.loads(out.strip().splitlines()[-1]))
    winners = [answer for answer in answers if answer["mine"]]
    assert len(winners) == 1, answers
    assert {answer["holder"] for answer in answers} == {winners[0]["holder"]}
    # The holder's own retry (the UI's Retry keeps the flow run id) keeps its claim.
    again = claim(ListingsObject(source, fingerprint), winners[0]["holder"])
    assert again.mine and again.holder == winners[0]["holder"]
    # New content at the same source is another object: claimable.
    assert claim(ListingsObject(source, "etag:CHANGED"), "flow-run-x").mine


def _watch(folder: Path, home: Path) -> str:
    """One watcher pass in a process of its own, as a restarted watcher would run it."""
    completed = subprocess.run(
        [
            sys.executable,
            "-m",
            "flows.watch_sources",
            f"watch.sources=[{folder}]",
            "watch.settle_s=0",
            "watch.max_events_per_pass=2",
        ],
        check=False,
        env=_env(home),
        cwd=PROJECT_ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert completed.returncode == 0, completed.stderr[-3000:]
    return completed.stdout


def test_a_restarted_watcher_announces_nothing_twice(tmp_path: Path) -> None:
    folder = tmp_path / "incoming"
    folder.mkdir()
    for name in ("a.csv", "b.csv", "c.csv"):
        generate_listings(50, seed=len(name) + ord(name[0])).to_csv(folder / name, index=False)
    (folder / "readme.txt").write_text("not listings")

    first = _watch(folder, tmp_path / "home-1")
    assert first.count("announced ") == 2 and "1 more new file(s) wait" in first, first
    second = _watch(folder, tmp_path / "home-2")  # another process, another PREFECT_HOME
    assert second.count("announced ") == 1 and "c.csv" in second, second
    third = _watch(folder, tmp_path / "home-1")
    assert "announced " not in third and "nothing new" in third, third

    # Rewritten content is a new object; the others stay seen.
    generate_listings(60, seed=99).to_csv(folder / "a.csv", index=False)
    fourth = _watch(folder, tmp_path / "home-2")
    assert fourth.count("announced ") == 1 and "a.csv" in fourth, fourth


def test_a_watched_place_that_cannot_be_listed_names_the_fix(tmp_path: Path) -> None:
    completed = subprocess.run(
        [sys.executable, "-m", "flows.watch_sources", f"watch.sources=[{tmp_path / 'gone'}]"],
        check=False,
        env=_env(tmp_path / "home"),
        cwd=PROJECT_ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert completed.returncode == 1
    assert "does not exist" in completed.stderr and "watch.sources" in completed.stderr
    assert "Traceback" not in completed.stderr.splitlines()[-1]


def test_the_seen_check_answers_for_more_objects_than_one_request_holds(tmp_path: Path) -> None:
    subjects = [
        ListingsObject(f"oss://listings/{tmp_path.name}/{n}.csv", f"etag:{n}") for n in range(450)
    ]
    announced = announce([subjects[0], subjects[250], subjects[449]], "watcher")
    assert len(announced) == 3
    left = unseen(subjects)
    assert len(left) == 447 and subjects[250] not in left and subjects[1] in left
