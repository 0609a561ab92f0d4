"""Entry point `rollback`: move the champion alias back, and record that too.

Without `--to_version`, the target is the champion before the current one in the recorded
history (rolling back twice goes two champions back, not back and forth). It takes the same
promotion lock as `promote` and moves the alias through the same transaction (an intent left by
a crashed promoter is finished first), so a rollback and a promotion never interleave.
"""

from __future__ import annotations

import argparse
import logging

import mlflow
from mlflow.exceptions import MlflowException

from steps.common.entrypoint import run_entry_point
from steps.common.errors import ConfigurationError, PreconditionError
from steps.common.outputs import publish_note, publish_output
from steps.common.params_cli import params_parser, with_params
from steps.common.tracking import step_run
from steps.contract import FLOW_RUN_TAG, VERDICT_NOTE
from steps.registry.history import AliasMove, previous_champion, read_history
from steps.registry.promotion_lock import PromotionLock
from steps.registry.registry_ops import alias_version
from steps.registry.schema import RollbackParams
from steps.registry.transaction import commit, plan_move, recover

logger = logging.getLogger(__name__)


def build_parser() -> argparse.ArgumentParser:
    return params_parser(RollbackParams, "rollback", __doc__)


def resolve_target(name: str, alias: str, current: str, to_version: int) -> str:
    client = mlflow.MlflowClient()
    if to_version:
        target = str(to_version)
        try:
            version = client.get_model_version(name, target)
        except MlflowException as error:
            raise ConfigurationError(f"{name} has no version {target}") from error
        if version.status != "READY":
            raise PreconditionError(f"{name} version {target} is {version.status}, not READY")
        return target
    previous = previous_champion(read_history(name), alias, current)
    if previous is None:
        raise PreconditionError(
            f"the history of {name} records no champion before version {current}; "
            "pick one with --to-version N"
        )
    return previous


def main(params: RollbackParams) -> None:
    name, alias, challenger = params.registered_model, params.alias, params.challenger_alias
    with step_run() as run:
        lock = PromotionLock(
            name,
            run.info.run_id,
            timeout_s=params.lock_timeout_s,
            lease_s=params.lock_lease_s,
            prefect_flow_run_id=run.data.tags.get(FLOW_RUN_TAG),
        )
        with lock.held():
            recover(name, lock.fence)
            current = alias_version(name, alias)
            if current is None:
                raise PreconditionError(f"{name} has no {alias}; there is nothing to roll back")
            target = resolve_target(name, alias, current, params.to_version)
            if target == current:
                publish_note(
                    VERDICT_NOTE, f"version {target} already is the {alias}; nothing changed"
                )
                return
            move = AliasMove(
                action="rollback",
                alias=alias,
                from_version=current,
                to_version=target,
                reason=f"rollback from version {current} to version {target}",
                prefect_flow_run_id=run.data.tags.get(FLOW_RUN_TAG),
                mlflow_run_id=run.info.run_id,
            )
            intent = plan_move(
                move,
                ticket=str(lock.ticket),
                history=read_history(name),
                aliases_now={alias: current, challenger: alias_version(name, challenger)},
                challenger_alias=challenger,
                use_stages=params.use_stages,
            )
            entry = commit(name, intent, lock.fence)
        publish_output("model_version", f"models:/{name}/{target}")
        publish_note(VERDICT_NOTE, f"ROLLED BACK: {name}@{alias} {current} -> {target}")
        logger.info(
            "rolled back %s@%s from %s to %s (history #%s)",
            name,
            alias,
            current,
            target,
            entry["sequence"],
        )


if __name__ == "__main__":
    run_entry_point(build_parser(), with_params(RollbackParams, main))
