"""The contract between an entry point and whoever runs it: the names both sides write and read.

A step and the orchestrator never parse each other's messages. They meet in the tracking store
(run tags with the names below), in the process exit code, and in the string form a parameter
value travels in. Steps, tasks, flows and reporting all import these names from here, so a tag
renamed on one side cannot silently stop being read on the other. This module holds no Prefect
and no MLflow run state: it is imported by entry points and orchestrator alike.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

# --- Run tags: lineage --------------------------------------------------------------------------
# MLflow's own tag for a child run's parent: the pipeline's run is the parent of its steps' runs.
PARENT_RUN_TAG = "mlflow.parentRunId"
# Which step (entry point) a run is, or "pipeline" / "sweep" / "variant" for the runs above them.
STEP_TAG = "pipeline.step"
FLOW_RUN_TAG = "prefect.flow_run_id"
TASK_RUN_TAG = "prefect.task_run_id"
ATTEMPT_TAG = "prefect.attempt"
PIPELINE_KIND = "pipeline"
SWEEP_KIND = "sweep"
VARIANT_KIND = "variant"
# The parent run of a scoring flow (flows/score.py): its children are get_data and score.
SCORING_KIND = "scoring"
# The sweep variant's label on its run.
SWEEP_VARIANT_TAG = "sweep.variant"
# A search trial's run (sweep.search=optuna): its number in the study, and how it ended
# (COMPLETE, PRUNED, FAIL, as the study records it).
SEARCH_TRIAL_TAG = "search.trial"
SEARCH_STATE_TAG = "search.state"
# The study's name for the parameter that says which model a trial trains, and how long a
# process waits for a SQLite study's lock held by another (the flow, another trial's step).
SEARCH_MODEL_PARAM = "model"
STUDY_SQLITE_TIMEOUT_S = 60


def study_engine_kwargs(url: str) -> dict[str, Any]:
    """SQLAlchemy options of a study's storage: a SQLite study waits for locks, not fails."""
    return {"connect_args": {"timeout": STUDY_SQLITE_TIMEOUT_S}} if url.startswith("sqlite") else {}


# --- Run tags: what a step publishes ------------------------------------------------------------
# `output.<name>`: the URI of an output; read only from FINISHED runs.
OUTPUT_TAG_PREFIX = "output."
# `note.<name>`: a one-line result for people (the promotion verdict), shown in summaries.
NOTE_TAG_PREFIX = "note."
# `digest.<name>`: the content digest ("sha256:<hex>") of a file output, for cache keys.
DIGEST_TAG_PREFIX = "digest."
VERDICT_NOTE = "verdict"
CHAMPION_NOTE = "champion"
# A search trial's train step stopped early: why (steps/train/staged_fit.py).
PRUNED_NOTE = "pruned"
# The figure evaluate logs on its run, which the flow shows on the Prefect run page.
EVALUATION_PLOT_FILE = "predicted_vs_actual.png"
# The digest of the source bytes get_data read (lineage of a registered version).
DATA_SHA_TAG = "data.input_sha256"

# --- Run tags and notes: what a scoring run scored with (steps/score/score.py) -----------------
# The registered model, alias and version a scoring run's predictions come from.
SCORED_MODEL_TAG = "scoring.registered_model"
SCORED_ALIAS_TAG = "scoring.alias"
SCORED_VERSION_TAG = "scoring.model_version"
# The notes a scoring run leaves for the flow (NOTE_TAG_PREFIX + name).
MODEL_VERSION_NOTE = "model_version"
# The features whose drift score crossed the threshold, comma-separated ("" when none).
DRIFTED_NOTE = "drifted"
# "true" when the scored listings carried a price column with at least one value.
HAS_PRICE_NOTE = "has_price"
# "sha256:<hex>" of the source bytes get_data read (else of the scored table itself).
INPUT_DIGEST_NOTE = "input_sha256"
# One line on the drift check: its largest score, or why it was not measured.
DRIFT_NOTE = "drift"
# The absolute path the predictions were also written to ("" when none was asked for).
OUTPUT_NOTE = "output"
# `drift.<feature>`: a scoring run's drift score of one model-input feature (a metric), by this
# measure: the population stability index (steps/score/drift.py).
DRIFT_METRIC_PREFIX = "drift."
DRIFT_MEASURE = "psi"

# --- Run tags: failure --------------------------------------------------------------------------
ERROR_KIND_TAG = "step.error_kind"
ERROR_MESSAGE_TAG = "step.error_message"
# Tag values are capped by some tracking stores; a message stays readable and well under that.
MAX_TAG_CHARS = 4000

# --- Run tags: step cache (tasks/step_cache.py) -------------------------------------------------
CACHE_TAG = "cache.key"
# `cache.child.<run id>` on a parent run: it vouches that its child ran under that key.
VOUCH_TAG_PREFIX = "cache.child."

# --- Run tags: the process that owns a RUNNING run (processes/run_owner.py) ---------------------
OWNER_HOST_TAG = "process.host"
OWNER_PID_TAG = "process.pid"
OWNER_STARTED_TAG = "process.started"
REAPED_TAG = "process.reaped"

# --- The promotion's verdict on the promote run (steps/registry/promote.py) ---------------------
PROMOTION_DRY_RUN_TAG = "promotion.dry_run"
PROMOTION_VERDICT_TAG = "promotion.verdict"
PROMOTION_OUTCOME_TAG = "promotion.outcome"
PROMOTION_REASON_TAG = "promotion.reason"
PROMOTION_CANDIDATE_VERSION_TAG = "promotion.candidate_version"
PROMOTION_PREVIOUS_CHAMPION_TAG = "promotion.previous_champion"
NEWLY_REGISTERED_TAG = "registry.newly_registered"
# `promotion.outcome` values.
OUTCOME_PROMOTED = "promoted"
OUTCOME_ALREADY_CHAMPION = "already_champion"
OUTCOME_LOST = "lost"
OUTCOME_FAILED_GATE = "failed_gate"
OUTCOMES = (OUTCOME_PROMOTED, OUTCOME_ALREADY_CHAMPION, OUTCOME_LOST, OUTCOME_FAILED_GATE)
# The outcomes that let a candidate through (the CI gate passes on these).
PASSING_OUTCOMES = (OUTCOME_PROMOTED, OUTCOME_ALREADY_CHAMPION)


@dataclass(frozen=True)
class PromotionRecord:
    """The verdict a promote run leaves in its tags, written and read back through this one
    class (steps/registry/promote.py writes it, flows/ci_gate.py reads it)."""

    # promoted | already_champion | lost | failed_gate; None when no verdict was recorded.
    outcome: str | None
    reason: str = ""
    candidate_version: str | None = None
    previous_champion: str | None = None
    # Whether the registry was changed: "promoted" only when the alias really moved.
    promoted: bool = False

    def tags(self) -> dict[str, str]:
        return {
            PROMOTION_VERDICT_TAG: "promoted" if self.promoted else "not promoted",
            PROMOTION_OUTCOME_TAG: self.outcome or "",
            PROMOTION_REASON_TAG: self.reason,
            PROMOTION_CANDIDATE_VERSION_TAG: self.candidate_version or "",
            PROMOTION_PREVIOUS_CHAMPION_TAG: self.previous_champion or "",
        }

    @classmethod
    def from_tags(cls, tags: Mapping[str, str]) -> PromotionRecord:
        return cls(
            outcome=tags.get(PROMOTION_OUTCOME_TAG) or None,
            reason=tags.get(PROMOTION_REASON_TAG, ""),
            candidate_version=tags.get(PROMOTION_CANDIDATE_VERSION_TAG) or None,
            previous_champion=tags.get(PROMOTION_PREVIOUS_CHAMPION_TAG) or None,
            promoted=tags.get(PROMOTION_VERDICT_TAG) == "promoted",
        )

    @property
    def passes(self) -> bool:
        """Whether the candidate gets through (promoted, or already the champion)."""
        return self.outcome in PASSING_OUTCOMES


# --- Registered-model tags: the alias history, the open promotion, the lock's tickets -----------
# `history.<sequence>`: one recorded alias move (JSON), oldest first by sequence.
HISTORY_TAG_PREFIX = "history."
# The move a promotion or rollback is in the middle of (steps/registry/transaction.py).
INTENT_TAG = "promotion.intent"
LOCK_HOST_TAG = "lock.host"
LOCK_PID_TAG = "lock.pid"
LOCK_RUN_TAG = "lock.mlflow_run_id"
LOCK_FLOW_RUN_TAG = "lock.prefect_flow_run_id"
LOCK_CREATED_TAG = "lock.created_at"
LOCK_ACQUIRED_TAG = "lock.acquired_at"

# --- Environment an orchestrator sets for the entry point's process -----------------------------
# Set ("1") by an orchestrator that prints a failed step's message itself, read from the run's
# ERROR_MESSAGE_TAG: the step then logs only its kind, not the message again.
REPORTED_BY_CALLER_VARIABLE = "STEP_ERRORS_REPORTED_BY_CALLER"

# --- Exit codes and error kinds -----------------------------------------------------------------
# Sysexits-style, so shells and CI read them too.
EXIT_OK = 0
EXIT_BUG = 1  # an unexpected error (a bug): reported with its traceback, permanent
EXIT_BAD_CONFIG = 2  # a parameter or setting is wrong: fix the configuration
EXIT_BAD_DATA = 3  # the data failed a check: fix the data
EXIT_BAD_SOURCE = 4  # the data source cannot be read as listings: fix the source
EXIT_NOT_READY = 5  # a precondition in the tracking store is missing (e.g. no eligible run)
EXIT_TRANSIENT = 75  # EX_TEMPFAIL: the same call may succeed later (network, locked store)

PERMANENT = "permanent"
TRANSIENT = "transient"
ERROR_KINDS = (PERMANENT, TRANSIENT)

# The exit codes by meaning, as the orchestrator decides whether a retry may help.
TRANSIENT_EXIT_CODES = frozenset({EXIT_TRANSIENT})
PERMANENT_EXIT_CODES = frozenset({EXIT_BAD_CONFIG, EXIT_BAD_DATA, EXIT_BAD_SOURCE, EXIT_NOT_READY})
# A process killed by a signal (a killed worker, the OOM killer) may well succeed when re-run.
SIGNAL_EXIT_CODES = frozenset({-9, -15, 137, 143})


def is_tracking_server(tracking_uri: str) -> bool:
    """A tracking store reached over HTTP(S) (`mlflow server`): its own UI, and reachable from
    other machines, unlike a SQLite file or a local folder."""
    return tracking_uri.startswith(("http://", "https://"))


def is_unavailable_store(error: BaseException) -> bool:
    """A locked or unreachable tracking database, anywhere in the chain of causes.

    MLflow wraps the driver's errors; SQLAlchemy's OperationalError is what a locked SQLite
    file, a dropped PostgreSQL connection or a full connection pool raise underneath. Entry
    points and the orchestrator's own store calls classify such a failure alike: transient.
    """
    from sqlalchemy.exc import OperationalError

    seen: BaseException | None = error
    while seen is not None:
        if isinstance(seen, OperationalError):
            return True
        seen = seen.__cause__ or seen.__context__
    return False


# --- Content digests ----------------------------------------------------------------------------
def file_sha256(path: Path) -> str:
    """The hex SHA-256 of a file's bytes, read in chunks (large sources stay out of memory)."""
    with path.open("rb") as handle:
        return hashlib.file_digest(handle, "sha256").hexdigest()


def content_digest(path: Path) -> str:
    """A file's digest as it is written in DIGEST_TAG_PREFIX tags and cache keys."""
    return f"sha256:{file_sha256(path)}"


# --- Parameter values on the wire ---------------------------------------------------------------
def normalize_value(value: Any) -> str:
    """One string form per value: `mlflow.projects.run` passes parameters as strings, and a cache
    or reuse check that compared `1` with `"1"` or `1.0` would miss. The entry points' parsers
    read exactly this form back (nested values as JSON)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if math.isfinite(value) and value.is_integer():
            return str(int(value))
        return repr(value)
    if isinstance(value, Mapping | list | tuple):
        return json.dumps(_plain(value), sort_keys=True, separators=(",", ":"))
    if value is None:
        return ""
    return str(value)


def _plain(value: Any) -> Any:
    """Nested values keep their JSON types: the entry point reads them back as typed values
    (scikit-learn tells `max_features=1.0`, a share, from `1`, a count). The configuration is
    validated into fixed types first, so equal settings still serialize alike."""
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    return value


def normalize(parameters: Mapping[str, Any]) -> dict[str, str]:
    """Every parameter in its one string form, sorted by name."""
    return {str(key): normalize_value(value) for key, value in sorted(parameters.items())}


# --- MLflow UI ----------------------------------------------------------------------------------
def run_page_url(ui_base: str, experiment_id: str, run_id: str) -> str:
    """The MLflow UI's page of a run (MLflow 3's route: `#/experiments/<id>/runs/<id>`)."""
    return f"{ui_base.rstrip('/')}/#/experiments/{quote(experiment_id)}/runs/{quote(run_id)}"
