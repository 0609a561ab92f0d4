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

from orchestration.config import PipelineConfig
from orchestration.runtime import configure_services, service_environment
from orchestration.step_table import ENTRY_POINT_SPECS, SPEC_BY_NAME, STEPS
from steps.common.url_secrets import env_references, redact_url
from steps.contract import PIPELINE_KIND, normalize
from tasks.pipeline_run import reap_ghost_runs, reuse_step_outputs, start_pipeline_run
from tasks.run_entry_point import PROJECT_ROOT, run_entry_point, step_result
from tasks.step_cache import cache_key, code_version, fingerprint_source
from tasks.step_result import StepResult
from tasks.tracking_store import ensure_experiment


class PipelineError(RuntimeError):
    """The pipeline cannot run as asked (e.g. a reused step has never finished)."""


def step_parameters(step: str, cfg: PipelineConfig, start_dir: Path) -> dict[str, Any]:
    """The configuration values an entry point takes, by the names its MLproject declares
    (the step table's `parameters`, orchestration/step_table.py)."""
    return ENTRY_POINT_SPECS[step].settings(cfg, start_dir)


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
    return redact_url(cfg.data.source).rstrip("/").rsplit("/", 1)[-1] or "source"


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
    # The tracking store the steps write to (as configure_services chose it).
    tracking_uri: str = ""
    _tasks: dict[str, Task[..., StepResult]] = field(default_factory=dict, repr=False)
    # What each step's call in this flow run handed back, by its MLflow run id: the StepResult
    # (which Prefect links to its task run) or a cache hit's state. Passed as `wait_for` to the
    # steps that read its outputs, so the run graph draws the pipeline's real edges.
    _handed_back: dict[str, Any] = field(default_factory=dict, repr=False)

    def upstream_of(self, step: str, results: Mapping[str, StepResult]) -> list[Any]:
        """The task runs of this flow run whose outputs `step` reads (reused ones have none)."""
        runs = dict.fromkeys(
            results[upstream].run_id for upstream, _ in ENTRY_POINT_SPECS[step].inputs.values()
        )
        return [self._handed_back[run] for run in runs if run in self._handed_back]

    def task_for(self, cfg: PipelineConfig, labelled: bool = True) -> Task[..., StepResult]:
        """The entry-point task with this configuration's retry policy and readable run names
        ("train-random_forest-demo" in the UI; {step} is the task's own parameter). A step
        outside the pipeline (rollback) keeps its plain name."""
        label = f"{cfg.model.name}-{source_label(cfg)}" if labelled else ""
        if label not in self._tasks:
            escaped = label.replace("{", "{{").replace("}", "}}")
            self._tasks[label] = run_entry_point.with_options(
                retries=cfg.task.retries,
                retry_delay_seconds=cfg.task.retry_delays(),
                retry_jitter_factor=cfg.task.retry_jitter,
                task_run_name=f"{{step}}-{escaped}" if labelled else "{step}",
            )
        return self._tasks[label]

    def arguments(
        self,
        step: str,
        results: Mapping[str, StepResult],
        parent_run_id: str | None,
        cfg: PipelineConfig | None = None,
        step_environment: Mapping[str, str] | None = None,
        given: Mapping[str, Any] | None = None,
    ) -> dict[str, Any]:
        """The task's arguments for `step`: parameters (the table's, then `given` on top),
        upstream inputs and its cache key."""
        cfg = cfg or self.cfg
        spec = ENTRY_POINT_SPECS[step]
        parameters = spec.settings(cfg, self.start_dir) | dict(given or {})
        inputs: dict[str, str] = {}
        for parameter, (upstream, output) in spec.inputs.items():
            uri = results[upstream].outputs[output]
            parameters[parameter] = uri
            inputs[parameter] = results[upstream].digests.get(output, uri)
        key = None
        if spec.cacheable and step not in cfg.main.force:
            fingerprint = spec.fingerprint
            checked_by = fingerprint.checked_by if fingerprint else None
            if fingerprint is not None:
                located = fingerprint.parameter
                inputs[located] = fingerprint_source(parameters[located]) or ""
            if all(inputs.values()):
                if fingerprint is not None and inputs[fingerprint.parameter].startswith("sha256:"):
                    # The step checks the bytes it reads against this digest, so a file
                    # replaced after this fingerprint is never cached under it.
                    parameters[fingerprint.checked_by] = inputs[fingerprint.parameter]
                # Inputs enter the key by content, not by the URI of the run that made them.
                settings = {
                    k: v for k, v in parameters.items() if k not in spec.inputs and k != checked_by
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
        parent_run_id: str | None,
        cfg: PipelineConfig | None = None,
        *,
        parameters: Mapping[str, Any] | None = None,
    ) -> StepResult:
        """Run `step` in this flow's thread and wait for it; `parameters` replace the table's
        (a rollback's target version)."""
        cfg = cfg or self.cfg
        task = self.task_for(cfg, ENTRY_POINT_SPECS[step].labelled)
        arguments = self.arguments(step, results, parent_run_id, cfg, given=parameters)
        outcome = task(**arguments, wait_for=self.upstream_of(step, results))
        result = step_result(outcome)  # a cache hit comes back as its Cached state
        self.remember(result, outcome)
        return result

    def remember(self, result: StepResult, handed_back: Any) -> None:
        """What this flow run's call of a step handed back (its result, cached state or future):
        the steps that read `result`'s outputs wait for it, so the run graph draws the edge."""
        self._handed_back[result.run_id] = handed_back

    def submit(
        self,
        runner: TaskRunner[Any],
        step: str,
        results: Mapping[str, StepResult],
        parent_run_id: str,
        cfg: PipelineConfig | None = None,
        step_environment: Mapping[str, str] | None = None,
        *,
        parameters: Mapping[str, Any] | None = None,
    ) -> PrefectFuture[StepResult]:
        """Hand `step` to `runner` (e.g. a Dask cluster) and return its future; the step's
        process gets `step_environment` on top of the usual one, and `parameters` replace the
        table's (a search trial's `trial`)."""
        cfg = cfg or self.cfg
        task = self.task_for(cfg, ENTRY_POINT_SPECS[step].labelled)
        arguments = self.arguments(
            step, results, parent_run_id, cfg, step_environment, given=parameters
        )
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


def step_runner(cfg: PipelineConfig, group: str) -> StepRunner:
    """Set up this process to run steps under `cfg`: the stores and W&B (`group` groups the
    steps' W&B runs), the experiment, and the environment each step's process gets. The
    pipeline, a sweep and the maintenance flows (rollback) all start their steps from here."""
    start_dir = Path.cwd()
    tracking_uri = configure_services(cfg, start_dir, group=group)
    experiment_id = ensure_experiment(cfg.main.experiment_name)
    return StepRunner(
        cfg,
        experiment_id,
        flow_run.get_id(),
        start_dir,
        environment=service_environment(),
        tracking_uri=tracking_uri,
    )


def start_flow(
    cfg: PipelineConfig,
    overrides: Sequence[str],
    run_name: str,
    group: str,
    params: Mapping[str, Any],
    log: Any,
    kind: str = PIPELINE_KIND,
) -> FlowStart:
    """The start the pipeline and a sweep share: stores and W&B set up, the experiment, runs
    left RUNNING by killed pipelines marked KILLED, the left-out upstream steps reused
    (PipelineError, before any work, when one never finished), then the parent run opened
    with what it was started with."""
    steps = step_runner(cfg, group)
    experiment_id = steps.experiment_id
    reaped = reap_ghost_runs(experiment_id)
    if reaped:
        log.warning("marked %d run(s) left RUNNING by a killed pipeline as KILLED", len(reaped))
    results = reuse_upstream(cfg, experiment_id, log)
    recorded = {
        "overrides": " ".join(overrides) or "(none)",
        "steps": ",".join(cfg.main.steps),
        **params,
        "source": redact_url(cfg.data.resolved_source(steps.start_dir)),
    }
    parent_run_id = start_pipeline_run(
        experiment_id, run_name, steps.flow_run_id, recorded, kind=kind
    )
    return FlowStart(steps, results, parent_run_id, steps.tracking_uri)
