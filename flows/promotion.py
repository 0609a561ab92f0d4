"""The registry's champion, from the command line or the Prefect UI: history and rollback.

    python -m flows.promotion history [hydra overrides...]
    python -m flows.promotion rollback [--to-version N] [hydra overrides...]

Overrides select the store and model as for the pipeline, e.g. main.registered_model=prices.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from prefect import flow, get_run_logger

from flows.cli import Command, run_command
from orchestration.config import PipelineConfig
from orchestration.runtime import compose, configure_services
from orchestration.step_runner import step_runner
from orchestration.step_table import ROLLBACK_STEP
from steps.contract import VERDICT_NOTE
from tasks.registry_history import read_alias_history
from tasks.step_result import StepResult


@flow(name="rollback_champion", flow_run_name="rollback-{to_version}")
def rollback_champion(overrides: list[str] | None = None, to_version: int = 0) -> StepResult:
    """Move the champion alias back (to the previous champion, or to `to_version`).

    The rollback entry point runs through the same runner as every pipeline step: the
    configured backend, retry policy, timeout and service environment. It takes the promotion
    lock itself (steps/registry/promotion_lock.py).
    """
    cfg = compose(overrides or [])
    steps = step_runner(cfg, group=ROLLBACK_STEP)
    result = steps.run(ROLLBACK_STEP, {}, None, parameters={"to_version": to_version})
    get_run_logger().info("%s", result.notes.get(VERDICT_NOTE, "rollback finished"))
    return result


@flow(name="promotion_history")
def promotion_history(overrides: list[str] | None = None) -> list[dict[str, Any]]:
    """Every recorded alias move of the registered model, oldest first."""
    cfg = compose(overrides or [])
    configure_services(cfg, Path.cwd(), group="history")
    return read_alias_history(cfg.main.registered_model)


def render_history(entries: list[dict[str, Any]]) -> str:
    if not entries:
        return "no alias moves recorded\n"
    header = f"{'#':>4}  {'time (UTC)':<26}{'action':<10}{'alias':<12}{'from':>6}{'to':>6}  reason"
    lines = [header, "-" * len(header)]
    for entry in entries:
        lines.append(
            f"{entry.get('sequence', ''):>4}  {entry.get('time', ''):<26}"
            f"{entry.get('action', ''):<10}{entry.get('alias', ''):<12}"
            f"{entry.get('from_version') or '-':>6}{entry.get('to_version', ''):>6}  "
            f"{entry.get('reason', '')}"
        )
    return "\n".join(lines) + "\n"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m flows.promotion", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("history", help="print every recorded alias move")
    rollback = commands.add_parser("rollback", help="move the champion back")
    rollback.add_argument("--to-version", type=int, default=0, help="a version number")
    args, overrides = parser.parse_known_args(argv)
    if args.command == "rollback" and args.to_version < 0:
        sys.stderr.write("error: --to-version must be a positive version number\n")
        return 2

    def history(cfg: PipelineConfig) -> int:
        sys.stdout.write(render_history(promotion_history(overrides=overrides)))
        return 0

    def rollback_body(cfg: PipelineConfig) -> int:
        result = rollback_champion(overrides=overrides, to_version=args.to_version)
        sys.stdout.write(result.notes.get(VERDICT_NOTE, "rolled back") + "\n")
        return 0

    if args.command == "history":
        return run_command(Command("history", history), overrides)
    return run_command(Command("rollback", rollback_body), overrides)


if __name__ == "__main__":
    sys.exit(main())
