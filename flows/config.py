"""The pipeline's configuration: composed from conf/ by Hydra once, validated before any work.

Everything below the flow receives plain, validated values from here. An unknown key or a bad
value raises `ConfigError` with one line per problem, naming the key and what is allowed.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Annotated, Any, Literal

from hydra import compose, initialize_config_dir
from hydra.errors import HydraException, OverrideParseException
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from flows.pipeline_steps import STEP_NAMES
from steps.common.url_secrets import (
    ENV_REFERENCE,
    HOW_TO_PASS,
    MissingEnvironmentVariable,
    credentials_in,
    hide_password,
    redact_url,
    refusal,
    resolve_env_references,
)

CONF_DIR = Path(__file__).resolve().parents[1] / "conf"
_NAME = r"^[A-Za-z0-9][A-Za-z0-9_.\-]*$"


class ConfigError(ValueError):
    """The configuration cannot run; the message says which key and what to change."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def _step_list(value: Any) -> list[str]:
    items = value.split(",") if isinstance(value, str) else list(value)
    names = [str(item).strip() for item in items if str(item).strip()]
    unknown = [name for name in names if name not in STEP_NAMES]
    if unknown:
        raise ValueError(
            f"unknown step(s) {unknown}; allowed: a comma-separated subset of "
            f"{', '.join(STEP_NAMES)}"
        )
    return names


class MainConfig(_Strict):
    steps: tuple[str, ...]
    force: tuple[str, ...] = ()
    experiment_name: Annotated[str, Field(min_length=1)]
    registered_model: Annotated[str, Field(pattern=_NAME)]
    env_manager: Literal["local", "conda", "virtualenv", "uv"]
    backend: Literal["local", "warm-fork"] = "warm-fork"

    @field_validator("steps", mode="before")
    @classmethod
    def _parse_steps(cls, value: Any) -> tuple[str, ...]:
        if value in ("all", ["all"]):
            return STEP_NAMES
        names = _step_list(value)
        if not names:
            raise ValueError(
                f"no steps given; allowed: 'all' or a subset of {', '.join(STEP_NAMES)}"
            )
        if len(set(names)) != len(names):
            raise ValueError(f"steps {names} name a step twice")
        ordered = [name for name in STEP_NAMES if name in names]
        if ordered != names:
            raise ValueError(f"steps must be in pipeline order: {','.join(ordered)}")
        return tuple(names)

    @field_validator("force", mode="before")
    @classmethod
    def _parse_force(cls, value: Any) -> tuple[str, ...]:
        if value is None or value is False or value == "false":
            return ()
        if value is True or value in ("true", "all"):
            return STEP_NAMES
        return tuple(_step_list(value))


_BACKEND_SCHEMES = ("sqlite", "postgresql", "postgresql+psycopg")


class TrackingServerConfig(_Strict):
    """The shared tracking server (deployments/tracking_server.py, `make mlflow-server`)."""

    host: Annotated[str, Field(min_length=1)]
    port: Annotated[int, Field(ge=1, le=65535)]
    # None: SQLite beside the working directory (deployments/tracking_server.py says where).
    backend_store_uri: str | None = None
    artifacts_destination: str | None = None
    workers: Annotated[int, Field(ge=1, le=64)]
    allowed_hosts: str | None = None

    @field_validator("backend_store_uri")
    @classmethod
    def _check_backend(cls, value: str | None) -> str | None:
        if not value:
            return None
        scheme = value.split("://", 1)[0].lower() if "://" in value else ""
        if scheme not in _BACKEND_SCHEMES:
            raise ValueError(
                f"scheme {scheme + '://' if scheme else value!r} is not a backend this server "
                "runs on; use sqlite:///PATH or postgresql://USER@HOST:PORT/DB (psycopg 3 is "
                "installed)"
            )
        return value

    @field_validator("artifacts_destination")
    @classmethod
    def _check_destination(cls, value: str | None) -> str | None:
        if not value:
            return None
        if "://" in value and "@" in value.split("://", 1)[1].split("/", 1)[0]:
            # It is logged and passed on the server's command line.
            raise ValueError(
                "the artifacts destination takes no credentials; give them in the environment "
                "or .env (OSS_ACCESS_KEY_ID/OSS_ACCESS_KEY_SECRET for oss://, AWS_* for s3://)"
            )
        return value


class TrackingConfig(_Strict):
    uri: str | None = None
    server: TrackingServerConfig


def _check_resolved_source(value: str) -> None:
    """The scheme and the oss:// rules; messages never repeat the value (it may be secret)."""
    scheme = value.split("://", 1)[0].lower() if "://" in value else ""
    if scheme not in ("", "file", "http", "https", "oss"):
        raise ValueError(
            f"scheme {scheme + '://'!r} is not supported; use 'demo', a local path, "
            "file://, http://, https:// or oss://BUCKET/PREFIX"
        )
    if scheme == "oss":
        location = value.split("://", 1)[1]
        bucket = location.split("/", 1)[0]
        if "@" in bucket or "?" in location:
            # The source is logged as a parameter: credentials live in the environment only.
            raise ValueError(
                "oss:// takes no credentials or query; set OSS_ACCESS_KEY_ID, "
                "OSS_ACCESS_KEY_SECRET and OSS_ENDPOINT in the environment or .env"
            )
        if not bucket:
            raise ValueError("oss:// needs a bucket: oss://BUCKET/PREFIX")


class DataConfig(_Strict):
    source: Annotated[str, Field(min_length=1)]
    demo_rows: Annotated[int, Field(ge=1)]
    demo_seed: Annotated[int, Field(ge=0)]
    compression: Literal["zstd", "snappy", "gzip", "lz4", "brotli", "none"]
    http_timeout_s: Annotated[float, Field(gt=0)]
    # Bounds on an untrusted source (docs/source_limits.md); defaults as in conf/config.yaml.
    max_source_mb: Annotated[float, Field(gt=0, le=1_048_576)] = 4096
    max_compression_ratio: Annotated[float, Field(gt=1, le=100_000)] = 100
    download_deadline_s: Annotated[float, Field(gt=0, le=604_800)] = 1200

    @field_validator("source")
    @classmethod
    def _check_source(cls, value: str) -> str:
        """The source as written; credentials only inside `${oc.env:NAME}` references, which
        are checked here resolved (the flow's environment is the step's) but never kept."""
        refused = refusal("the value", value)
        if refused:
            raise ValueError(refused)
        if "${" in ENV_REFERENCE.sub("", value):
            raise ValueError(
                "data.source may hold ${oc.env:NAME} references only (no other interpolation)"
            )
        try:
            resolved = resolve_env_references(value)
        except MissingEnvironmentVariable as missing:
            raise ValueError(
                f"data.source reads ${{oc.env:{missing.name}}}, but {missing.name} is not set: "
                f"export {missing.name}=... (or put it in .env) where the pipeline runs"
            ) from None
        _check_resolved_source(resolved)
        return value

    def resolved_source(self, base: Path) -> str:
        """Relative paths are taken from where the pipeline was started, not from the project;
        an environment reference stays as written (the step resolves it)."""
        if self.source == "demo" or "://" in self.source or ENV_REFERENCE.search(self.source):
            return self.source
        return str((base / Path(self.source).expanduser()).resolve())


class CleaningConfig(_Strict):
    min_price: Annotated[float, Field(ge=0)]
    max_price: Annotated[float, Field(gt=0)]
    min_longitude: Annotated[float, Field(ge=-180, le=180)]
    max_longitude: Annotated[float, Field(ge=-180, le=180)]
    min_latitude: Annotated[float, Field(ge=-90, le=90)]
    max_latitude: Annotated[float, Field(ge=-90, le=90)]
    max_drop_fraction: Annotated[float, Field(ge=0, le=1)]

    def bounds(self) -> dict[str, float]:
        """The price and position bounds, which data_check verifies again."""
        return self.model_dump(exclude={"max_drop_fraction"})

    @model_validator(mode="after")
    def _ordered(self) -> CleaningConfig:
        for low, high in (
            ("min_price", "max_price"),
            ("min_longitude", "max_longitude"),
            ("min_latitude", "max_latitude"),
        ):
            if getattr(self, low) >= getattr(self, high):
                raise ValueError(f"{low} must be below {high}")
        return self


Borough = Literal["Bronx", "Brooklyn", "Manhattan", "Queens", "Staten Island"]


class DataCheckConfig(_Strict):
    min_rows: Annotated[int, Field(ge=1)]
    max_rows: Annotated[int, Field(ge=1)]
    kl_threshold: Annotated[float, Field(gt=0)]
    reference_distribution: dict[Borough, Annotated[float, Field(ge=0)]]

    @model_validator(mode="after")
    def _consistent(self) -> DataCheckConfig:
        if self.min_rows > self.max_rows:
            raise ValueError("min_rows must not exceed max_rows")
        if sum(self.reference_distribution.values()) <= 0:
            raise ValueError("reference_distribution needs at least one positive share")
        return self


class SplitConfig(_Strict):
    test_size: Annotated[float, Field(gt=0, lt=1)]
    val_size: Annotated[float, Field(gt=0, lt=1)]
    seed: Annotated[int, Field(ge=0)]
    stratify_by: Annotated[str, Field(min_length=1)]

    @model_validator(mode="after")
    def _room_to_train(self) -> SplitConfig:
        if self.test_size + self.val_size >= 1:
            raise ValueError("test_size + val_size must leave rows to train on (sum below 1)")
        return self


class MetricBounds(_Strict):
    min: float | None = None
    max: float | None = None


class PromotionConfig(_Strict):
    alias: Annotated[str, Field(pattern=_NAME)]
    challenger_alias: Annotated[str, Field(pattern=_NAME)]
    metric: Literal["test_mae", "test_rmse", "test_r2"]
    direction: Literal["minimize", "maximize"]
    min_relative_improvement: Annotated[float, Field(ge=0)]
    gate: dict[Literal["test_mae", "test_rmse", "test_r2"], MetricBounds]
    use_stages: bool
    ready_timeout_s: Annotated[float, Field(gt=0)]
    lock_timeout_s: Annotated[float, Field(gt=0)]
    # A dead holder's claim is reclaimed after this long without a heartbeat.
    lock_lease_s: Annotated[float, Field(ge=2, le=60)]
    # The same verdict, but nothing registered and no alias moved (CI off the main branch).
    dry_run: bool = False

    @model_validator(mode="after")
    def _distinct_aliases(self) -> PromotionConfig:
        if self.alias == self.challenger_alias:
            raise ValueError("alias and challenger_alias must differ")
        return self

    def gate_bounds(self) -> dict[str, dict[str, float]]:
        return {
            metric: bounds.model_dump(exclude_none=True) for metric, bounds in self.gate.items()
        }


class CIConfig(_Strict):
    """The CI gate (flows/ci_gate.py): which branch promotes, how it is found, the report."""

    main_branch: Annotated[str, Field(min_length=1)]
    # Checked in order; the first one set names the branch. Else `git rev-parse`.
    branch_env_vars: tuple[str, ...]
    # The branch, given outright (wins over the variables and git).
    branch: str | None = None
    report_path: Annotated[str, Field(min_length=1)]


class TaskConfig(_Strict):
    retries: Annotated[int, Field(ge=0, le=10)]
    retry_delay_s: Annotated[float, Field(ge=0)]
    retry_backoff: Annotated[float, Field(ge=1)]
    retry_jitter: Annotated[float, Field(ge=0)]
    timeout_s: Annotated[float, Field(gt=0)]

    def retry_delays(self) -> list[float]:
        return [self.retry_delay_s * self.retry_backoff**attempt for attempt in range(self.retries)]


class DaskConfig(_Strict):
    """Where a sweep's variants run (flows/sweep.py)."""

    # None: a temporary local cluster; else an existing cluster's scheduler address.
    address: str | None = None
    n_workers: Annotated[int, Field(ge=1, le=256)]
    threads_per_worker: Annotated[int, Field(ge=1, le=64)]
    # Local cluster only: worker processes (True) or worker threads of the flow's process.
    processes: bool = False
    step_threads: Annotated[int, Field(ge=1, le=256)] | None = None

    @field_validator("address")
    @classmethod
    def _check_address(cls, value: str | None) -> str | None:
        if not value:
            return None
        if not re.match(r"^(tcp|tls|ucx|ws|wss)://[^/\s]+:\d+$", value):
            raise ValueError(
                "a Dask scheduler address reads tcp://HOST:PORT (e.g. tcp://10.0.0.5:8786), "
                "or null for a local cluster"
            )
        return value


class SweepConfig(_Strict):
    """Variants of the model settings trained side by side (flows/sweep.py)."""

    # Each variant is a list of Hydra overrides; checked when the sweep expands them.
    variants: tuple[tuple[str, ...], ...] = ()
    max_variants: Annotated[int, Field(ge=1)]
    dask: DaskConfig


class WandbConfig(_Strict):
    mode: Literal["online", "offline", "disabled"]
    project: Annotated[str, Field(min_length=1)]
    group: str | None = None


class _ModelBase(_Strict):
    log_target: bool
    tfidf_max_features: Annotated[int, Field(ge=1)]


class TorchLassoConfig(_ModelBase):
    name: Literal["torch_lasso"]
    alpha: Annotated[float, Field(gt=0)]
    max_iter: Annotated[int, Field(ge=1)]
    tol: Annotated[float, Field(gt=0)]
    device: Literal["auto", "cpu", "cuda"]


class RandomForestConfig(_ModelBase):
    name: Literal["random_forest"]
    n_estimators: Annotated[int, Field(ge=1)]
    max_depth: Annotated[int, Field(ge=1)] | None
    min_samples_split: Annotated[int, Field(ge=2)]
    min_samples_leaf: Annotated[int, Field(ge=1)]
    max_features: Annotated[float, Field(gt=0, le=1)] | Literal["sqrt", "log2"] | None
    n_jobs: int
    random_state: int


class HistGradientBoostingConfig(_ModelBase):
    name: Literal["hist_gradient_boosting"]
    learning_rate: Annotated[float, Field(gt=0)]
    max_iter: Annotated[int, Field(ge=1)]
    max_leaf_nodes: Annotated[int, Field(ge=2)] | None
    max_depth: Annotated[int, Field(ge=1)] | None
    min_samples_leaf: Annotated[int, Field(ge=1)]
    l2_regularization: Annotated[float, Field(ge=0)]
    max_features: Annotated[float, Field(gt=0, le=1)]
    early_stopping: Literal["auto"] | bool
    random_state: int


ModelConfig = Annotated[
    TorchLassoConfig | RandomForestConfig | HistGradientBoostingConfig,
    Field(discriminator="name"),
]


class PipelineConfig(_Strict):
    main: MainConfig
    tracking: TrackingConfig
    data: DataConfig
    cleaning: CleaningConfig
    data_check: DataCheckConfig
    split: SplitConfig
    promotion: PromotionConfig
    ci: CIConfig
    task: TaskConfig
    sweep: SweepConfig
    wandb: WandbConfig
    model: ModelConfig


_UNQUOTED_LIST = re.compile(r"^(?P<key>[\w.]*(steps|force))=(?P<value>[^'\"\[].*,.*)$")


def prepare_overrides(overrides: Sequence[str]) -> list[str]:
    """`main.steps=a,b` is a list here, not the Hydra sweep it would otherwise be."""
    prepared = []
    for override in overrides:
        match = _UNQUOTED_LIST.match(override)
        prepared.append(f"{match['key']}=[{match['value']}]" if match else override)
    return prepared


def _explain_hydra(error: Exception) -> str:
    text = str(error)
    unknown_key = re.search(r"Could not override '([^']+)'", text)
    if unknown_key:
        parent, _, leaf = unknown_key.group(1).rpartition(".")
        where = f" under '{parent}'" if parent else ""
        return (
            f"unknown key '{unknown_key.group(1)}': '{leaf}' is not a setting{where}; "
            f"allowed: {_keys_at(parent)}"
        )
    missing_option = re.search(r"Could not find '([^/']+)/([^']+)'", text)
    if missing_option:
        group, option = missing_option.groups()
        options = sorted(path.stem for path in (CONF_DIR / group).glob("*.yaml"))
        return f"{group}={option} is not an option; allowed: {', '.join(options)}"
    return text.splitlines()[0].strip()


def _keys_at(parent: str) -> str:
    base = _compose([])
    node = OmegaConf.select(base, parent) if parent else base
    return ", ".join(sorted(str(key) for key in node)) if node is not None else "(see conf)"


MODEL_CONFIGS: dict[str, type[_ModelBase]] = {
    "torch_lasso": TorchLassoConfig,
    "random_forest": RandomForestConfig,
    "hist_gradient_boosting": HistGradientBoostingConfig,
}
_MODEL_NAMES = tuple(MODEL_CONFIGS)


def _explain_pydantic(error: ValidationError) -> str:
    lines = []
    for problem in error.errors():
        parts = [
            str(part)
            for part in problem["loc"]
            if part not in _MODEL_NAMES and not str(part).startswith("function")
        ]
        location = ".".join(parts)
        if problem["type"] == "extra_forbidden":
            parent = ".".join(parts[:-1])
            lines.append(f"unknown key '{location}'; allowed: {_keys_at(parent)}")
            continue
        shown = problem.get("input")
        if isinstance(shown, str):
            # A database URI may carry a password, a signed URL its key: never repeat them.
            shown = redact_url(shown) if credentials_in(shown) else hide_password(shown)
        msg = problem["msg"].removeprefix("Value error, ")
        lines.append(f"{location}: {msg} (got {shown!r})")
    return "; ".join(lines)


# Hydra keeps its initialization in a process-wide singleton: flows composing the configuration
# at the same moment in one process (threads, a worker) would collide without this lock.
_HYDRA_LOCK = threading.Lock()


def _compose(overrides: list[str]) -> DictConfig:
    with _HYDRA_LOCK, initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        return compose("config", overrides=overrides)


def _unparsable(overrides: Sequence[str]) -> str:
    """Hydra could not parse an override: name its key and how to quote (never the value, which
    may be a signed URL: Hydra's own message repeats it)."""
    keys = sorted({o.split("=", 1)[0] for o in overrides if o.count("=") > 1 or "&" in o})
    key = keys[0] if keys else "KEY"
    return (
        f"cannot parse the override of {', '.join(keys) or 'a key'}: a value holding '=', '&' "
        f"or spaces must be quoted for Hydra, e.g. {key}='VALUE' (in a shell: \"{key}='VALUE'\"); "
        f"a URL that carries credentials or a signature is refused anyway: {HOW_TO_PASS}"
    )


def _keep_source_as_written(composed: DictConfig) -> str | None:
    """data.source as written when it holds `${oc.env:NAME}` references, which must reach every
    store unresolved; it is replaced by a plain value in `composed` so the rest resolves."""
    written = OmegaConf.to_container(composed.data, resolve=False).get("source")  # type: ignore[union-attr]
    if not isinstance(written, str) or not ENV_REFERENCE.search(written):
        return None
    composed.data.source = "demo"
    return written


def load_config(overrides: Sequence[str] = ()) -> PipelineConfig:
    """Compose conf/ with Hydra overrides and validate the result."""
    try:
        composed = _compose(prepare_overrides(overrides))
        source = _keep_source_as_written(composed)
        plain = OmegaConf.to_container(composed, resolve=True)
    except OverrideParseException:
        raise ConfigError(f"invalid override: {_unparsable(overrides)}") from None
    except (HydraException, OmegaConfBaseException) as error:
        raise ConfigError(f"invalid override: {_explain_hydra(error)}") from None
    if source is not None:
        plain["data"]["source"] = source  # type: ignore[index,call-overload]
    try:
        return PipelineConfig.model_validate(plain)
    except ValidationError as error:
        raise ConfigError(f"invalid configuration: {_explain_pydantic(error)}") from None
