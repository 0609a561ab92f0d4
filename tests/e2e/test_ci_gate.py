"""The CI gate for real: the pipeline's promote step, a branch from the CI variables, a report.

One module-scoped store holds a champion (a random forest, from a full small pipeline) and a
better candidate (torch_lasso) already trained and evaluated on the same split; each test runs
the gate with `main.steps=train,evaluate,promote` in its own copy of the tracking database, so
train and evaluate come from the step cache and only promote does work.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import prefect.settings
import pytest

from flows.ci_gate import GateRefused, ci_gate
from flows.ci_gate import main as ci_gate_main
from flows.train_pipeline import train_pipeline
from tests.e2e.conftest import SMALL_DEMO, Workspace, copy_of, isolate

NAME = "housing_price"
PROJECT_ROOT = Path(__file__).resolve().parents[2]
GATE = [*SMALL_DEMO, "main.steps=train,evaluate,promote"]
# torch_lasso beats the random forest on the demo data, but not by 90 %: a losing candidate.
LOSES = "promotion.min_relative_improvement=0.9"


@pytest.fixture(scope="module")
def seeded_store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A random-forest champion (version 1), then a torch_lasso candidate trained and evaluated."""
    root = tmp_path_factory.mktemp("ci-gate-seed")
    with pytest.MonkeyPatch.context() as monkeypatch:
        isolate(monkeypatch, root)
        summary = train_pipeline(overrides=[*SMALL_DEMO, "model=random_forest"])
        assert summary.registered_version == "1"
        train_pipeline(overrides=[*SMALL_DEMO, "main.steps=train,evaluate"])
    return root


@pytest.fixture
def store(
    seeded_store: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Workspace]:
    """A private copy of the seeded tracking database; CI variables cleared, report in tmp."""
    for variable in ("GITHUB_REF_NAME", "CI_COMMIT_BRANCH", "BRANCH_NAME", "GITHUB_STEP_SUMMARY"):
        monkeypatch.delenv(variable, raising=False)
    monkeypatch.delenv("CI_REPORT_PATH", raising=False)
    with copy_of(seeded_store, tmp_path, monkeypatch) as workspace:
        yield workspace


def registry_state(workspace: Workspace) -> dict[str, object]:
    """Everything a promotion could change: versions, aliases, the model's history tags."""
    client = workspace.client()
    model = client.get_registered_model(NAME)
    found = client.search_model_versions(f"name = '{NAME}'")
    return {
        "versions": sorted(str(v.version) for v in found),
        "aliases": {alias: str(version) for alias, version in model.aliases.items()},
        "tags": dict(model.tags),
    }


def champion(workspace: Workspace) -> str:
    return str(workspace.client().get_model_version_by_alias(NAME, "champion").version)


def test_dry_run_on_a_feature_branch_leaves_the_registry_untouched(
    store: Workspace, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("GITHUB_REF_NAME", "feature/better-model")
    step_summary = store.root / "step-summary.md"
    monkeypatch.setenv("GITHUB_STEP_SUMMARY", str(step_summary))
    before = registry_state(store)
    assert before["aliases"] == {"champion": "1"}

    # A winning candidate: it would be promoted, and nothing happens.
    assert ci_gate_main(GATE) == 0
    printed = capsys.readouterr().out
    assert "## Model CI gate: WOULD BE PROMOTED (dry run)" in printed
    assert "Branch `feature/better-model` (from GITHUB_REF_NAME" in printed
    assert "**Verdict:** DRY RUN — would be PROMOTED: beats the champion: test_mae" in printed
    assert "| candidate | champion (version 1) |" in printed
    assert "mlflow ui --backend-store-uri" in printed
    assert registry_state(store) == before
    report = (store.root / "ci-report.md").read_text()
    assert report in printed
    assert report in step_summary.read_text()

    # A losing one, even asked for promotion.dry_run=false: no challenger alias either.
    assert ci_gate_main([*GATE, LOSES, "promotion.dry_run=false"]) == 1
    printed = capsys.readouterr().out
    assert "DRY RUN — would be NOT PROMOTED: does not beat the champion" in printed
    assert registry_state(store) == before

    # The same gate as a Prefect flow, as a deployment runs it: a refusal fails the flow run.
    with pytest.raises(GateRefused, match="WOULD NOT BE PROMOTED"):
        ci_gate(overrides=[*GATE, LOSES], fail_on_refusal=True)
    assert registry_state(store) == before

    promote_runs = store.client().search_runs(
        [store.client().get_experiment_by_name("nyc_airbnb_price").experiment_id],  # type: ignore[union-attr]
        "tags.`pipeline.step` = 'promote' and tags.`promotion.dry_run` = 'true'",
    )
    assert len(promote_runs) == 3
    assert all(run.data.metrics["promoted"] == 0 for run in promote_runs)
    assert all("champion_test_mae" in run.data.metrics for run in promote_runs)


def test_losing_candidate_makes_make_ci_train_exit_non_zero_on_main(store: Workspace) -> None:
    before_champion = champion(store)
    env = os.environ | {
        "GITHUB_REF_NAME": "main",
        "CI_REPORT_PATH": str(store.root / "ci-report.md"),
        # The e2e session's Prefect API, so the make process does not start one of its own.
        "PREFECT_API_URL": str(prefect.settings.PREFECT_API_URL.value()),
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
    }
    completed = subprocess.run(
        # -o: never reinstall from a test; the recipe that runs is ci-train's own. A fresh
        # process would start a warm-fork server for its one uncached step: local is quicker.
        [
            "make",
            "-C",
            str(PROJECT_ROOT),
            "-o",
            ".venv/.install-run.stamp",
            "ci-train",
            f"ARGS={' '.join([*GATE, LOSES, 'main.backend=local'])}",
        ],
        cwd=store.root,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert completed.returncode != 0, completed.stdout[-3000:]
    assert "## Model CI gate: NOT PROMOTED" in completed.stdout, completed.stderr[-3000:]
    assert "NOT PROMOTED: does not beat the champion" in completed.stdout
    assert champion(store) == before_champion
    # On main the refused candidate is registered as the challenger, as promote always does.
    challenger = store.client().get_model_version_by_alias(NAME, "challenger")
    assert str(challenger.version) == "2"
    assert "NOT PROMOTED" in (store.root / "ci-report.md").read_text()


def test_winning_candidate_on_main_promotes(
    store: Workspace, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("GITHUB_REF_NAME", "main")
    assert ci_gate_main(GATE) == 0
    printed = capsys.readouterr().out
    assert "## Model CI gate: PROMOTED" in printed
    assert "**Verdict:** PROMOTED: beats the champion" in printed
    assert "| candidate (version 2) | champion (version 1) |" in printed
    assert champion(store) == "2"
    history = [
        json.loads(value)
        for key, value in sorted(store.client().get_registered_model(NAME).tags.items())
        if key.startswith("history.")
    ]
    assert [(m["from_version"], m["to_version"]) for m in history][-1] == ("1", "2")
    assert "PROMOTED" in (store.root / "ci-report.md").read_text()

    # The same push again: already the champion, which passes and changes nothing.
    assert ci_gate_main(GATE) == 0
    assert "ALREADY THE CHAMPION" in capsys.readouterr().out
    assert champion(store) == "2"
