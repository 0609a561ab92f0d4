"""The pipeline's configuration: composed from conf/ by Hydra once, validated before any work.

`PipelineConfig` is composed of the steps' own schemas (steps/*/schema.py,
steps/train/model_schemas.py) and the flow's sections below; Hydra starts from their defaults,
so conf/*.yaml hold only the values that differ. docs/configuration.md is generated from them
(`python -m orchestration.config_reference`).

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
from hydra.core.config_store import ConfigStore
from hydra.errors import HydraException, OverrideParseException
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException
from pydantic import Field, ValidationError, field_validator

from orchestration.search_space import DISTRIBUTION_TYPES, OptunaConfig
from orchestration.step_table import STEP_NAMES
from steps.common.settings import Settings
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
from steps.ingest.schema import CleaningSettings, SourceSettings
from steps.registry.schema import PromotionSettings, registered_model_field
from steps.score.schema import ScoringSettings
from steps.split.schema import SplitSettings
from steps.train.model_schemas import MODEL_SCHEMAS, ModelSettings, TorchLassoSchema
from steps.validate.schema import DataCheckSettings

CONF_DIR = Path(__file__).resolve().parents[1] / "conf"


class ConfigError(ValueError):
    """The configuration cannot run; the message says which key and what to change."""


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


class MainConfig(Settings):
    """What the pipeline runs, where it records it, and how each step's process starts."""

    steps: tuple[str, ...] = Field(
        default=STEP_NAMES,
        description=(
            '"all", or a subset in pipeline order; steps left out reuse their latest finished '
            "outputs."
        ),
    )
    force: tuple[str, ...] = Field(
        default=(),
        description=(
            "Steps re-run although their inputs, parameters and code are unchanged (otherwise "
            "they are not): true re-runs every step, train,evaluate re-runs those."
        ),
    )
    experiment_name: str = Field(
        default="nyc_airbnb_price", min_length=1, description="The MLflow experiment of every run."
    )
    registered_model: str = registered_model_field()
    env_manager: Literal["local", "conda", "virtualenv", "uv"] = Field(
        default="local",
        description="Where the MLflow entry points run: this interpreter, conda, virtualenv or uv.",
    )
    backend: Literal["local", "warm-fork"] = Field(
        default="warm-fork",
        description=(
            "How each entry point's process starts (MLflow project backend): warm-fork forks it "
            "from a server that has the libraries imported already (warm_backend; ~0.2 s instead "
            "of ~5 s per step); local starts `mlflow run` and a fresh interpreter. Other "
            "env_managers use local."
        ),
    )

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


class TrackingServerConfig(Settings):
    """The shared tracking server (deployments/tracking_server.py, `make mlflow-server`)."""

    host: str = Field(
        default="127.0.0.1", min_length=1, description="Address the server listens on."
    )
    port: int = Field(default=5000, ge=1, le=65535, description="Port the server listens on.")
    backend_store_uri: str | None = Field(
        default=None,
        description=(
            "null: SQLite at ./mlruns/server/mlflow.db; for a team, "
            "postgresql://USER@HOST:5432/DB (the password from PGPASSWORD or ~/.pgpass, never "
            "from here)."
        ),
    )
    artifacts_destination: str | None = Field(
        default=None,
        description=(
            "Where the server keeps the artifacts it serves (--serve-artifacts): null: "
            "./mlruns/server/artifacts; oss://BUCKET/PREFIX (OSS_* credentials in the server's "
            "environment or .env) or s3://BUCKET/PREFIX (needs boto3 where it runs)."
        ),
    )
    workers: int = Field(
        default=2, ge=1, le=64, description="Request-handling processes (uvicorn)."
    )
    allowed_hosts: str | None = Field(
        default=None,
        description=(
            "Host headers answered beyond localhost and private addresses (comma-separated, "
            "e.g. mlflow.example.org), for clients that reach the server by a public name."
        ),
    )

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


class TrackingConfig(Settings):
    """Where runs, models and the registry are recorded."""

    uri: str | None = Field(
        default=None,
        description=(
            "null: a SQLite store under ./mlruns of the working directory (the registry needs "
            "SQL); http(s)://host:port: a shared tracking server, so workers on other machines "
            "need only this URL."
        ),
    )
    server: TrackingServerConfig = Field(
        default_factory=TrackingServerConfig,
        description="The shared tracking server `make mlflow-server` starts.",
    )


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


class DataConfig(SourceSettings):
    """get_data's settings (steps/ingest/schema.py), and the checks on the source that need the
    flow's environment: it is the step's, and a refusal here comes before any work."""

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


class CIConfig(Settings):
    """The CI gate (flows/ci_gate.py, make ci-train): which branch promotes, how it is found, the
    report."""

    main_branch: str = Field(
        default="main", min_length=1, description="The branch that promotes; any other dry-runs."
    )
    branch_env_vars: tuple[str, ...] = Field(
        default=("GITHUB_REF_NAME", "CI_COMMIT_BRANCH", "BRANCH_NAME"),
        description=(
            "The branch is the first of these variables that is set (GitHub Actions, GitLab CI, "
            "Jenkins), else `git rev-parse --abbrev-ref HEAD`; a detached HEAD with none of "
            "them set is not main."
        ),
    )
    branch: str | None = Field(
        default=None,
        description=(
            "The branch, given outright (e.g. ci.branch=main for a scheduled deployment): wins "
            "over the variables and git."
        ),
    )
    report_path: str = Field(
        default="ci-report.md",
        min_length=1,
        description="The markdown report (also appended to $GITHUB_STEP_SUMMARY when set).",
    )


class TaskConfig(Settings):
    """Retry policy and time limit of every step task: delays grow delay * backoff**attempt."""

    retries: int = Field(
        default=2, ge=0, le=10, description="Retries of a step after a transient failure."
    )
    retry_delay_s: float = Field(
        default=2.0, ge=0, description="Delay before the first retry (seconds)."
    )
    retry_backoff: float = Field(
        default=2.0, ge=1, description="Factor each further delay grows by."
    )
    retry_jitter: float = Field(default=0.5, ge=0, description="Random share added to each delay.")
    timeout_s: float = Field(default=1800, gt=0, description="Most seconds one step may run.")

    def retry_delays(self) -> list[float]:
        return [self.retry_delay_s * self.retry_backoff**attempt for attempt in range(self.retries)]


class DaskConfig(Settings):
    """Where a sweep's variants run (flows/sweep.py): Prefect's DaskTaskRunner (prefect-dask)."""

    address: str | None = Field(
        default=None,
        description=(
            "null: a temporary local cluster of n_workers workers; tcp://HOST:8786: an existing "
            "cluster's scheduler (its workers need this project installed and PREFECT_API_URL; "
            "the tracking URI travels with each task and must be one they can reach, i.e. a "
            "server)."
        ),
    )
    n_workers: int = Field(default=2, ge=1, le=256, description="Workers of a local cluster.")
    threads_per_worker: int = Field(default=1, ge=1, le=64, description="Threads of each worker.")
    processes: bool = Field(
        default=False,
        description=(
            "A local cluster's workers: threads of the flow's process (false: every step is its "
            "own process anyway, forked from the flow's warm server) or processes of their own "
            "(true: as on a real cluster, each with its own imports and fork server)."
        ),
    )
    step_threads: Annotated[int, Field(ge=1, le=256)] | None = Field(
        default=None,
        description=(
            "Math-library threads of each variant step (OpenMP, MKL, OpenBLAS, joblib's "
            "n_jobs=-1): null shares this machine's cores among a local cluster's workers and "
            "leaves an existing cluster's steps alone. Applied by the warm-fork backend."
        ),
    )

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


class SweepConfig(Settings):
    """Variants of the model settings trained side by side (`python -m flows.sweep`)."""

    variants: tuple[tuple[str, ...], ...] = Field(
        default=(),
        description=(
            "Each variant a list of Hydra overrides of the model settings (conf/sweep/ names "
            "them; `--multirun model=a,b model.alpha=x,y` makes them from the command line); "
            "checked when the sweep expands them."
        ),
    )
    max_variants: int = Field(
        default=32,
        ge=1,
        description="The sweep refuses more variants than this: too many is usually a typo.",
    )
    dask: DaskConfig = Field(default_factory=DaskConfig, description="Where the variants run.")
    search: Literal["grid", "optuna"] = Field(
        default="grid",
        description=(
            "grid: train the listed variants; optuna: a seeded TPE search over "
            "sweep.optuna.space (conf/sweep/search.yaml), its trials run as variants are."
        ),
    )
    optuna: OptunaConfig = Field(
        default_factory=OptunaConfig, description="The search's study, trials and space."
    )


class WatchConfig(Settings):
    """Where the `watch_sources` flow looks for new listings files (flows/watch_sources.py)."""

    sources: tuple[str, ...] = Field(
        default=(),
        description=(
            "The watched places: oss://BUCKET/PREFIX (OSS_* credentials in the environment or "
            ".env) and absolute local folders; each new file in them starts a retrain "
            "(docs/events.md). Empty: the watcher finds nothing."
        ),
    )
    patterns: tuple[str, ...] = Field(
        default=("*.csv", "*.csv.gz"),
        min_length=1,
        description="File names (shell patterns) that count as listings files.",
    )
    settle_s: float = Field(
        default=30.0,
        ge=0,
        le=3600,
        description=(
            "A local file modified less than this many seconds ago is left for the next pass "
            "(it may still be being written); OSS objects appear whole."
        ),
    )
    max_events_per_pass: int = Field(
        default=20,
        ge=1,
        le=1000,
        description=(
            "New files announced per pass at most; the rest wait for the next pass (a prefix "
            "with a long history does not start hundreds of retrains at once)."
        ),
    )
    timeout_s: float = Field(
        default=60.0, gt=0, le=600, description="Network timeout of each OSS listing request."
    )

    @field_validator("sources")
    @classmethod
    def _check_sources(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for source in value:
            if "://" in source:
                if not source.lower().startswith("oss://"):
                    raise ValueError(
                        f"{redact_url(source)!r} cannot be watched: give oss://BUCKET/PREFIX "
                        "or an absolute local folder"
                    )
                _check_resolved_source(source)
            elif not Path(source).is_absolute():
                raise ValueError(
                    f"{source!r} is relative: a watched folder is an absolute path (the "
                    "watcher runs wherever its worker does)"
                )
        return value


class WandbConfig(Settings):
    """The Weights & Biases mirror of each step's metrics and artifacts."""

    mode: Literal["online", "offline", "disabled"] = Field(
        default="offline", description="online, offline (files only) or disabled."
    )
    project: str = Field(default="nyc_airbnb_price", min_length=1, description="The W&B project.")
    group: str | None = Field(
        default=None,
        description="null: one group per pipeline run, named after the parent MLflow run.",
    )


class PipelineConfig(Settings):
    """The whole configuration: the steps' own schemas (steps/*/schema.py) and the flow's."""

    main: MainConfig = Field(default_factory=MainConfig)
    tracking: TrackingConfig = Field(default_factory=TrackingConfig)
    data: DataConfig = Field(default_factory=DataConfig)
    cleaning: CleaningSettings = Field(default_factory=CleaningSettings)
    data_check: DataCheckSettings = Field(default_factory=DataCheckSettings)
    split: SplitSettings = Field(default_factory=SplitSettings)
    promotion: PromotionSettings = Field(default_factory=PromotionSettings)
    scoring: ScoringSettings = Field(default_factory=ScoringSettings)
    ci: CIConfig = Field(default_factory=CIConfig)
    task: TaskConfig = Field(default_factory=TaskConfig)
    sweep: SweepConfig = Field(default_factory=SweepConfig)
    wandb: WandbConfig = Field(default_factory=WandbConfig)
    watch: WatchConfig = Field(default_factory=WatchConfig)
    model: ModelSettings = Field(
        default_factory=TorchLassoSchema,
        description="One of conf/model/ (model=NAME), with its hyperparameters.",
    )


def schema_defaults() -> dict[str, Any]:
    """Every section's defaults but the model's, as Hydra composes them under conf/."""
    return PipelineConfig().model_dump(mode="json", exclude={"model"})


def _register_schema_defaults() -> None:
    """conf/config.yaml's defaults list starts from these: every key exists (so any one can be
    overridden) and conf/*.yaml write only the values that differ from the schemas'."""
    store = ConfigStore.instance()
    store.store(name="schema_defaults", node=schema_defaults())
    for name, schema in MODEL_SCHEMAS.items():
        store.store(group="model_defaults", name=name, node=schema().model_dump(mode="json"))


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


_MODEL_NAMES = tuple(MODEL_SCHEMAS)


def _fit_to_show(value: Any) -> Any:
    """A refused value as an error may repeat it: a database URI may carry a password, a signed
    URL its key (in a list of sources too), and neither is ever repeated."""
    if isinstance(value, str):
        return redact_url(value) if credentials_in(value) else hide_password(value)
    if isinstance(value, list | tuple):
        return type(value)(_fit_to_show(item) for item in value)
    return value


def _location(loc: Sequence[Any]) -> list[str]:
    """A problem's key as a person writes it: without the tags pydantic adds for a tagged
    union (the model's name after `model`, a search distribution's type)."""
    parts: list[str] = []
    for part in loc:
        text = str(part)
        tag_of_model = part in _MODEL_NAMES and parts[-1:] == ["model"]
        tag_of_range = part in DISTRIBUTION_TYPES and parts[:3] == ["sweep", "optuna", "space"]
        if not (tag_of_model or tag_of_range or text.startswith("function")):
            parts.append(text)
    return parts


def _explain_pydantic(error: ValidationError) -> str:
    lines = []
    for problem in error.errors():
        parts = _location(problem["loc"])
        location = ".".join(parts)
        if problem["type"] == "extra_forbidden":
            parent = ".".join(parts[:-1])
            lines.append(f"unknown key '{location}'; allowed: {_keys_at(parent)}")
            continue
        shown = _fit_to_show(problem.get("input"))
        msg = problem["msg"].removeprefix("Value error, ")
        # A whole section repeated would bury the message, which names the key itself.
        got = "" if isinstance(shown, dict) else f" (got {shown!r})"
        lines.append(f"{location}: {msg}{got}")
    return "; ".join(lines)


# Hydra keeps its initialization in a process-wide singleton: flows composing the configuration
# at the same moment in one process (threads, a worker) would collide without this lock.
_HYDRA_LOCK = threading.Lock()


def _compose(overrides: list[str]) -> DictConfig:
    with _HYDRA_LOCK:
        _register_schema_defaults()
        with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
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
