"""The CI gate's pure parts: which branch this is, what reaches promote, the report, the file."""

from __future__ import annotations

import subprocess
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from prefect.deployments.runner import RunnerDeployment

from flows.ci_gate import (
    EXIT_CONFIG,
    EXIT_PASSED,
    EXIT_REFUSED,
    Branch,
    GateReport,
    RunLink,
    ci_gate,
    detect_branch,
    git_branch,
    main,
    pipeline_overrides,
    render_report,
    run_url,
    write_report,
)
from orchestration.config import CIConfig, load_config

CI = CIConfig(
    main_branch="main",
    branch_env_vars=("GITHUB_REF_NAME", "CI_COMMIT_BRANCH", "BRANCH_NAME"),
    report_path="ci-report.md",
)


def no_git() -> str | None:
    return None


def test_first_ci_variable_set_names_the_branch() -> None:
    env = {"CI_COMMIT_BRANCH": "main", "BRANCH_NAME": "other", "GITHUB_REF_NAME": ""}
    assert detect_branch(CI, env, no_git) == Branch("main", "CI_COMMIT_BRANCH", True)
    feature = detect_branch(CI, {"GITHUB_REF_NAME": "feature/x"}, lambda: "main")
    assert feature == Branch("feature/x", "GITHUB_REF_NAME", False)


def test_pull_request_refs_and_full_refs() -> None:
    assert not detect_branch(CI, {"GITHUB_REF_NAME": "12/merge"}, no_git).is_main
    assert detect_branch(CI, {"BRANCH_NAME": "refs/heads/main"}, no_git).is_main


def test_git_is_the_fallback_and_a_detached_head_is_not_main() -> None:
    assert detect_branch(CI, {}, lambda: "main") == Branch("main", "git", True)
    detached = detect_branch(CI, {}, no_git)
    assert detached.name is None
    assert not detached.is_main


def test_explicit_branch_and_main_branch_are_configuration() -> None:
    cfg = load_config(["ci.branch=release", "ci.main_branch=release"]).ci
    assert detect_branch(cfg, {"GITHUB_REF_NAME": "feature"}, no_git) == Branch(
        "release", "ci.branch", True
    )
    trunk = load_config(["ci.main_branch=trunk", "ci.branch_env_vars=[MY_BRANCH]"]).ci
    assert detect_branch(trunk, {"MY_BRANCH": "trunk", "GITHUB_REF_NAME": "main"}, no_git).is_main
    assert not detect_branch(trunk, {"GITHUB_REF_NAME": "trunk"}, no_git).is_main


def test_git_branch_reads_the_checkout(tmp_path: Path) -> None:
    assert git_branch(tmp_path) is None  # not a repository
    subprocess.run(["git", "init", "-q", "-b", "trunk", str(tmp_path)], check=True)
    subprocess.run(
        [
            "git",
            "-C",
            str(tmp_path),
            "-c",
            "user.name=t",
            "-c",
            "user.email=t@t",
            "commit",
            "-q",
            "--allow-empty",
            "-m",
            "x",
        ],
        check=True,
    )
    assert git_branch(tmp_path) == "trunk"
    subprocess.run(["git", "-C", str(tmp_path), "checkout", "-q", "--detach"], check=True)
    assert git_branch(tmp_path) is None


def test_off_main_promotion_is_always_a_dry_run() -> None:
    feature = Branch("feature", "GITHUB_REF_NAME", False)
    assert pipeline_overrides(["model=random_forest", "promotion.dry_run=false"], feature) == [
        "model=random_forest",
        "promotion.dry_run=true",
    ]
    on_main = Branch("main", "git", True)
    assert pipeline_overrides(["promotion.dry_run=true"], on_main) == ["promotion.dry_run=true"]
    assert pipeline_overrides([], on_main) == []
    assert load_config(pipeline_overrides([], feature)).promotion.dry_run is True


def report(**changes: Any) -> GateReport:
    base = GateReport(
        branch=Branch("feature/x", "GITHUB_REF_NAME", False),
        main_branch="main",
        dry_run=True,
        outcome="promoted",
        verdict="DRY RUN — would be PROMOTED: beats the champion: test_mae 25 vs champion 27",
        metric="test_mae",
        direction="minimize",
        tracking_uri="sqlite:////tmp/mlruns/mlflow.db",
        experiment_name="nyc_airbnb_price",
        champion_note="models:/housing_price@champion = version 1 (unchanged: dry run)",
        candidate_scores={"test_mae": 25.0, "test_r2": 0.78},
        champion_scores={"test_mae": 27.125, "test_r2": 0.74},
        champion_version="1",
        runs=[RunLink("pipeline", "p" * 32), RunLink("promote", "r" * 32)],
    )
    return replace(base, **changes)


def test_report_of_a_dry_run_with_a_local_store() -> None:
    text = render_report(report())
    assert text.startswith("## Model CI gate: WOULD BE PROMOTED (dry run)\n")
    assert "Branch `feature/x` (from GITHUB_REF_NAME; main branch `main`)" in text
    assert "nothing registered, no alias moved" in text
    assert "**Verdict:** DRY RUN — would be PROMOTED: beats the champion" in text
    assert "| candidate | champion (version 1) |" in text
    assert "| **test_mae** (lower is better) | 25 | 27.12 |" in text
    assert "| test_r2 | 0.78 | 0.74 |" in text
    assert f"- promote: `{'r' * 32}`" in text
    assert "mlflow ui --backend-store-uri sqlite:////tmp/mlruns/mlflow.db" in text
    assert text.rstrip().endswith("Exit code 0: the push passes the gate.")


@pytest.mark.parametrize(
    ("outcome", "dry_run", "title", "code"),
    [
        ("promoted", False, "PROMOTED", EXIT_PASSED),
        ("already_champion", False, "ALREADY THE CHAMPION", EXIT_PASSED),
        ("lost", False, "NOT PROMOTED", EXIT_REFUSED),
        ("failed_gate", False, "NOT PROMOTED", EXIT_REFUSED),
        ("lost", True, "WOULD NOT BE PROMOTED (dry run)", EXIT_REFUSED),
        (None, False, "PIPELINE FAILED", EXIT_REFUSED),
    ],
)
def test_outcome_title_and_exit_code(
    outcome: str | None, dry_run: bool, title: str, code: int
) -> None:
    gate = report(outcome=outcome, dry_run=dry_run)
    assert (gate.title(), gate.exit_code) == (title, code)
    assert render_report(gate).startswith(f"## Model CI gate: {title}\n")


def test_report_links_runs_on_a_tracking_server_without_its_credentials() -> None:
    uri = "https://ci:s3cret@mlflow.example.org/"
    assert run_url(uri, "7", "abc") == "https://mlflow.example.org/#/experiments/7/runs/abc"
    assert run_url("sqlite:///x.db", "7", "abc") is None
    assert run_url("databricks", "7", "abc") is None
    text = render_report(
        report(
            tracking_uri=uri,
            runs=[RunLink("promote", "abc", run_url(uri, "7", "abc"))],
            champion_scores={},
            champion_version=None,
        )
    )
    assert "- promote: [`abc`](https://mlflow.example.org/#/experiments/7/runs/abc)" in text
    assert "s3cret" not in text
    assert "mlflow ui" not in text
    assert "| test_mae | -" not in text
    assert "| **test_mae** (lower is better) | 25 | - |" in text


def test_report_goes_to_its_file_and_is_appended_to_the_step_summary(tmp_path: Path) -> None:
    summary = tmp_path / "summary.md"
    summary.write_text("earlier step\n")
    path = tmp_path / "out" / "ci-report.md"
    written = write_report("# one\n", path, {"GITHUB_STEP_SUMMARY": str(summary)})
    assert written == [path, summary]
    write_report("# two\n", path, {"GITHUB_STEP_SUMMARY": str(summary)})
    assert path.read_text() == "# two\n"
    assert summary.read_text() == "earlier step\n# one\n\n# two\n\n"
    assert write_report("# three\n", path, {}) == [path]


def test_bad_configuration_exits_2_before_any_work(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    assert main(["ci.main_branch="]) == EXIT_CONFIG
    assert "ci.main_branch" in capsys.readouterr().err
    assert main(["main.steps=train,evaluate"]) == EXIT_CONFIG
    assert "needs the promote step" in capsys.readouterr().err
    assert not (tmp_path / "ci-report.md").exists()


def test_the_gate_is_a_deployable_prefect_flow() -> None:
    deployment = ci_gate.to_deployment(
        name="scheduled-retrain",
        cron="0 3 * * 1",
        parameters={"overrides": ["ci.branch=main"], "fail_on_refusal": True},
    )
    assert isinstance(deployment, RunnerDeployment)  # sync, not a coroutine
    assert deployment.entrypoint == "flows/ci_gate.py:ci_gate"
    assert deployment.parameters == {"overrides": ["ci.branch=main"], "fail_on_refusal": True}
