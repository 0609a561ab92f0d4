"""An entry point's command line is its schema: the same fields, descriptions, bounds, defaults,
and one validation whose failure is a configuration error (exit code 2)."""

from __future__ import annotations

import pytest

from steps.common.entrypoint import run_entry_point
from steps.common.errors import EXIT_BAD_CONFIG, ConfigurationError
from steps.common.params_cli import Params, flags, params_parser, parse_params, with_params
from steps.entry_points import ENTRY_POINTS, EntryPoint
from steps.ingest.schema import BasicCleaningParams
from steps.registry.schema import PromoteParams
from steps.train.model_schemas import RandomForestSchema
from steps.train.schema import TrainParams


@pytest.mark.parametrize("entry", ENTRY_POINTS, ids=lambda entry: entry.name)
def test_help_lists_every_flag_with_its_description(entry: EntryPoint) -> None:
    text = " ".join(params_parser(entry.params, entry.name, "doc").format_help().split())
    for name, field in flags(entry.params).items():
        assert f"--{name}" in text
        assert field.description, f"{entry.name}.{name} has no description"
        assert " ".join(field.description.split()) in text


def _parse(schema: type[Params], *argv: str) -> Params:
    return parse_params(schema, params_parser(schema, "x", None).parse_args(list(argv)))


def test_strings_become_typed_values_and_defaults_fill_in() -> None:
    params = _parse(BasicCleaningParams, "--input_artifact", "runs:/1/x", "--max_price", "500")
    assert params.max_price == 500.0 and params.min_price == 10
    promote = _parse(
        PromoteParams,
        *("--model", "m", "--test_data", "t", "--dry_run", "true"),
        *("--gate", '{"test_mae": {"max": 60}}'),
    )
    assert promote.dry_run is True and promote.gate_bounds() == {"test_mae": {"max": 60.0}}


def test_json_parameter_is_validated_by_its_schema() -> None:
    train = _parse(
        TrainParams,
        *("--train_data", "a", "--val_data", "b"),
        *("--model_config", '{"name": "random_forest", "n_estimators": 7}'),
    )
    assert isinstance(train.model, RandomForestSchema) and train.model.n_estimators == 7
    with pytest.raises(ConfigurationError, match=r"--model_config.*n_estimators"):
        _parse(
            TrainParams,
            *("--train_data", "a", "--val_data", "b"),
            *("--model_config", '{"name": "random_forest", "n_estimators": 0}'),
        )
    with pytest.raises(ConfigurationError, match="--model_config must be JSON"):
        _parse(TrainParams, "--train_data", "a", "--val_data", "b", "--model_config", "{")


@pytest.mark.parametrize(
    ("argv", "pattern"),
    [
        (["--min_price", "cheap"], r"--min_price: .*valid number"),
        (["--min_price", "400"], "min_price must be below max_price"),
        (["--max_drop_fraction", "2"], r"--max_drop_fraction: .*less than or equal to 1"),
    ],
)
def test_bad_value_is_a_configuration_error_naming_the_flag(argv: list[str], pattern: str) -> None:
    with pytest.raises(ConfigurationError, match=pattern):
        _parse(BasicCleaningParams, "--input_artifact", "x", *argv)


def test_bad_value_exits_with_the_configuration_exit_code(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("MLFLOW_RUN_ID", raising=False)
    called: list[BasicCleaningParams] = []
    parser = params_parser(BasicCleaningParams, "basic_cleaning", None)
    with pytest.raises(SystemExit) as exited:
        run_entry_point(
            parser,
            with_params(BasicCleaningParams, called.append),
            ["--input_artifact", "x", "--max_price", "-1"],
        )
    assert exited.value.code == EXIT_BAD_CONFIG and not called
