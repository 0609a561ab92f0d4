"""The README and docs/ name only things that exist: files, anchors, make targets, modules.

A page that points at a moved file or a renamed target misleads the newcomer it was written
for, and nothing else would notice. Checked: every relative link (and its #anchor) resolves,
every repository path written in backticks exists, every `make TARGET` in code is a Makefile
rule, every `python -m MODULE` in code imports, and the README's layout tree lists exactly the
top-level folders of the repository.
"""

from __future__ import annotations

import importlib.util
import re
import subprocess
from pathlib import Path

import pytest

PROJECT_ROOT = Path(__file__).resolve().parents[2]
README = PROJECT_ROOT / "README.md"
PAGES = [README, *sorted((PROJECT_ROOT / "docs").glob("*.md"))]

_FENCE = re.compile(r"^```.*?$(.*?)^```", re.MULTILINE | re.DOTALL)
_SPAN = re.compile(r"`([^`\n]+)`")
_LINK = re.compile(r"\[[^\]\n]*\]\(([^)\s]+)\)")
_HEADING = re.compile(r"^#{1,6}\s+(.+?)\s*$", re.MULTILINE)
_RULE = re.compile(r"^([A-Za-z0-9_.\-]+)\s*:(?![=:])", re.MULTILINE)
_MODULE = re.compile(r"python[\d.]*\s+-m\s+([A-Za-z_][\w.]*)")
_TARGET = re.compile(r"^[a-z][\w.-]*$")
_PATH = re.compile(r"^\.?/?[\w.-]+(?:/[\w.-]*)+$")
_PLACEHOLDER = re.compile(r"[<>*…]|NAME|\.\.\.")
_TREE_ENTRY = re.compile(r"^([\w.-]+/?)\s{2,}\S", re.MULTILINE)


def _relative(page: Path) -> str:
    return page.relative_to(PROJECT_ROOT).as_posix()


def _code(text: str) -> tuple[list[str], list[str]]:
    """(fenced blocks, inline code spans outside them)."""
    blocks = _FENCE.findall(text)
    return blocks, _SPAN.findall(_FENCE.sub("", text))


def _slug(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped, spaces to hyphens."""
    plain = re.sub(r"[`*_]|\[([^\]]*)\]\([^)]*\)", r"\1", heading).strip().lower()
    return re.sub(r"[^\w\- ]", "", plain).replace(" ", "-")


def _tracked_top_level() -> set[str]:
    listed = subprocess.run(
        ["git", "ls-files"], cwd=PROJECT_ROOT, capture_output=True, text=True, check=True
    ).stdout.split()
    return {path.split("/")[0] for path in listed}


def _make_targets(code: str) -> list[str]:
    """The target of every `make [-k] [VAR=x] TARGET` in a piece of code (one target each: the
    words after it may be a comment's prose)."""
    targets = []
    for line in code.replace("\\\n", " ").splitlines():
        words = line.split()
        for index, word in enumerate(words):
            if word.strip("|(") != "make":
                continue
            arguments = [w for w in words[index + 1 :] if not w.startswith("-") and "=" not in w]
            target = arguments[0].rstrip("),:;.") if arguments else ""
            if _TARGET.match(target):
                targets.append(target)
    return targets


def _makefile_targets() -> set[str]:
    text = (PROJECT_ROOT / "Makefile").read_text()
    return set(_RULE.findall(text))


@pytest.mark.parametrize("page", PAGES, ids=_relative)
def test_every_relative_link_resolves(page: Path) -> None:
    text = page.read_text()
    broken = []
    for target in _LINK.findall(text):
        if re.match(r"^[a-z][a-z+.-]*:", target):  # https:, mailto:
            continue
        file_part, _, anchor = target.partition("#")
        path = (page.parent / file_part).resolve() if file_part else page
        inside = path.is_relative_to(PROJECT_ROOT)
        name = path.relative_to(PROJECT_ROOT).as_posix() if inside else str(path)
        if not path.exists():
            broken.append(f"{target}: no such file")
        elif anchor and path.suffix == ".md":
            slugs = {_slug(h) for h in _HEADING.findall(_FENCE.sub("", path.read_text()))}
            if anchor not in slugs:
                broken.append(f"{target}: no heading #{anchor} in {name}")
    assert not broken, f"{_relative(page)}: {broken}"


@pytest.mark.parametrize("page", PAGES, ids=_relative)
def test_every_repository_path_in_backticks_exists(page: Path) -> None:
    tracked = _tracked_top_level()
    _, spans = _code(page.read_text())
    missing = []
    for span in spans:
        candidate = span.split(":")[0].removeprefix("./")
        if not _PATH.match(candidate) or _PLACEHOLDER.search(candidate):
            continue
        if candidate.split("/")[0] not in tracked:  # mlruns/, .venv/, test-output/: made at run
            continue
        if not (PROJECT_ROOT / candidate).exists():
            missing.append(candidate)
    assert not missing, f"{_relative(page)} names paths that do not exist: {missing}"


@pytest.mark.parametrize("page", PAGES, ids=_relative)
def test_every_make_target_in_code_exists(page: Path) -> None:
    blocks, spans = _code(page.read_text())
    targets = [target for code in [*blocks, *spans] for target in _make_targets(code)]
    missing = sorted(set(targets) - _makefile_targets())
    assert not missing, f"{_relative(page)} runs make targets the Makefile lacks: {missing}"


@pytest.mark.parametrize("page", PAGES, ids=_relative)
def test_every_python_module_in_code_imports(page: Path) -> None:
    blocks, spans = _code(page.read_text())
    modules = {m.rstrip(".") for code in [*blocks, *spans] for m in _MODULE.findall(code)}
    missing = [module for module in sorted(modules) if importlib.util.find_spec(module) is None]
    assert not missing, f"{_relative(page)} runs modules that do not exist: {missing}"


def test_the_readme_quick_start_is_the_two_commands() -> None:
    quick_start = README.read_text().split("## Quick start", 1)[1]
    block = _FENCE.search(quick_start)
    assert block is not None, "README has no code block under ## Quick start"
    commands = [line.split("#")[0].strip() for line in block.group(1).strip().splitlines()]
    assert commands == ["make run", "make test"]


def test_the_readme_layout_lists_every_top_level_folder() -> None:
    text = README.read_text()
    layout = text.split("## Layout", 1)[1]
    tree = _FENCE.search(layout)
    assert tree is not None, "README has no layout tree under ## Layout"
    entries = {entry.rstrip("/") for entry in _TREE_ENTRY.findall(tree.group(1))}
    hidden = {".ci", ".github"}
    folders = {name for name in _tracked_top_level() if (PROJECT_ROOT / name).is_dir()} - hidden
    assert not entries - _tracked_top_level(), f"layout names what is not there: {entries}"
    assert not folders - entries, f"layout misses top-level folders: {sorted(folders - entries)}"


def test_the_parsers_find_what_they_look_for() -> None:
    code = "make -k bench ARGS=x  # all\n| make worker: each\nMODEL=m make serve && make lint"
    assert _make_targets(code) == ["bench", "worker", "serve", "lint"]
    assert {"run", "test", "bench-faults"} <= _makefile_targets()
    assert "PY" not in _makefile_targets()  # variable assignments are not rules
    assert _slug("The shared tracking server (make mlflow-server)") == (
        "the-shared-tracking-server-make-mlflow-server"
    )
    assert _MODULE.findall("`.venv/bin/python -m flows.sweep sweep=x`") == ["flows.sweep"]
