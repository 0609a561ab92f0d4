"""The code digest of a step's cache key: every project module it imports, plus the locked
library versions and the environment files; nothing it does not import."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from tasks.step_cache import code_version, import_closure, step_module
from tests.conftest import PROJECT_ROOT

_COPIED = ("steps", "connectors", "tasks", "flows", "reporting", "processes")
_FILES = ("MLproject", "conda.yml", "constraints.txt", "pyproject.toml")


@pytest.fixture(scope="module")
def _copy(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A copy of the project's code (made once: copying costs more than the tests)."""
    root = tmp_path_factory.mktemp("project")
    ignore = shutil.ignore_patterns("__pycache__")
    for name in _COPIED:
        shutil.copytree(PROJECT_ROOT / name, root / name, ignore=ignore)
    for name in _FILES:
        shutil.copy(PROJECT_ROOT / name, root / name)
    return root


@pytest.fixture
def project(_copy: Path) -> Iterator[Path]:
    """The copy, to change one file at a time; every change is undone after the test."""
    originals = {path: path.read_bytes() for path in _copy.rglob("*") if path.is_file()}
    yield _copy
    for path, data in originals.items():
        if path.read_bytes() != data:
            path.write_bytes(data)


def _key(project: Path, step: str) -> str:
    return code_version.__wrapped__(project, step)


def _append(path: Path, text: str = "\n# changed\n") -> None:
    path.write_text(path.read_text() + text)


@pytest.mark.parametrize("step", ["get_data", "train"])
def test_a_change_in_connectors_changes_the_key(project: Path, step: str) -> None:
    """get_data imports connectors.oss; every step loads the oss:// artifact-store plugin."""
    before = _key(project, step)
    _append(project / "connectors" / "oss.py")
    assert _key(project, step) != before


def test_a_locked_library_version_changes_every_key(project: Path) -> None:
    before = {step: _key(project, step) for step in ("get_data", "train")}
    constraints = project / "constraints.txt"
    text = constraints.read_text()
    old = next(line for line in text.splitlines() if line.startswith("scikit-learn=="))
    constraints.write_text(text.replace(old, "scikit-learn==0.0.1"))
    after = {step: _key(project, step) for step in before}
    assert all(after[step] != before[step] for step in before)


@pytest.mark.parametrize("changed", ["MLproject", "conda.yml"])
def test_the_environment_files_change_the_key(project: Path, changed: str) -> None:
    before = _key(project, "train")
    _append(project / changed)
    assert _key(project, "train") != before


def test_a_module_the_step_imports_changes_its_key_and_not_the_others(project: Path) -> None:
    train, split = _key(project, "train"), _key(project, "data_split")
    _append(project / "steps" / "train" / "features.py")
    assert _key(project, "train") != train
    assert _key(project, "data_split") == split


def test_code_the_step_does_not_import_leaves_the_key(project: Path) -> None:
    before = _key(project, "train")
    _append(project / "reporting" / "summary.py")
    _append(project / "processes" / "run_owner.py")
    assert _key(project, "train") == before


def test_the_closure_follows_relative_lazy_and_literal_dynamic_imports(tmp_path: Path) -> None:
    package = tmp_path / "pkg"
    (package / "sub").mkdir(parents=True)
    (package / "__init__.py").write_text("")
    (package / "sub" / "__init__.py").write_text("")
    (package / "main.py").write_text(
        "from .sub import lazy_user\n"
        "import importlib\n"
        "def later():\n    importlib.import_module('pkg.plugin')\n"
    )
    (package / "sub" / "lazy_user.py").write_text("def f():\n    from ..helper import x\n")
    (package / "helper.py").write_text("import json\nx = 1\n")
    (package / "plugin.py").write_text("")
    (package / "unused.py").write_text("")
    found = {str(p.relative_to(tmp_path)) for p in import_closure(tmp_path, "pkg.main")}
    assert found == {
        "pkg/__init__.py",
        "pkg/main.py",
        "pkg/sub/__init__.py",
        "pkg/sub/lazy_user.py",
        "pkg/helper.py",
        "pkg/plugin.py",
    }


def test_the_step_module_is_read_from_mlproject() -> None:
    assert step_module(PROJECT_ROOT, "get_data") == "steps.ingest.get_data"
    assert step_module(PROJECT_ROOT, "train") == "steps.train.train"
