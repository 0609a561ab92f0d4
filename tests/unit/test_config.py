"""load_config composes conf/ with Hydra overrides and validates it, or says what to change."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from orchestration.config import ConfigError, DataConfig, PipelineConfig, load_config
from orchestration.step_table import STEP_NAMES

ENV_DEFAULTED = ("MLFLOW_TRACKING_URI", "WANDB_MODE", "WANDB_PROJECT", "WANDB_RUN_GROUP")


@pytest.fixture(autouse=True)
def _clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """conf/config.yaml reads these variables; the tests set them only where they mean to."""
    for name in ENV_DEFAULTED:
        monkeypatch.delenv(name, raising=False)


def test_default_config_loads() -> None:
    cfg = load_config([])
    assert isinstance(cfg, PipelineConfig)
    assert cfg.main.steps == STEP_NAMES
    assert cfg.main.env_manager == "local"
    assert cfg.model.name == "torch_lasso"
    assert cfg.data.source == "demo"
    assert cfg.tracking.uri is None
    assert cfg.wandb.mode == "offline"
    assert cfg.wandb.group is None


def test_default_config_loads_without_arguments() -> None:
    assert load_config() == load_config([])


OVERRIDE_EFFECTS: list[tuple[str, Callable[[PipelineConfig], object], object]] = [
    ("main.steps=get_data,basic_cleaning", lambda c: c.main.steps, ("get_data", "basic_cleaning")),
    ("main.steps=all", lambda c: c.main.steps, STEP_NAMES),
    ("main.steps=train", lambda c: c.main.steps, ("train",)),
    ("model=random_forest", lambda c: c.model.name, "random_forest"),
    ("model.alpha=0.05", lambda c: getattr(c.model, "alpha", None), 0.05),
    ("data.source=/tmp/x.csv", lambda c: c.data.source, "/tmp/x.csv"),
    (
        "data.source=https://example.org/l.csv",
        lambda c: c.data.source,
        "https://example.org/l.csv",
    ),
    ("main.experiment_name=foo", lambda c: c.main.experiment_name, "foo"),
    ("main.registered_model=bar", lambda c: c.main.registered_model, "bar"),
]


@pytest.mark.parametrize(
    ("override", "read", "expected"),
    OVERRIDE_EFFECTS,
    ids=[override for override, _, _ in OVERRIDE_EFFECTS],
)
def test_override_takes_effect(
    override: str, read: Callable[[PipelineConfig], object], expected: object
) -> None:
    assert read(load_config([override])) == expected


def test_steps_override_is_a_tuple_of_two() -> None:
    steps = load_config(["main.steps=get_data,basic_cleaning"]).main.steps
    assert isinstance(steps, tuple)
    assert len(steps) == 2


def test_random_forest_override_uses_its_schema_and_defaults() -> None:
    model = load_config(["model=random_forest"]).model
    assert model.name == "random_forest"
    assert not hasattr(model, "alpha")
    assert model.log_target is False


def test_overrides_combine() -> None:
    cfg = load_config(["model=random_forest", "main.steps=train,evaluate", "data.source=/d.csv"])
    assert (cfg.model.name, cfg.main.steps, cfg.data.source) == (
        "random_forest",
        ("train", "evaluate"),
        "/d.csv",
    )


# (override, fragments the message must contain: the key, and what is allowed)
BAD_OVERRIDES: list[tuple[str, tuple[str, ...]]] = [
    ("main.foo=1", ("main.foo", "env_manager", "experiment_name", "registered_model", "steps")),
    ("foo=1", ("foo", "cleaning", "data", "main", "model", "wandb")),
    ("+main.foo=1", ("main.foo", "env_manager", "experiment_name", "registered_model", "steps")),
    ("model=xgboost", ("model", "xgboost", "random_forest", "torch_lasso")),
    ("model.alpha=abc", ("model.alpha", "number", "abc")),
    ("model.alpha=-1", ("model.alpha", "greater than 0")),
    ("main.steps=train,get_data", ("main.steps", "order", "get_data,train")),
    ("main.steps=bogus", ("main.steps", "bogus", "all", *STEP_NAMES)),
    ("main.env_manager=docker", ("main.env_manager", "docker", "local", "conda", "virtualenv")),
    ("data.source=s3://b/k", ("data.source", "s3://", "demo", "file://", "http://", "https://")),
    ("split.test_size=0.9", ("split", "test_size", "val_size", "below 1")),
    ("cleaning.min_price=500", ("cleaning", "min_price", "max_price", "below")),
    ("wandb.mode=loud", ("wandb.mode", "loud", "online", "offline", "disabled")),
    ("data.compression=zip", ("data.compression", "zip", "zstd", "snappy", "gzip", "none")),
]


@pytest.mark.parametrize(
    ("override", "fragments"), BAD_OVERRIDES, ids=[override for override, _ in BAD_OVERRIDES]
)
def test_bad_override_raises_config_error_naming_key_and_allowed(
    override: str, fragments: tuple[str, ...]
) -> None:
    with pytest.raises(ConfigError) as caught:
        load_config([override])
    message = str(caught.value)
    missing = [fragment for fragment in fragments if fragment not in message]
    assert not missing, f"message lacks {missing}: {message}"


def test_config_error_is_a_value_error() -> None:
    with pytest.raises(ValueError, match="model"):
        load_config(["model=xgboost"])


def test_config_error_has_no_chained_traceback() -> None:
    with pytest.raises(ConfigError) as caught:
        load_config(["wandb.mode=loud"])
    assert caught.value.__cause__ is None
    assert caught.value.__suppress_context__


# --- resolved_source ------------------------------------------------------------------------------


def test_relative_source_resolves_against_the_base_dir(tmp_path: Path) -> None:
    cfg = load_config(["data.source=data/listings.csv"])
    assert cfg.data.resolved_source(tmp_path) == str((tmp_path / "data" / "listings.csv").resolve())


def test_relative_source_with_parent_dir_is_normalized(tmp_path: Path) -> None:
    base = tmp_path / "work"
    data = DataConfig.model_validate(
        load_config([]).data.model_dump() | {"source": "../in/listings.csv.gz"}
    )
    assert data.resolved_source(base) == str((tmp_path / "in" / "listings.csv.gz").resolve())


def test_absolute_source_is_kept(tmp_path: Path) -> None:
    absolute = tmp_path / "x.csv"
    cfg = load_config([f"data.source={absolute}"])
    assert cfg.data.resolved_source(Path("/somewhere/else")) == str(absolute.resolve())


@pytest.mark.parametrize(
    "source",
    ["demo", "https://example.org/l.csv", "http://example.org/l.csv.gz", "file:///data/l.csv"],
)
def test_demo_and_urls_are_untouched(source: str, tmp_path: Path) -> None:
    cfg = load_config([f"data.source={source}"])
    assert cfg.data.resolved_source(tmp_path) == source


# --- environment defaults -------------------------------------------------------------------------


def test_wandb_mode_from_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WANDB_MODE", "disabled")
    assert load_config([]).wandb.mode == "disabled"


def test_bad_wandb_mode_from_environment_is_a_config_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WANDB_MODE", "loud")
    with pytest.raises(ConfigError, match=r"wandb\.mode"):
        load_config([])


def test_tracking_uri_from_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "sqlite:///x.db")
    assert load_config([]).tracking.uri == "sqlite:///x.db"


def test_wandb_project_and_group_from_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WANDB_PROJECT", "proj")
    monkeypatch.setenv("WANDB_RUN_GROUP", "grp")
    cfg = load_config([])
    assert (cfg.wandb.project, cfg.wandb.group) == ("proj", "grp")


def test_override_beats_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WANDB_MODE", "disabled")
    assert load_config(["wandb.mode=online"]).wandb.mode == "online"


def test_configuration_composes_from_many_threads_at_once() -> None:
    """Flows in one process (threads, a worker) compose their configuration concurrently."""
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(max_workers=8) as pool:
        models = list(
            pool.map(lambda i: load_config([f"model.alpha=0.00{i + 1}"]).model, range(16))
        )
    assert len(models) == 16
