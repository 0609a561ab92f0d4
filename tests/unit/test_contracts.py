"""The contracts between MLproject, conf/, the flow, the entry points and the environment files.

Each test reads the real project files, so a change on one side that is not made on the other
fails here instead of in the middle of a pipeline run.
"""

from __future__ import annotations

import argparse
import importlib
import re
import shlex
import tomllib
from pathlib import Path
from typing import Any

import pytest
import yaml
from packaging.specifiers import SpecifierSet
from packaging.version import Version
from pydantic import TypeAdapter

from flows.config import (
    HistGradientBoostingConfig,
    ModelConfig,
    RandomForestConfig,
    TorchLassoConfig,
    load_config,
)
from flows.pipeline_steps import MAINTENANCE_ENTRY_POINTS, SPEC_BY_NAME, STEP_NAMES
from flows.step_runner import step_parameters
from steps.contract import normalize
from steps.train.model_factory import COMMON_DEFAULTS, HYPERPARAMETERS, MODEL_NAMES, build_model

PROJECT_ROOT = Path(__file__).resolve().parents[2]
MODEL_CONF_DIR = PROJECT_ROOT / "conf" / "model"
MODEL_NAMES_IN_CONF = sorted(path.stem for path in MODEL_CONF_DIR.glob("*.yaml"))
MODEL_SCHEMAS: dict[
    str, type[TorchLassoConfig] | type[RandomForestConfig] | type[HistGradientBoostingConfig]
] = {
    "torch_lasso": TorchLassoConfig,
    "random_forest": RandomForestConfig,
    "hist_gradient_boosting": HistGradientBoostingConfig,
}

_PLACEHOLDER = re.compile(r"\{(\w+)\}")
_FLAG = re.compile(r"(?<!\S)--(\w+)")
_MODULE = re.compile(r"\bpython -m ([\w.]+)")


def _mlproject() -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load((PROJECT_ROOT / "MLproject").read_text())
    return data


def _entry_points() -> dict[str, dict[str, Any]]:
    entry_points: dict[str, dict[str, Any]] = _mlproject()["entry_points"]
    return entry_points


def _parameter_types(entry_point: dict[str, Any]) -> dict[str, str]:
    """Parameter name -> MLflow type (`name: float` or `name: {type: float, default: ...}`)."""
    types = {}
    for name, spec in (entry_point.get("parameters") or {}).items():
        types[name] = spec if isinstance(spec, str) else spec.get("type", "string")
    return types


def _pyproject() -> dict[str, Any]:
    return tomllib.loads((PROJECT_ROOT / "pyproject.toml").read_text())


def _conda() -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load((PROJECT_ROOT / "conda.yml").read_text())
    return data


def _model_yaml(name: str) -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load((MODEL_CONF_DIR / f"{name}.yaml").read_text())
    return data


def _dummy_value(step: str, name: str, mlflow_type: str) -> str:
    if step == "data_check" and name == "reference_distribution":
        return '{"Manhattan": 1}'
    default = _entry_points()[step]["parameters"][name]
    if isinstance(default, dict) and "default" in default:
        return str(default["default"])
    return "1" if mlflow_type == "float" else "x"


def _argv(command: str, values: dict[str, str]) -> tuple[str, list[str]]:
    """Substitute values the way `mlflow run` does (shell-quoted) and split like the shell."""
    substituted = command.format(**{name: shlex.quote(value) for name, value in values.items()})
    tokens = shlex.split(substituted)
    assert tokens[:2] == ["python", "-m"], f"command does not start with python -m: {command}"
    return tokens[2], tokens[3:]


def _parser(module_name: str) -> argparse.ArgumentParser:
    module = importlib.import_module(module_name)
    parser: argparse.ArgumentParser = module.build_parser()
    return parser


def _parse(parser: argparse.ArgumentParser, argv: list[str]) -> argparse.Namespace:
    try:
        return parser.parse_args(argv)
    except SystemExit as exc:  # argparse exits on an unknown flag or a value of the wrong type
        pytest.fail(f"{parser.prog} rejected {argv}: exit {exc.code}")


# --- MLproject <-> STEPS ---------------------------------------------------------------------


def test_every_step_has_an_entry_point() -> None:
    missing = [step for step in STEP_NAMES if step not in _entry_points()]
    assert not missing, f"steps without an MLproject entry point: {missing}"


def test_main_entry_point_takes_steps_and_hydra_options() -> None:
    main = _entry_points().get("main")
    assert main is not None, "MLproject has no `main` entry point"
    assert set(_parameter_types(main)) == {"steps", "hydra_options"}


def test_entry_points_are_the_steps_plus_main() -> None:
    assert set(_entry_points()) == {"main", *STEP_NAMES, *MAINTENANCE_ENTRY_POINTS}


@pytest.mark.parametrize("model", MODEL_NAMES_IN_CONF)
@pytest.mark.parametrize("step", STEP_NAMES)
def test_step_parameters_and_inputs_are_the_entry_point_parameters(step: str, model: str) -> None:
    cfg = load_config([f"model={model}"])
    from_config = set(step_parameters(step, cfg, Path.cwd()))
    from_upstream = set(SPEC_BY_NAME[step].inputs)
    assert not from_config & from_upstream, "a parameter is fed both by config and upstream"
    declared = set(_parameter_types(_entry_points()[step]))
    assert from_config | from_upstream == declared, (
        f"{step}: flow passes {sorted(from_config | from_upstream)}, "
        f"MLproject declares {sorted(declared)}"
    )


def test_default_model_step_parameters_match_entry_points() -> None:
    cfg = load_config([])
    for step in STEP_NAMES:
        passed = set(step_parameters(step, cfg, Path.cwd())) | set(SPEC_BY_NAME[step].inputs)
        assert passed == set(_parameter_types(_entry_points()[step])), step


# --- MLproject commands <-> entry point modules ------------------------------------------------


@pytest.mark.parametrize("entry_point", ["main", *STEP_NAMES, *MAINTENANCE_ENTRY_POINTS])
def test_command_references_every_parameter(entry_point: str) -> None:
    spec = _entry_points()[entry_point]
    placeholders = set(_PLACEHOLDER.findall(spec["command"]))
    declared = set(_parameter_types(spec))
    assert placeholders == declared, (
        f"{entry_point}: command uses {sorted(placeholders)}, declares {sorted(declared)}"
    )


@pytest.mark.parametrize("step", STEP_NAMES)
def test_command_flags_are_accepted_by_the_module_parser(step: str) -> None:
    spec = _entry_points()[step]
    command: str = spec["command"]
    types = _parameter_types(spec)
    module_name, argv = _argv(
        command, {name: _dummy_value(step, name, kind) for name, kind in types.items()}
    )
    match = _MODULE.search(command)
    assert match is not None and match.group(1) == module_name
    parser = _parser(module_name)

    known = {option for action in parser._actions for option in action.option_strings}
    flags = _FLAG.findall(command)
    unknown = [flag for flag in flags if f"--{flag}" not in known]
    assert not unknown, f"{module_name}.build_parser() lacks {unknown}"

    args = _parse(parser, argv)
    for flag in flags:
        assert hasattr(args, flag), f"{module_name}: --{flag} is not stored as args.{flag}"


@pytest.mark.parametrize("step", STEP_NAMES)
def test_each_flag_carries_its_own_parameter(step: str) -> None:
    """`--min_price {max_price}` would pass every other check and swap two bounds."""
    command: str = _entry_points()[step]["command"]
    pairs = re.findall(r"--(\w+)\s+\{(\w+)\}", command)
    assert len(pairs) == len(_FLAG.findall(command)), f"a flag without a {{value}}: {command}"
    mismatched = [(flag, value) for flag, value in pairs if flag != value]
    assert not mismatched, f"{step}: flags fed from another parameter: {mismatched}"


@pytest.mark.parametrize("model", MODEL_NAMES_IN_CONF)
@pytest.mark.parametrize("step", STEP_NAMES)
def test_real_parameters_parse_in_the_entry_point(step: str, model: str) -> None:
    """What the flow really sends (normalized config values) fits the parsers' types."""
    cfg = load_config([f"model={model}"])
    parameters: dict[str, Any] = step_parameters(step, cfg, Path.cwd())
    for name in SPEC_BY_NAME[step].inputs:
        parameters[name] = f"runs:/0123456789abcdef/{name}"
    module_name, argv = _argv(_entry_points()[step]["command"], normalize(parameters))
    _parse(_parser(module_name), argv)


# --- environment files --------------------------------------------------------------------------


def _conda_pip_list() -> list[str]:
    for dependency in _conda()["dependencies"]:
        if isinstance(dependency, dict) and "pip" in dependency:
            pip: list[str] = dependency["pip"]
            return pip
    pytest.fail("conda.yml has no pip: list")


def _conda_python() -> str:
    for dependency in _conda()["dependencies"]:
        if isinstance(dependency, str) and re.match(r"^python\s*[=<>!~]", dependency):
            return re.sub(r"^python\s*=*", "", dependency).strip()
    pytest.fail("conda.yml pins no python version")


def test_conda_pip_list_equals_pyproject_dependencies() -> None:
    dependencies: list[str] = _pyproject()["project"]["dependencies"]
    assert sorted(_conda_pip_list()) == sorted(dependencies)


def test_conda_python_matches_requires_python() -> None:
    requires = SpecifierSet(_pyproject()["project"]["requires-python"])
    conda_python = _conda_python()
    major, minor = (int(part) for part in conda_python.split(".")[:2])
    assert Version(f"{major}.{minor}.0") in requires
    assert Version(f"{major}.{minor}.99") in requires
    allowed_minors = {m for m in range(6, 20) if Version(f"3.{m}.0") in requires}
    assert allowed_minors == {minor}, (
        f"requires-python {requires} allows 3.{sorted(allowed_minors)}, conda pins {conda_python}"
    )


# --- model configs ------------------------------------------------------------------------------


def test_model_conf_files_are_the_model_factory_models() -> None:
    assert sorted(MODEL_NAMES) == MODEL_NAMES_IN_CONF


@pytest.mark.parametrize("name", MODEL_NAMES_IN_CONF)
def test_model_yaml_is_accepted_by_the_config_schema(name: str) -> None:
    raw = _model_yaml(name)
    assert raw["name"] == name
    validated = TypeAdapter(ModelConfig).validate_python(raw)
    assert isinstance(validated, MODEL_SCHEMAS[name])
    assert set(validated.model_dump()) == set(raw)


@pytest.mark.parametrize("name", MODEL_NAMES_IN_CONF)
def test_model_yaml_is_accepted_by_build_model(name: str) -> None:
    build_model(_model_yaml(name))


@pytest.mark.parametrize("name", MODEL_NAMES_IN_CONF)
def test_validated_model_config_is_accepted_by_build_model(name: str) -> None:
    """The train step receives the validated config's dump, not the raw yaml."""
    build_model(load_config([f"model={name}"]).model.model_dump())


@pytest.mark.parametrize("name", sorted(MODEL_SCHEMAS))
def test_config_schema_keys_equal_build_model_keys(name: str) -> None:
    schema_keys = set(MODEL_SCHEMAS[name].model_fields)
    factory_keys = {"name", *COMMON_DEFAULTS[name], *HYPERPARAMETERS[name]}
    assert schema_keys == factory_keys


# --- pytest configuration ---------------------------------------------------------------------


def test_tier_markers_are_registered() -> None:
    markers: list[str] = _pyproject()["tool"]["pytest"]["ini_options"]["markers"]
    registered = {marker.split(":", 1)[0].strip() for marker in markers}
    assert {"unit", "data", "e2e"} <= registered


def test_tier_markers_are_registered_in_the_running_config(request: pytest.FixtureRequest) -> None:
    registered = {str(line).split(":", 1)[0].strip() for line in request.config.getini("markers")}
    assert {"unit", "data", "e2e"} <= registered
