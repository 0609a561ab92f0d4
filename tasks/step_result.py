"""What a step hands to the next one: typed, small, and free of secrets."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class StepResult:
    """The outcome of one entry-point run, as the flow passes it along.

    `outputs` maps output names (e.g. `clean_data`) to URIs the next step receives as parameters
    (`runs:/<run id>/clean.parquet`, `models:/m-...`). `notes` are one-line results for people
    (the promotion verdict). `reused` is true when the step was left out of `main.steps` and an
    earlier finished run stands for it; `cached` when a finished run with the same cache key
    did (see tasks/step_cache.py).
    """

    step: str
    run_id: str
    outputs: dict[str, str] = field(default_factory=dict)
    metrics: dict[str, float] = field(default_factory=dict)
    notes: dict[str, str] = field(default_factory=dict)
    # Content digests of file outputs (name -> "sha256:..."), for downstream cache keys.
    digests: dict[str, str] = field(default_factory=dict)
    wall_seconds: float = 0.0
    reused: bool = False
    cached: bool = False
