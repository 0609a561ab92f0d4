"""How a flow runs one pipeline step, the same way whether it waits for it or submits it.

A step's call is built from three things only: the configuration (its parameters), the results
of the steps upstream (its input URIs and their content digests, for the cache key) and the
flow's context (experiment, parent run, retry policy). The training pipeline runs each step in
turn; a sweep runs the shared steps the same way and submits each variant's train and evaluate
to a task runner. Both go through `StepRunner`, so a step means the same thing in either.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from prefect import Task
from prefect.futures import PrefectFuture
from prefect.runtime import flow_run
from prefect.task_runners import TaskRunner

from flows.config import PipelineConfig
from flows.pipeline_steps import SPEC_BY_NAME, STEPS
from flows.runtime import configure_services, service_environment
from steps.common.url_secrets import env_references
from tasks.parameters import normalize, redact
from tasks.pipeline_run import reap_ghost_runs, reuse_step_outputs, start_pipeline_run
from tasks.run_entry_point import PROJECT_ROOT, run_entry_point, step_result
from tasks.step_cache import cache_key, code_version, fingerprint_source
from tasks.step_result import StepResult
from tasks.tracking_store import ensure_experiment


class PipelineError(RuntimeError):
    """The pipeline cannot run as asked (e.g. a reused step has never finished)."""


def step_parameters(step: str, cfg: PipelineConfig, start_dir: Path) -> dict[str, Any]:
    """The configuration values an entry point takes, by the names its MLproject declares."""
    if step == "get_data":
        # source_sha256: filled in by `StepRunner.arguments` when the step's run is cacheable.
        source = cfg.data.resolved_source(start_dir)
        return cfg.data.model_dump() | {"source": source, "source_sha256": ""}
    if step == "basic_cleaning":
        return cfg.cleaning.model_dump()
    if step == "data_check":
        return cfg.data_check.model_dump() | cfg.cleaning.bounds()
    if step == "data_split":
        return cfg.split.model_dump()
    if step == "train":
        return {"model_config": cfg.model.model_dump()}
    if step == "promote":
        promotion = cfg.promotion
        return {
            "registered_model": cfg.main.registered_model,
            "alias": promotion.alias,
            "challenger_alias": promotion.challenger_alias,
            "metric": promotion.metric,
            "direction": promotion.direction,
            "min_relative_improvement": promotion.min_relative_improvement,
            "gate": promotion.gate_bounds(),
            "use_stages": promotion.use_stages,
            "ready_timeout_s": promotion.ready_timeout_s,
            "dry_run": promotion.dry_run,
            "lock_timeout_s": promotion.lock_timeout_s,
            "lock_lease_s": promotion.lock_lease_s,
        }
    return {}


def upstream_steps_to_reuse(selected: Sequence[str]) -> list[str]:
    """Steps left out whose outputs a selected step consumes."""
    needed = {
        upstream
        for name in selected
        for upstream, _ in SPEC_BY_NAME[name].inputs.values()
        if upstream not in selected
    }
    return [spec.name for spec in STEPS if spec.name in needed]


def source_label(cfg: PipelineConfig) -> str:
    """The source's last path segment, or the variable it is read from; never a query string
    or credentials."""
    variables = env_references(cfg.data.source)
    if variables:
        return "env-" + "-".join(variables)
    return redact(cfg.data.source).rstrip("/").rsplit("/", 1)[-1] or "source"


def reuse_upstream(cfg: PipelineConfig, experiment_id: str, log: Any) -> dict[str, StepResult]:
    """The latest finished run of every step left out of `main.steps` that a selected one needs;
    PipelineError, before any work, when one never finished."""
    results: dict[str, StepResult] = {}
    for step in upstream_steps_to_reuse(cfg.main.steps):
        reused = reuse_step_outputs(experiment_id, step)
        if reused is None:
            raise PipelineError(
                f"main.steps={','.join(cfg.main.steps)} needs the outputs of {step}, but "
                f"experiment '{cfg.main.experiment_name}' has no finished {step} run; "
                f"add {step} to main.steps (or run main.steps=all once)"
            )
        log.info("reusing %s outputs from finished run %s", step, reused.run_id)
        results[step] = reused
    return results


@dataclass
class StepRunner:
    """Runs steps of one flow run: same experiment, flow run and retry policy."""

    cfg: PipelineConfig
    experiment_id: str
    flow_run_id: str | None
    start_dir: Path
    # What every entry point's process needs to find the stores, wherever the task runs
    # (a Dask worker on another machine included): tracking URI and W&B settings.
    environment: Mapping[str, str] = field(default_factory=dict)
    _tasks: dict[str, Task[..., StepResult]] = field(default_factory=dict, repr=False)
    # What each step's call in this flow run handed back, by its MLflow run id: the StepResult
    # (which Prefect links to its task run) or a cache hit's state. Passed as `wait_for` to the
    # steps that read its outputs, so the run graph draws the pipeline's real edges.
    _handed_back: dict[str, Any] = field(default_factory=dict, repr=False)

    def upstream_of(self, step: str, results: Mapping[str, StepResult]) -> list[Any]:
        """The task runs of this flow run whose outputs `step` reads (reused ones have none)."""
        runs = dict.fromkeys(
            results[upstream].run_id for upstream, _ in SPEC_BY_NAME[step].inputs.values()
        )
        return [self._handed_back[run] for run in runs if run in self._handed_back]

    def task_for(self, cfg: PipelineConfig) -> Task[..., StepResult]:
        """The entry-point task with this configuration's retry policy and readable run names
        ("train-random_forest-demo" in the UI; {step} is the task's own parameter)."""
        label = f"{cfg.model.name}-{source_label(cfg)}"
        if label not in self._tasks:
            self._tasks[label] = run_entry_point.with_options(
                retries=cfg.task.retries,
                retry_delay_seconds=cfg.task.retry_delays(),
                retry_jitter_factor=cfg.task.retry_jitter,
                task_run_name="{step}-" + label.replace("{", "{{").replace("}", "}}"),
            )
        return self._tasks[label]

    def arguments(
        self,
        step: str,
        results: Mapping[str, StepResult],
        parent_run_id: str,
        cfg: PipelineConfig | None = None,
        step_environment: Mapping[str, str] | None = None,
    ) -> dict[str, Any]:
        """The task's arguments for `step`: parameters, upstream inputs and its cache key."""
        cfg = cfg or self.cfg
        spec = SPEC_BY_NAME[step]
        parameters = step_parameters(step, cfg, self.start_dir)
        inputs = {}
        for parameter, (upstream, output) in spec.inputs.items():
            parameters[parameter] = results[upstream].outputs[output]
            inputs[parameter] = results[upstream].digests.get(output, parameters[parameter])
        key = None
        if spec.cacheable and step not in cfg.main.force:
            if step == "get_data":
                inputs["source"] = fingerprint_source(parameters["source"]) or ""
            if all(inputs.values()):
                if step == "get_data" and inputs["source"].startswith("sha256:"):
                    # The step checks the bytes it reads against this digest, so a file
                    # replaced after this fingerprint is never cached under it.
                    parameters["source_sha256"] = inputs["source"]
                # Inputs enter the key by content, not by the URI of the run that made them.
                settings = {
                    k: v
                    for k, v in parameters.items()
                    if k not in spec.inputs and k != "source_sha256"
                }
                code = code_version(PROJECT_ROOT, step)
                key = cache_key(step, normalize(settings), inputs, code)
        return {
            "step": step,
            "parameters": parameters,
            "expected_outputs": spec.outputs,
            "experiment_id": self.experiment_id,
            "parent_run_id": parent_run_id,
            "flow_run_id": self.flow_run_id,
            "env_manager": cfg.main.env_manager,
            "backend": cfg.main.backend,
            "timeout_s": cfg.task.timeout_s,
            "cache_key": key,
            "environment": dict(self.environment),
            "step_environment": dict(step_environment or {}),
        }

    def run(
        self,
        step: str,
        results: Mapping[str, StepResult],
        parent_run_id: str,
        cfg: PipelineConfig | None = None,
    ) -> StepResult:
        """Run `step` in this flow's thread and wait for it."""
        cfg = cfg or self.cfg
        arguments = self.arguments(step, results, parent_run_id, cfg)
        outcome = self.task_for(cfg)(**arguments, wait_for=self.upstream_of(step, results))
        result = step_result(outcome)  # a cache hit comes back as its Cached state
        self._handed_back[result.run_id] = outcome
        return result

    def submit(
        self,
        runner: TaskRunner[Any],
        step: str,
        results: Mapping[str, StepResult],
        parent_run_id: str,
        cfg: PipelineConfig | None = None,
        step_environment: Mapping[str, str] | None = None,
    ) -> PrefectFuture[StepResult]:
        """Hand `step` to `runner` (e.g. a Dask cluster) and return its future; the step's
        process gets `step_environment` on top of the usual one."""
        cfg = cfg or self.cfg
        task = self.task_for(cfg)
        arguments = self.arguments(step, results, parent_run_id, cfg, step_environment)
        upstream = self.upstream_of(step, results)
        future: PrefectFuture[StepResult] = runner.submit(task, arguments, wait_for=upstream)
        return future


@dataclass(frozen=True)
class FlowStart:
    """What a flow holds once it has set up: its steps' runner, the results of the upstream
    steps it reuses, its parent MLflow run and the tracking store it writes to."""

    steps: StepRunner
    results: dict[str, StepResult]
    parent_run_id: str
    tracking_uri: str


def start_flow(
    cfg: PipelineConfig,
    overrides: Sequence[str],
    run_name: str,
    group: str,
    params: Mapping[str, Any],
    log: Any,
    kind: str = "pipeline",
) -> FlowStart:
    """The start the pipeline and a sweep share: stores and W&B set up, the experiment, runs
    left RUNNING by killed pipelines marked KILLED, the left-out upstream steps reused
    (PipelineError, before any work, when one never finished), then the parent run opened
    with what it was started with."""
    start_dir = Path.cwd()
    tracking_uri = configure_services(cfg, start_dir, group=group)
    experiment_id = ensure_experiment(cfg.main.experiment_name)
    steps = StepRunner(
        cfg, experiment_id, flow_run.get_id(), start_dir, environment=service_environment()
    )
    reaped = reap_ghost_runs(experiment_id)
    if reaped:
        log.warning("marked %d run(s) left RUNNING by a killed pipeline as KILLED", len(reaped))
    results = reuse_upstream(cfg, experiment_id, log)
    recorded = {
        "overrides": " ".join(overrides) or "(none)",
        "steps": ",".join(cfg.main.steps),
        **params,
        "source": redact(cfg.data.resolved_source(start_dir)),
    }
    parent_run_id = start_pipeline_run(
        experiment_id, run_name, steps.flow_run_id, recorded, kind=kind
    )
    return FlowStart(steps, results, parent_run_id, tracking_uri)
