"""Errors an entry point raises on purpose, each with an exit code telling its caller what to do.

The orchestrator never parses messages: it reads the process exit code (and the error-kind
tag (steps/contract.py) the entry point leaves on its run) to decide whether a retry can help.
"""

from __future__ import annotations

from typing import ClassVar

from steps.contract import (
    EXIT_BAD_CONFIG,
    EXIT_BAD_DATA,
    EXIT_BAD_SOURCE,
    EXIT_BUG,
    EXIT_NOT_READY,
    EXIT_TRANSIENT,
    PERMANENT,
    TRANSIENT,
)


class StepError(Exception):
    """Base of the errors an entry point reports to its user in one clear message."""

    exit_code: ClassVar[int] = EXIT_BUG
    kind: ClassVar[str] = PERMANENT


class ConfigurationError(StepError):
    """A parameter value is invalid; the message names the parameter and the allowed values."""

    exit_code = EXIT_BAD_CONFIG


class SourceError(StepError):
    """The data source is missing, unreachable for good, or not a listings file."""

    exit_code = EXIT_BAD_SOURCE


class DataValidationError(StepError):
    """The data broke a rule of the data contract; the message names each rule and example rows."""

    exit_code = EXIT_BAD_DATA


class PreconditionError(StepError):
    """Something the step needs from earlier runs is absent (no eligible run, no champion...)."""

    exit_code = EXIT_NOT_READY


class TransientError(StepError):
    """A failure that a retry may cure: timeouts, connection resets, 5xx answers, a locked store."""

    exit_code = EXIT_TRANSIENT
    kind = TRANSIENT
