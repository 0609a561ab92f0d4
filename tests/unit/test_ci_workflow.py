"""The GitHub Actions workflow runs only commands this project has: make targets and modules."""

from __future__ import annotations

import importlib.util
import re
import shlex
import tomllib
from pathlib import Path
from typing import Any

import pytest
import yaml

from orchestration.config import load_config

PROJECT_ROOT = Path(__file__).resolve().parents[2]
WORKFLOW = PROJECT_ROOT / ".github" / "workflows" / "ci.yml"
_RULE = re.compile(r"^([A-Za-z0-9_.\-]+)\s*:(?![=:])", re.MULTILINE)
_MODULE = re.compile(r"(?:python[\d.]*|\$\(PY\))\s+-m\s+([A-Za-z_][\w.]*)")


def _workflow() -> dict[Any, Any]:
    data: dict[Any, Any] = yaml.safe_load(WORKFLOW.read_text())
    return data


def _steps() -> list[dict[str, Any]]:
    return [step for job in _workflow()["jobs"].values() for step in job["steps"]]


def _commands() -> list[str]:
    return [str(step["run"]) for step in _steps() if "run" in step]


def _makefile_rules() -> dict[str, str]:
    """Target -> its recipe (the tab-indented lines below the rule)."""
    text = (PROJECT_ROOT / "Makefile").read_text()
    rules: dict[str, str] = {}
    current: list[str] = []
    for line in text.splitlines():
        match = _RULE.match(line)
        if match and not line.startswith("\t"):
            current = [match.group(1)]
            rules.setdefault(match.group(1), "")
        elif line.startswith("\t") and current:
            rules[current[0]] += line + "\n"
        elif not line.strip().startswith("#"):
            current = current if line.startswith("\t") else []
    return rules


def _make_targets(command: str) -> list[str]:
    """`make a b VAR=x` -> [a, b], for every make call in a (possibly multi-line) command."""
    targets = []
    for line in command.replace("\\\n", " ").splitlines():
        words = shlex.split(line, posix=True)
        for index, word in enumerate(words):
            if word != "make":
                continue
            for argument in words[index + 1 :]:
                if argument in ("&&", "||", ";", "|"):
                    break
                if argument.startswith("-") or "=" in argument:
                    continue
                targets.append(argument)
    return targets


def test_workflow_runs_tests_then_the_ci_gate_and_publishes_its_report(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    workflow = _workflow()
    # PyYAML reads the bare key `on` as True.
    triggers = workflow.get("on", workflow.get(True)) or {}
    assert "push" in triggers
    targets = [target for command in _commands() for target in _make_targets(command)]
    assert targets.index("test") < targets.index("ci-train")
    setup = next(step for step in _steps() if str(step.get("uses", "")).startswith("actions/setup"))
    python = str(setup["with"]["python-version"])
    assert python == _pyproject_python()
    upload = next(s for s in _steps() if str(s.get("uses", "")).startswith("actions/upload"))
    gate = next(step for step in _steps() if "ci-train" in str(step.get("run", "")))
    report = gate["env"]["CI_REPORT_PATH"]
    assert upload["with"]["path"] == report
    assert upload["if"] == "always()"
    # The gate's default report path is the one published, CI_REPORT_PATH set or not.
    monkeypatch.delenv("CI_REPORT_PATH", raising=False)
    assert load_config().ci.report_path == report


def _pyproject_python() -> str:
    requires = tomllib.loads((PROJECT_ROOT / "pyproject.toml").read_text())["project"][
        "requires-python"
    ]
    match = re.search(r">=\s*(\d+\.\d+)", requires)
    assert match, requires
    return match.group(1)


def test_every_make_target_the_workflow_runs_exists() -> None:
    rules = _makefile_rules()
    targets = [target for command in _commands() for target in _make_targets(command)]
    assert targets, "the workflow runs no make target"
    missing = [target for target in targets if target not in rules]
    assert not missing, f"workflow runs make targets the Makefile lacks: {missing}"


def test_every_module_the_workflow_runs_resolves() -> None:
    rules = _makefile_rules()
    commands = _commands()
    recipes = [rules[t] for command in commands for t in _make_targets(command) if t in rules]
    modules = {m for text in commands + recipes for m in _MODULE.findall(text)}
    assert "flows.ci_gate" in modules
    missing = [module for module in sorted(modules) if importlib.util.find_spec(module) is None]
    assert not missing, f"modules that do not import: {missing}"


def test_make_target_parsing() -> None:
    assert _make_targets('make ci-train ARGS="a=b c=d" && make -k lint') == ["ci-train", "lint"]
    rules = _makefile_rules()
    assert "flows.ci_gate" in rules["ci-train"]
    assert "PY" not in rules  # variable assignments are not rules
