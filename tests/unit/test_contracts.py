"""The contracts between the schemas, MLproject, conf/, the flow, the entry points and the
environment files.

MLproject and docs/configuration.md are generated from the schemas and conf/ holds only values:
these tests prove the generated files are current and every conf key is a schema field, so a
change on one side that is not made on the other fails here instead of in a pipeline run.
"""

from __future__ import annotations

import argparse
import importlib
import json
import re
import shlex
import tomllib
from pathlib import Path
from typing import Any

import pytest
import yaml
from packaging.specifiers import SpecifierSet
from packaging.version import Version
from pydantic import BaseModel

from orchestration import config_reference
from orchestration.config import PipelineConfig, load_config
from orchestration.step_runner import step_parameters
from orchestration.step_table import (
    ENTRY_POINT_SPECS,
    MAINTENANCE_ENTRY_POINTS,
    SCORING_ENTRY_POINTS,
    SPEC_BY_NAME,
    STEP_NAMES,
)
from steps import mlproject
from steps.common.params_cli import flags, is_scalar, parse_params
from steps.contract import normalize
from steps.entry_points import ENTRY_POINT_BY_NAME, ENTRY_POINTS, EntryPoint
from steps.train.model_factory import build_model
from steps.train.model_schemas import MODEL_SCHEMAS

PROJECT_ROOT = Path(__file__).resolve().parents[2]
CONF_DIR = PROJECT_ROOT / "conf"
MODEL_CONF_DIR = CONF_DIR / "model"
MODEL_NAMES_IN_CONF = sorted(path.stem for path in MODEL_CONF_DIR.glob("*.yaml"))

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
    assert set(_entry_points()) == {
        "main",
        *STEP_NAMES,
        *MAINTENANCE_ENTRY_POINTS,
        *SCORING_ENTRY_POINTS,
    }


def test_entry_point_schemas_are_the_steps_and_maintenance() -> None:
    assert [entry.name for entry in ENTRY_POINTS] == [
        *STEP_NAMES,
        *MAINTENANCE_ENTRY_POINTS,
        *SCORING_ENTRY_POINTS,
    ]


# --- generated files -------------------------------------------------------------------------


def test_mlproject_is_generated_from_the_schemas() -> None:
    assert mlproject.MLPROJECT.read_text() == mlproject.render(), "run: python -m steps.mlproject"


def test_mlproject_check_fails_when_stale(tmp_path: Path) -> None:
    stale = tmp_path / "MLproject"
    stale.write_text(mlproject.MLPROJECT.read_text().replace("default: 350", "default: 351"))
    assert mlproject.main(["--check", "--output", str(stale)]) == 1
    assert mlproject.main(["--check"]) == 0


def test_configuration_reference_is_generated_from_the_schemas() -> None:
    current = config_reference.REFERENCE.read_text()
    assert current == config_reference.render(), "run: python -m orchestration.config_reference"
    assert config_reference.main(["--check"]) == 0


def test_every_setting_has_a_description() -> None:
    """The descriptions are the reference, the --help text and the run form's labels."""
    schemas = [
        schema
        for name, field in PipelineConfig.model_fields.items()
        if name != "model" and isinstance(field.annotation, type)
        for _, schema in config_reference.sections(field.annotation, name)
    ]
    schemas += [*MODEL_SCHEMAS.values(), *(entry.params for entry in ENTRY_POINTS)]
    missing = [
        f"{schema.__name__}.{name}"
        for schema in schemas
        for name, field in schema.model_fields.items()
        if name != "name" and not field.description
    ]
    assert not missing, f"settings without a description: {missing}"


@pytest.mark.parametrize("entry", ENTRY_POINTS, ids=lambda entry: entry.name)
def test_mlproject_defaults_are_the_schema_defaults(entry: EntryPoint) -> None:
    """What `mlflow run -e NAME` passes for a parameter left out parses to the schema default."""
    declared = _entry_points()[entry.name]["parameters"]
    fields = flags(entry.params)
    required = [name for name, spec in declared.items() if isinstance(spec, str)]
    assert set(required) == {name for name, field in fields.items() if field.is_required()}
    given: dict[str, Any] = {
        name: "runs:/0123456789abcdef/x"
        if is_scalar(fields[name].annotation)
        else {"name": "torch_lasso"}
        for name in required
    }
    values = {name: str(spec["default"]) for name, spec in declared.items() if name not in given}
    values |= {name: v if isinstance(v, str) else json.dumps(v) for name, v in given.items()}
    module_name, argv = _argv(_entry_points()[entry.name]["command"], values)
    parsed = parse_params(entry.params, _parse(_parser(module_name), argv))
    assert parsed == entry.params.model_validate(given)


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


@pytest.mark.parametrize(
    "entry_point", ["main", *STEP_NAMES, *MAINTENANCE_ENTRY_POINTS, *SCORING_ENTRY_POINTS]
)
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
    parse_params(ENTRY_POINT_BY_NAME[step].params, _parse(_parser(module_name), argv))


@pytest.mark.parametrize("step", SCORING_ENTRY_POINTS)
def test_scoring_parameters_and_inputs_are_the_entry_point_parameters(step: str) -> None:
    """What the scoring flow passes (its configuration's plus get_data's output) is what
    MLproject declares, and it parses in the entry point's own parser."""
    cfg = load_config(["scoring.output=predictions.parquet"])
    parameters: dict[str, Any] = step_parameters(step, cfg, Path.cwd())
    inputs = ENTRY_POINT_SPECS[step].inputs
    assert not set(parameters) & set(inputs)
    assert set(parameters) | set(inputs) == set(_parameter_types(_entry_points()[step]))
    for name in inputs:
        parameters[name] = f"runs:/0123456789abcdef/{name}"
    module_name, argv = _argv(_entry_points()[step]["command"], normalize(parameters))
    parse_params(ENTRY_POINT_BY_NAME[step].params, _parse(_parser(module_name), argv))


# --- conf/ holds values of schema fields only ---------------------------------------------------


def _yaml(path: Path) -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load(path.read_text()) or {}
    return data


def _leaves(values: dict[str, Any], prefix: str = "") -> list[tuple[str, Any]]:
    """Dotted key -> value of every setting a conf file gives (a mapping setting is one value)."""
    leaves: list[tuple[str, Any]] = []
    for key, value in values.items():
        if isinstance(value, dict) and key not in ("gate", "reference_distribution"):
            leaves += _leaves(value, f"{prefix}{key}.")
        else:
            leaves.append((f"{prefix}{key}", value))
    return leaves


def _field(schema: type[BaseModel], dotted: str) -> Any:
    """The schema field a dotted key names; fails the test when there is none."""
    *parents, leaf = dotted.split(".")
    for parent in parents:
        assert parent in schema.model_fields, f"{dotted}: {parent!r} is not a section"
        annotation = schema.model_fields[parent].annotation
        assert isinstance(annotation, type) and issubclass(annotation, BaseModel), dotted
        schema = annotation
    assert leaf in schema.model_fields, f"conf key {dotted} is not a field of {schema.__name__}"
    return schema.model_fields[leaf]


def _config_yaml() -> dict[str, Any]:
    raw = _yaml(CONF_DIR / "config.yaml")
    raw.pop("defaults")
    return raw


def test_config_yaml_keys_are_schema_fields() -> None:
    for key, _ in _leaves(_config_yaml()):
        _field(PipelineConfig, key)


def test_config_yaml_holds_no_copy_of_a_default() -> None:
    """A value equal to the schema's default is a second copy of it: delete it from conf/.
    The settings read from the environment (`${oc.env:...}`) are values, not copies."""
    copies = [
        key
        for key, value in _leaves(_config_yaml())
        if not (isinstance(value, str) and "${" in value)
        and value == _field(PipelineConfig, key).get_default(call_default_factory=True)
    ]
    assert not copies, f"conf/config.yaml repeats the schema defaults of {copies}"


@pytest.mark.parametrize("name", MODEL_NAMES_IN_CONF)
def test_model_yaml_keys_are_schema_fields_and_not_copies(name: str) -> None:
    raw = _yaml(MODEL_CONF_DIR / f"{name}.yaml")
    assert raw.get("name") == name, "conf/model/NAME.yaml names its model"
    schema = MODEL_SCHEMAS[name]
    unknown = sorted(set(raw) - set(schema.model_fields))
    assert not unknown, f"conf/model/{name}.yaml: {unknown} are not fields of {schema.__name__}"
    copies = [
        key
        for key, value in raw.items()
        if key != "name" and value == schema.model_fields[key].get_default()
    ]
    assert not copies, f"conf/model/{name}.yaml repeats the schema defaults of {copies}"
    schema.model_validate(raw)


def test_model_conf_files_are_the_registered_schemas() -> None:
    assert sorted(MODEL_SCHEMAS) == MODEL_NAMES_IN_CONF


@pytest.mark.parametrize(
    "path", sorted((CONF_DIR / "sweep").glob("*.yaml")), ids=lambda path: path.stem
)
def test_sweep_variants_name_schema_fields(path: Path) -> None:
    """Every `model.KEY=...` of a sweep variant is a setting of the model it trains (a search's
    space is checked against the schemas when it is loaded: tests/unit/test_search_space.py)."""
    for variant in _yaml(path).get("variants", []):
        choices = dict(override.split("=", 1) for override in variant)
        schema = MODEL_SCHEMAS[choices.get("model", "torch_lasso")]
        for key in choices:
            if key.startswith("model."):
                assert key.removeprefix("model.") in schema.model_fields, f"{path.name}: {key}"
        load_config(list(variant))


@pytest.mark.parametrize("name", MODEL_NAMES_IN_CONF)
def test_composed_model_is_the_schema_defaults_plus_the_yaml(name: str) -> None:
    composed = load_config([f"model={name}"]).model.model_dump()
    expected = MODEL_SCHEMAS[name]().model_dump() | _yaml(MODEL_CONF_DIR / f"{name}.yaml")
    assert composed == expected


def test_composed_sections_are_the_schema_defaults_where_conf_is_silent() -> None:
    """Hydra starts from the schemas' defaults: a setting conf/ does not give is the default."""
    composed = load_config([]).model_dump(exclude={"model"})
    defaults = PipelineConfig().model_dump(exclude={"model"})
    given = {key for key, _ in _leaves(_config_yaml())}
    for key, default in _leaves(defaults):
        if key not in given and not key.startswith("sweep.variants"):
            section, *rest = key.split(".")
            value = composed[section]
            for part in rest:
                value = value[part]
            assert value == default, key


@pytest.mark.parametrize("name", MODEL_NAMES_IN_CONF)
def test_validated_model_config_is_accepted_by_build_model(name: str) -> None:
    """The train step receives the validated config's dump, not the raw yaml."""
    build_model(load_config([f"model={name}"]).model.model_dump())


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


# --- pytest configuration ---------------------------------------------------------------------


def test_tier_markers_are_registered() -> None:
    markers: list[str] = _pyproject()["tool"]["pytest"]["ini_options"]["markers"]
    registered = {marker.split(":", 1)[0].strip() for marker in markers}
    assert {"unit", "data", "e2e"} <= registered


def test_tier_markers_are_registered_in_the_running_config(request: pytest.FixtureRequest) -> None:
    registered = {str(line).split(":", 1)[0].strip() for line in request.config.getini("markers")}
    assert {"unit", "data", "e2e"} <= registered
