"""The training flow's typed parameters: the Prefect UI's Custom run form is generated from the
configuration's schemas, the fields become Hydra overrides, and a bad value is refused before
any work (by the form's JSON schema, as the Prefect server checks it, and by pydantic)."""

from __future__ import annotations

from typing import Any

import pytest
from prefect.exceptions import ParameterTypeError
from prefect.utilities.callables import parameter_schema
from prefect.utilities.schema_tools.validation import ValidationError as SchemaError
from prefect.utilities.schema_tools.validation import validate

import flows.train_pipeline as pipeline_module
from flows.run_form import MODEL_SCHEMAS, RunForm, hydra_value, run_overrides
from flows.train_pipeline import train_pipeline
from orchestration.config import CONF_DIR, ConfigError, load_config
from orchestration.step_table import STEP_NAMES

SCHEMA = parameter_schema(train_pipeline.fn).model_dump_for_openapi()
FIELDS = ["model", "hyperparameters", "data_source", "steps", "experiment_name"]
TYPED = [*FIELDS, "registered_model"]


def _branch(name: str) -> dict[str, Any]:
    """A top-level parameter's schema without its "None" branch."""
    [branch] = [b for b in SCHEMA["properties"][name]["anyOf"] if b != {"type": "null"}]
    return branch


def _section(model: str) -> dict[str, Any]:
    ref = SCHEMA["definitions"]["ModelHyperparameters"]["properties"][model]["$ref"]
    return SCHEMA["definitions"][ref.rsplit("/", 1)[-1]]


def _server_check(parameters: dict[str, Any]) -> None:
    """What the Prefect server does with a run's parameters before it creates the run."""
    validate(parameters, SCHEMA, raise_on_error=True)


def test_the_form_has_the_typed_fields_then_the_escape_hatch() -> None:
    properties = SCHEMA["properties"]
    assert list(properties) == [*TYPED, "overrides"]
    assert [properties[name]["position"] for name in properties] == list(range(len(properties)))
    assert all(properties[name]["default"] is None for name in properties)
    assert all(properties[name]["description"] for name in properties)
    assert _branch("overrides") == {"items": {"type": "string"}, "type": "array"}


def test_model_is_a_choice_among_conf_model() -> None:
    options = _branch("model")["enum"]
    assert options == list(MODEL_SCHEMAS)
    assert sorted(options) == sorted(path.stem for path in (CONF_DIR / "model").glob("*.yaml"))


def test_steps_are_a_multi_select_in_pipeline_order() -> None:
    assert _branch("steps") == {
        "items": {"enum": list(STEP_NAMES), "type": "string"},
        "type": "array",
    }


@pytest.mark.parametrize("model", list(MODEL_SCHEMAS))
def test_each_model_section_has_its_schema_fields_bounds_and_descriptions(model: str) -> None:
    """The bounds are the schema's own (compared to its JSON schema, not to copied numbers)."""
    config = MODEL_SCHEMAS[model].model_json_schema()["properties"]
    section = _section(model)["properties"]
    assert list(section) == [key for key in config if key != "name"]
    for key, form_field in section.items():
        expected = {k: v for k, v in config[key].items() if k not in ("title", "default")}
        description = expected.pop("description", None)
        branches = expected.pop("anyOf", None) or [expected]
        kept = [b for b in branches if b != {"type": "null"}]
        assert form_field["title"] == key
        shown = {k: v for k, v in form_field.items() if k != "title"}
        # The schema's description is the field's help text in the form.
        assert description and shown.pop("description", None) == description, key
        if any("const" in b or b.get("type") == "boolean" for b in kept):
            # The form would send a switch's false untouched: "None" (conf/'s value) is chosen.
            assert shown == {"anyOf": [*kept, {"type": "null"}], "default": None}, key
        else:
            # An empty field is left out of the run's parameters: no null default to send.
            assert shown == (kept[0] if len(kept) == 1 else {"anyOf": kept}), key


def test_bounds_reach_the_form() -> None:
    assert _section("torch_lasso")["properties"]["alpha"]["exclusiveMinimum"] == 0
    assert _section("random_forest")["properties"]["min_samples_split"]["minimum"] == 2
    max_features = _section("random_forest")["properties"]["max_features"]["anyOf"]
    assert {"enum": ["sqrt", "log2"], "type": "string"} in max_features
    assert _branch("registered_model")["pattern"]
    assert _branch("experiment_name")["minLength"] == 1


def test_unset_fields_mean_conf_values() -> None:
    assert RunForm().overrides() == []
    assert run_overrides({}, None) == []
    assert run_overrides({name: None for name in TYPED}, ["model=random_forest"]) == [
        "model=random_forest"
    ]


def test_typed_fields_become_overrides_before_the_escape_hatch() -> None:
    fields = {
        "model": "random_forest",
        "hyperparameters": {"random_forest": {"n_estimators": 50, "max_features": "sqrt"}},
        "data_source": "/data/it's here, a=b.csv",
        "steps": ["train", "get_data", "data_split"],
        "experiment_name": "my experiment",
        "registered_model": "price_rf",
    }
    overrides = run_overrides(fields, ["data.demo_rows=2000", "model.n_estimators=60"])
    assert overrides == [
        "model=random_forest",
        "model.n_estimators=50",
        "model.max_features='sqrt'",
        "data.source='/data/it\\'s here, a=b.csv'",
        "main.steps=[get_data,data_split,train]",
        "main.experiment_name='my experiment'",
        "main.registered_model='price_rf'",
        "data.demo_rows=2000",
        "model.n_estimators=60",
    ]
    cfg = load_config(overrides)
    assert cfg.model.name == "random_forest"
    assert cfg.model.n_estimators == 60  # the escape hatch wins on a clash
    assert cfg.model.max_features == "sqrt"
    assert cfg.data.source == "/data/it's here, a=b.csv"
    assert cfg.main.steps == ("get_data", "data_split", "train")
    assert (cfg.main.experiment_name, cfg.main.registered_model) == ("my experiment", "price_rf")


def test_what_the_form_sends_for_untouched_sections_sets_nothing() -> None:
    """Prefect's form sends every section, with None for an untouched "None" choice."""
    sent = {
        "model": "random_forest",
        "hyperparameters": {
            "torch_lasso": {"log_target": None},
            "random_forest": {"log_target": None, "n_estimators": 7},
            "hist_gradient_boosting": {"log_target": None, "early_stopping": None},
        },
        "steps": None,
        "data_source": None,
    }
    _server_check(sent)
    assert run_overrides(sent, None) == ["model=random_forest", "model.n_estimators=7"]


def test_a_model_section_implies_its_model() -> None:
    overrides = run_overrides({"hyperparameters": {"torch_lasso": {"alpha": 0.01}}}, None)
    assert overrides == ["model=torch_lasso", "model.alpha=0.01"]
    cfg = load_config(overrides)
    assert cfg.model.name == "torch_lasso" and cfg.model.alpha == 0.01


@pytest.mark.parametrize(
    ("value", "hydra"),
    [(True, "true"), (False, "false"), (3, "3"), (1e-06, "1e-06"), ("C:\\x\\", "'C:\\x\\\\'")],
)
def test_values_in_hydra_grammar(value: Any, hydra: str) -> None:
    assert hydra_value(value) == hydra


def test_a_backslash_before_the_end_survives_hydra() -> None:
    path = "/tmp/odd\\"
    assert load_config(["data.source=" + hydra_value(path)]).data.source == path


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"model": "xgb"}, "model: Input should be"),
        ({"hyperparameters": {"random_forest": {"n_estimators": 0}}}, "n_estimators"),
        ({"hyperparameters": {"torch_lasso": {"depth": 3}}}, "depth"),
        ({"steps": ["train", "deploy"]}, "steps.1"),
        ({"registered_model": "no spaces"}, "registered_model"),
        ({"experiment_name": ""}, "experiment_name"),
        (
            {"model": "torch_lasso", "hyperparameters": {"random_forest": {"n_estimators": 3}}},
            "but model is torch_lasso",
        ),
        (
            {"hyperparameters": {"random_forest": {"n_jobs": 1}, "torch_lasso": {"alpha": 1}}},
            "section of the model the run trains only",
        ),
    ],
)
def test_bad_fields_are_refused_naming_the_field(fields: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError, match="invalid run parameters") as error:
        run_overrides(fields, None)
    assert message in str(error.value)


@pytest.mark.parametrize(
    "parameters",
    [
        {"model": "xgb"},
        {"hyperparameters": {"random_forest": {"n_estimators": 0}}},
        {"hyperparameters": {"torch_lasso": {"alpha": 0}}},
        {"hyperparameters": {"random_forest": {"max_features": 1.5}}},
        {"steps": ["deploy"]},
        {"registered_model": "no spaces"},
        {"overrides": "model=random_forest"},
    ],
)
def test_the_server_refuses_a_bad_value_before_the_run_exists(parameters: dict[str, Any]) -> None:
    with pytest.raises(SchemaError):
        _server_check(parameters)
    with pytest.raises(ParameterTypeError):
        train_pipeline.validate_parameters(parameters)


def test_the_server_accepts_what_the_form_sends() -> None:
    _server_check({})
    _server_check(
        {
            "model": "random_forest",
            "hyperparameters": {"random_forest": {"n_estimators": 50, "max_features": "sqrt"}},
            "steps": ["get_data", "train"],
            "data_source": "${oc.env:LISTINGS_URL}",
            "overrides": ["data.demo_rows=2000"],
        }
    )
    _server_check({name: None for name in [*TYPED, "overrides"]})


@pytest.mark.parametrize(
    "source",
    [
        "https://user:secret@example.com/listings.csv",
        "https://example.com/listings.csv?X-Amz-Signature=abc&X-Amz-Credential=k",
        "https://example.com/listings.csv?raw=1&SIG=abc",
        "https://example.com/listings.csv?token",
        # Only a whole URL read from the environment may carry credentials.
        "https://${oc.env:LISTINGS_USER}@example.com/listings.csv",
    ],
)
def test_a_credential_in_the_source_never_reaches_the_run_parameters(source: str) -> None:
    """Refused by the server's schema check (nothing stored) and by pydantic in the flow; the
    error never repeats the value."""
    with pytest.raises(SchemaError):
        _server_check({"data_source": source})
    with pytest.raises(ConfigError) as error:
        run_overrides({"data_source": source}, None)
    assert "carries credentials" in str(error.value)
    assert "secret" not in str(error.value) and "abc" not in str(error.value)


@pytest.mark.parametrize(
    "source",
    [
        "demo",
        "/data/listings.csv",
        "https://example.com/listings.csv?raw=1",
        "${oc.env:LISTINGS_URL}",
    ],
)
def test_a_source_without_credentials_passes_as_written(
    source: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("LISTINGS_URL", "https://example.com/x.csv?Signature=s3cr3t")
    _server_check({"data_source": source})
    cfg = load_config(run_overrides({"data_source": source}, None))
    assert cfg.data.source == source


def test_a_bad_field_stops_the_flow_before_any_work(monkeypatch: pytest.MonkeyPatch) -> None:
    def no_work(*_: Any, **__: Any) -> None:
        raise AssertionError("the flow started work on parameters it should have refused")

    monkeypatch.setattr(pipeline_module, "start_flow", no_work)
    with pytest.raises(ConfigError, match="but model is torch_lasso"):
        train_pipeline.fn(
            model="torch_lasso",
            hyperparameters={"random_forest": {"n_estimators": 3}},  # type: ignore[arg-type]
        )
    with pytest.raises(ConfigError, match=r"unknown key 'model\.depth'"):
        train_pipeline.fn(model="random_forest", overrides=["model.depth=3"])
