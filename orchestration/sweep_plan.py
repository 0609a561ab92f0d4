"""What a sweep trains: its variants, expanded, checked and named before any work.

Variants come from Hydra's multirun syntax on the command line
(`--multirun model=torch_lasso,random_forest model.alpha=0.01,0.001`: every combination) or from
a list in conf/sweep/ (each entry a list of overrides, which may itself hold such lists). Either
way the rules are the same:

* variants differ in their model settings only: they share one download, cleaning, check and
  split, so a variant that changes anything else is refused, naming the key;
* a `model.<key>` override applies to the variants whose model has that key: sweeping `alpha`
  next to `model=random_forest` trains the random forest once, not once per alpha. A key that
  no model of the sweep has is a typo and is refused like any unknown key;
* combinations that come out the same are trained once;
* every variant's configuration is validated before the first step runs.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.override_parser.types import Override
from hydra.errors import HydraException

from orchestration.config import ConfigError, PipelineConfig, prepare_overrides
from orchestration.runtime import compose
from orchestration.search_plan import SearchPlan, study_storage
from orchestration.step_table import VARIANT_STEPS
from steps.train.model_schemas import MODEL_SCHEMAS

MULTIRUN_FLAGS = ("--multirun", "-m")


@dataclass(frozen=True)
class Variant:
    """One configuration of the sweep."""

    index: int
    # The overrides that make it differ from the others, as a person reads them.
    label: str
    # Everything that composes its configuration (shared overrides included).
    overrides: tuple[str, ...]
    cfg: PipelineConfig
    # `model.<key>` overrides of the sweep that its model does not have.
    not_applicable: tuple[str, ...] = ()

    @property
    def name(self) -> str:
        """Its MLflow run's name: short, unique in the sweep, and says which model."""
        return f"variant-{self.index}-{self.cfg.model.name}"


@dataclass(frozen=True)
class SweepPlan:
    base: PipelineConfig
    variants: tuple[Variant, ...]
    # Labels of combinations that repeat an earlier variant (trained once).
    repeats: tuple[str, ...] = ()
    # A hyperparameter search instead of listed variants (sweep.search=optuna).
    search: SearchPlan | None = None

    @property
    def selection_metric(self) -> str:
        """The validation score that picks the variant to promote (test rows stay unseen)."""
        return "val_" + self.base.promotion.metric.removeprefix("test_")

    @property
    def minimize(self) -> bool:
        return self.base.promotion.direction == "minimize"


def _parser() -> OverridesParser:
    return OverridesParser.create()


def _parse(texts: Sequence[str]) -> list[Override]:
    try:
        return _parser().parse_overrides(list(texts))
    except HydraException as error:
        raise ConfigError(f"invalid override: {str(error).splitlines()[0]}") from None


def _key(override: Override) -> str:
    return str(override.key_or_group)


def _is_model_override(override: Override) -> bool:
    key = _key(override)
    return key == "model" or key.startswith("model.")


def _values(text: str, override: Override) -> list[str]:
    """A sweep override's choices, each as a plain override."""
    if not override.is_discrete_sweep():
        raise ConfigError(
            f"invalid override: {text} is a continuous range; a sweep takes listed values "
            "(a,b,c), range(start,stop[,step]) or choice(a,b,c)"
        )
    key = override.get_key_element()
    return [f"{key}={value}" for value in override.sweep_string_iterator()]


def _combinations(texts: Sequence[str]) -> list[list[str]]:
    """Every combination of the sweep overrides among `texts`; plain ones are in all of them."""
    prepared = prepare_overrides(texts)
    choices = [
        _values(text, override) if override.is_sweep_override() else [text]
        for text, override in zip(prepared, _parse(prepared), strict=True)
    ]
    return [list(combination) for combination in itertools.product(*choices)]


def split_multirun(arguments: Sequence[str]) -> tuple[list[str], list[list[str]]]:
    """A multirun command line as (overrides every variant shares, the variants): each sweep
    override (`key=a,b`) multiplies the variants, the others hold for all of them."""
    texts = prepare_overrides([arg for arg in arguments if arg not in MULTIRUN_FLAGS])
    shared, sweeps = [], []
    for text, override in zip(texts, _parse(texts), strict=True):
        if override.is_sweep_override():
            sweeps.append(text)
        else:
            shared.append(text)
    return shared, _combinations(sweeps)


def _merged(first: Sequence[str], then: Sequence[str]) -> list[str]:
    """`first` then `then`, an override of `then` replacing one of `first` with the same key."""
    replaced = {_key(override) for override in _parse(then)}
    kept = [text for text, o in zip(first, _parse(first), strict=True) if _key(o) not in replaced]
    return [*kept, *then]


def _model_of(texts: Sequence[str], default: str) -> str:
    chosen = default
    for override in _parse(texts):
        if _key(override) == "model" and not override.is_delete():
            chosen = override.get_value_element_as_str()
    return chosen


def _applicable(texts: Sequence[str], model: str) -> tuple[list[str], list[str]]:
    """(overrides that apply to `model`, `model.<key>` overrides it has no setting for)."""
    settings = MODEL_SCHEMAS[model].model_fields if model in MODEL_SCHEMAS else None
    applies, not_applicable = [], []
    for text, override in zip(texts, _parse(texts), strict=True):
        key = _key(override)
        field = key.split(".", 2)[1] if key.startswith("model.") else None
        if field is not None and settings is not None and field not in settings:
            not_applicable.append(text)
        else:
            applies.append(text)
    return applies, not_applicable


def _leaves(value: Any, prefix: str = "") -> Iterator[tuple[str, Any]]:
    if isinstance(value, Mapping):
        for key, item in value.items():
            yield from _leaves(item, f"{prefix}.{key}" if prefix else str(key))
    else:
        yield prefix, value


def _shared_difference(base: PipelineConfig, cfg: PipelineConfig) -> str | None:
    """The first setting outside `model` in which `cfg` differs from the shared configuration."""
    theirs = dict(_leaves(cfg.model_dump(exclude={"model"})))
    for key, value in _leaves(base.model_dump(exclude={"model"})):
        if theirs.get(key) != value:
            return key
    return None


def _compose(label: str, texts: Sequence[str]) -> PipelineConfig:
    try:
        return compose(texts)
    except ConfigError as error:
        raise ConfigError(f"sweep variant '{label}': {error}") from None


def plan_sweep(
    overrides: Sequence[str], variants: Sequence[Sequence[str]] | None = None
) -> SweepPlan:
    """Expand and check the sweep: `overrides` hold for every variant; `variants` (None: the
    configuration's `sweep.variants`) list each variant's own overrides."""
    given = prepare_overrides(overrides)
    parsed = _parse(given)
    swept = [text for text, o in zip(given, parsed, strict=True) if o.is_sweep_override()]
    if swept:
        raise ConfigError(
            f"invalid override: {swept[0]} lists several values; give it with --multirun or as "
            "a sweep variant, not among the overrides every variant shares"
        )
    shared = [text for text, o in zip(given, parsed, strict=True) if not _is_model_override(o)]
    model_wide = [text for text, o in zip(given, parsed, strict=True) if _is_model_override(o)]
    base = compose(shared)
    missing = [step for step in VARIANT_STEPS if step not in base.main.steps]
    if missing:
        raise ConfigError(
            f"invalid configuration: main.steps: a sweep trains and evaluates every variant; "
            f"add {','.join(missing)} (got {','.join(base.main.steps)})"
        )
    if base.sweep.search == "optuna":
        if variants is not None:
            raise ConfigError(
                "invalid configuration: sweep.search: a search (optuna) draws its trials from "
                "sweep.optuna.space; --multirun lists variants: use one or the other "
                "(sweep.search=grid for variants)"
            )
        return SweepPlan(base=base, variants=(), search=plan_search(base, shared, model_wide))
    listed = [list(v) for v in (base.sweep.variants if variants is None else variants)]
    if not listed:
        raise ConfigError(
            "invalid configuration: sweep.variants: the sweep has no variants; choose a list "
            "in conf/sweep/ (sweep=NAME) or give them on the command line with --multirun"
        )
    combinations = [combo for entry in listed for combo in _combinations(entry)]
    limit = base.sweep.max_variants
    if len(combinations) > limit:
        raise ConfigError(
            f"invalid configuration: sweep.max_variants: the sweep expands to "
            f"{len(combinations)} combinations, more than {limit}; list fewer values or raise "
            "sweep.max_variants"
        )

    planned: list[Variant] = []
    repeats: list[str] = []
    seen: dict[str, str] = {}
    applied_somewhere: set[str] = set()
    skipped: dict[str, str] = {}  # override -> the model it first did not apply to
    for combination in combinations:
        texts = _merged(model_wide, combination)
        model = _model_of(texts, base.model.name)
        applies, not_applicable = _applicable(texts, model)
        applied_somewhere.update(applies)
        for text in not_applicable:
            skipped.setdefault(text, model)
        own = [text for text in combination if text in applies]
        label = " ".join(own) or f"model={model}"
        cfg = _compose(label, [*shared, *applies])
        changed = _shared_difference(base, cfg)
        if changed is not None:
            raise ConfigError(
                f"sweep variant '{label}' changes {changed}, which all variants share (one "
                "download, cleaning, check and split); variants may differ only in model "
                f"settings: set {changed} outside the sweep"
            )
        fingerprint = cfg.model.model_dump_json()
        if fingerprint in seen:
            repeats.append(label)
            continue
        seen[fingerprint] = label
        planned.append(
            Variant(
                index=len(planned) + 1,
                label=label,
                overrides=tuple([*shared, *applies]),
                cfg=cfg,
                not_applicable=tuple(not_applicable),
            )
        )
    unknown = [text for text in skipped if text not in applied_somewhere]
    if unknown:
        models = sorted({variant.cfg.model.name for variant in planned})
        key = _key(_parse(unknown[:1])[0])
        settings = sorted({f for m in models for f in MODEL_SCHEMAS[m].model_fields})
        raise ConfigError(
            f"invalid override: unknown key '{key}': no model of the sweep "
            f"({', '.join(models)}) has it; their settings: {', '.join(settings)}"
        )
    return SweepPlan(base=base, variants=tuple(planned), repeats=tuple(repeats))


def plan_search(
    base: PipelineConfig, shared: Sequence[str], model_wide: Sequence[str]
) -> SearchPlan:
    """The search's models, each composed with the `model.<key>` overrides that apply to it,
    and the study's database: ConfigError before any work when one cannot be had."""
    from tasks.tracking_store import default_tracking_uri

    settings = base.sweep.optuna
    if not settings.space:
        raise ConfigError(
            "invalid configuration: sweep.optuna.space: a search (sweep.search=optuna) needs "
            "distributions to draw from; choose a search in conf/sweep/ (sweep=search) or "
            "declare sweep.optuna.space.MODEL.KEY"
        )
    chosen = [text for text in model_wide if _key(_parse([text])[0]) == "model"]
    if chosen:
        raise ConfigError(
            f"invalid override: {chosen[0]}: a search trains the models of sweep.optuna.space "
            f"({', '.join(settings.space)}); change the space to search other models"
        )
    models: dict[str, PipelineConfig] = {}
    applied: set[str] = set()
    for model in settings.space:
        applies, _ = _applicable(model_wide, model)
        applied.update(applies)
        models[model] = _compose(f"model={model}", [*shared, f"model={model}", *applies])
    unknown = [text for text in model_wide if text not in applied]
    if unknown:
        key = _key(_parse(unknown[:1])[0])
        fields = sorted({f for m in settings.space for f in MODEL_SCHEMAS[m].model_fields})
        raise ConfigError(
            f"invalid override: unknown key '{key}': no model of the search "
            f"({', '.join(settings.space)}) has it; their settings: {', '.join(fields)}"
        )
    tracking_uri = base.tracking.uri or default_tracking_uri(Path.cwd())
    return SearchPlan(base=base, models=models, storage=study_storage(settings, tracking_uri))
