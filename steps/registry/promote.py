"""Entry point `promote`: champion/challenger promotion that a team can trust.

The candidate (this pipeline's trained model) must pass the quality gate; it is then registered
once (re-running never adds a version) and takes the `challenger` alias. The champion and the
candidate are scored on the *same* current test split, and the candidate takes `champion` only
if it wins by the configured margin. Registration, the comparison with the champion and the move
all happen while holding the registered model's promotion lock (promotion_lock.py), which every
promoter sharing the tracking store contends for, and the move is one recoverable transaction
(transaction.py): a left-over intent of a crashed promoter is finished first, then intent ->
alias moves -> history entry. Every move is recorded in the registry's history (history.py).

With `--dry_run true` (CI off the main branch) the same verdict is reached on the same rows,
but nothing is registered and no alias moves: the candidate is scored from its own model URI,
the champion from the registry, and the verdict note reads "DRY RUN — would be ...".
"""

from __future__ import annotations

import argparse
import logging

import mlflow
import pandas as pd

from steps.common.entrypoint import run_entry_point
from steps.common.listing_columns import TARGET
from steps.common.listing_rows import predict_rows
from steps.common.metrics import regression_metrics
from steps.common.model_format import load_price_model
from steps.common.outputs import publish_note, publish_output
from steps.common.params_cli import params_parser, with_params
from steps.common.tables import read_table
from steps.common.tracking import download_input, scratch_dir, step_run
from steps.contract import (
    CHAMPION_NOTE,
    FLOW_RUN_TAG,
    NEWLY_REGISTERED_TAG,
    OUTCOME_ALREADY_CHAMPION,
    OUTCOME_FAILED_GATE,
    OUTCOME_LOST,
    OUTCOME_PROMOTED,
    PROMOTION_DRY_RUN_TAG,
    VERDICT_NOTE,
    PromotionRecord,
)
from steps.registry.failpoints import failpoint
from steps.registry.history import AliasMove, read_history
from steps.registry.promotion_lock import PromotionLock
from steps.registry.promotion_rules import Verdict, decide, gate_failures
from steps.registry.registry_ops import (
    alias_version,
    register_once,
    review_tags,
    version_of_run,
)
from steps.registry.schema import PromoteParams
from steps.registry.transaction import commit, plan_move, recover

logger = logging.getLogger(__name__)


def build_parser() -> argparse.ArgumentParser:
    return params_parser(PromoteParams, "promote", __doc__)


def score(model_uri: str, test: pd.DataFrame) -> dict[str, float]:
    """Test scores of a model as served: raw rows in, through its own signature."""
    model = load_price_model(model_uri)  # verified first: no pickle, no code from the artifact
    schema = model.metadata.get_input_schema()
    columns = schema.input_names() if schema is not None else None
    predicted = predict_rows(model, test, columns)
    return regression_metrics(test[TARGET].to_numpy(dtype=float), predicted, "test")


def compare(
    params: PromoteParams,
    gate: dict[str, dict[str, float]],
    candidate: dict[str, float],
    champion_uri: str | None,
    test: pd.DataFrame,
) -> Verdict:
    """Score the champion (if any) on the candidate's test rows and decide; both scores logged."""
    champion = score(champion_uri, test) if champion_uri else None
    if champion is not None:
        mlflow.log_metrics({f"champion_{key}": value for key, value in champion.items()})
    return decide(
        candidate,
        champion,
        metric=params.metric,
        direction=params.direction,
        min_relative_improvement=params.min_relative_improvement,
        gate=gate,
    )


def main(params: PromoteParams) -> None:
    name, alias, challenger = params.registered_model, params.alias, params.challenger_alias
    gate = params.gate_bounds()
    dry_run = params.dry_run

    with step_run() as run, scratch_dir() as work:
        flow_run_id = run.data.tags.get(FLOW_RUN_TAG)
        mlflow.set_tag(PROMOTION_DRY_RUN_TAG, str(dry_run).lower())
        test = read_table(download_input(params.test_data, work))
        candidate = score(params.model, test)
        mlflow.log_metrics({f"candidate_{key}": value for key, value in candidate.items()})
        failures = gate_failures(candidate, gate)
        if failures:
            verdict = Verdict(False, "fails the quality gate: " + "; ".join(failures), 0.0)
            _report(
                verdict,
                None,
                alias_version(name, alias),
                f"models:/{name}@{alias}",
                outcome=OUTCOME_FAILED_GATE,
                dry_run=dry_run,
            )
            return
        if dry_run:
            _dry_run(params, name, alias, gate, candidate, test)
            return

        lock = PromotionLock(
            name,
            run.info.run_id,
            timeout_s=params.lock_timeout_s,
            lease_s=params.lock_lease_s,
            prefect_flow_run_id=flow_run_id,
        )
        with lock.held():
            mlflow.log_metric("lock_wait_s", lock.waited_s)
            failpoint("promote.locked")
            recover(name, lock.fence)
            _promote_locked(params, name, alias, challenger, gate, candidate, test, run, lock)


def _promote_locked(
    params: PromoteParams,
    name: str,
    alias: str,
    challenger: str,
    gate: dict[str, dict[str, float]],
    candidate: dict[str, float],
    test: pd.DataFrame,
    run: mlflow.ActiveRun,
    lock: PromotionLock,
) -> None:
    """Register, compare and move, all under the lock: nobody else moves the aliases meanwhile."""
    training_run = mlflow.models.get_model_info(params.model).run_id
    lock.fence()
    version, created = register_once(
        params.model,
        name,
        training_run,
        review_tags(training_run, candidate)
        | {"promote_run_id": run.info.run_id, "test_data": params.test_data},
        params.ready_timeout_s,
    )
    failpoint("promote.registered")
    candidate_version = str(version.version)
    publish_output("model_version", f"models:/{name}/{candidate_version}")
    mlflow.log_metric("registered_version", int(candidate_version))
    mlflow.set_tag(NEWLY_REGISTERED_TAG, str(created).lower())

    champion_version = alias_version(name, alias)
    champion_uri = f"models:/{name}@{alias}"
    if champion_version == candidate_version:
        verdict = Verdict(
            False, f"version {candidate_version} is already the {alias}", candidate[params.metric]
        )
        _report(
            verdict,
            candidate_version,
            champion_version,
            champion_uri,
            outcome=OUTCOME_ALREADY_CHAMPION,
        )
        return
    verdict = compare(
        params,
        gate,
        candidate,
        f"models:/{name}/{champion_version}" if champion_version else None,
        test,
    )
    aliases_now = {alias: champion_version, challenger: alias_version(name, challenger)}
    move = AliasMove(
        action="promote",
        alias=alias if verdict.promote else challenger,
        from_version=aliases_now[alias if verdict.promote else challenger],
        to_version=candidate_version,
        metric=params.metric,
        candidate_score=verdict.candidate_score,
        champion_score=verdict.champion_score,
        reason=verdict.reason,
        prefect_flow_run_id=run.data.tags.get(FLOW_RUN_TAG),
        mlflow_run_id=run.info.run_id,
    )
    if move.from_version != candidate_version:  # the challenger offered again moves nothing
        intent = plan_move(
            move,
            ticket=str(lock.ticket),
            history=read_history(name),
            aliases_now=aliases_now,
            challenger_alias=challenger,
            use_stages=params.use_stages,
        )
        commit(name, intent, lock.fence)
    _report(
        verdict,
        candidate_version,
        champion_version,
        champion_uri,
        outcome=OUTCOME_PROMOTED if verdict.promote else OUTCOME_LOST,
    )


def _dry_run(
    params: PromoteParams,
    name: str,
    alias: str,
    gate: dict[str, dict[str, float]],
    candidate: dict[str, float],
    test: pd.DataFrame,
) -> None:
    """The verdict a real promotion would reach now, with the registry left exactly as it is."""
    champion_version = alias_version(name, alias)
    training_run = mlflow.models.get_model_info(params.model).run_id
    registered = version_of_run(name, training_run) if champion_version else None
    champion_uri = f"models:/{name}@{alias}"
    if registered is not None and str(registered.version) == champion_version:
        verdict = Verdict(
            False, f"version {champion_version} is already the {alias}", candidate[params.metric]
        )
        _report(
            verdict,
            champion_version,
            champion_version,
            champion_uri,
            outcome=OUTCOME_ALREADY_CHAMPION,
            dry_run=True,
        )
        return
    verdict = compare(params, gate, candidate, champion_uri if champion_version else None, test)
    _report(
        verdict,
        None,
        champion_version,
        champion_uri,
        outcome=OUTCOME_PROMOTED if verdict.promote else OUTCOME_LOST,
        dry_run=True,
    )


def _report(
    verdict: Verdict,
    candidate_version: str | None,
    champion_version: str | None,
    champion_uri: str,
    *,
    outcome: str,
    dry_run: bool = False,
) -> None:
    """The comparison on the promote run, and lines for the pipeline's summary."""
    mlflow.log_metrics(
        {"promoted": float(verdict.promote and not dry_run)}
        | ({"champion_score": verdict.champion_score} if verdict.champion_score is not None else {})
    )
    record = PromotionRecord(
        outcome=outcome,
        reason=verdict.reason,
        candidate_version=candidate_version,
        previous_champion=champion_version,
        promoted=verdict.promote and not dry_run,
    )
    mlflow.set_tags(record.tags())
    result = "PROMOTED" if verdict.promote else "NOT PROMOTED"
    if dry_run:
        publish_note(VERDICT_NOTE, f"DRY RUN — would be {result}: {verdict.reason}")
        publish_note(
            CHAMPION_NOTE,
            f"{champion_uri} = version {champion_version} (unchanged: dry run)"
            if champion_version
            else "none yet (unchanged: dry run)",
        )
        logger.info("dry run, nothing registered: would be %s: %s", result, verdict.reason)
        return
    publish_note(VERDICT_NOTE, f"{result}: {verdict.reason}")
    current = candidate_version if verdict.promote else champion_version
    publish_note(CHAMPION_NOTE, f"{champion_uri} = version {current}" if current else "none yet")
    logger.info("%s (candidate version %s): %s", result, candidate_version, verdict.reason)


if __name__ == "__main__":
    run_entry_point(build_parser(), with_params(PromoteParams, main))
