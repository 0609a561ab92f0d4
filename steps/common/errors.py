"""Errors an entry point raises on purpose, each with an exit code telling its caller what to do.

The orchestrator never parses messages: it reads the process exit code (and the `step.error_kind`
tag the entry point leaves on its run) to decide whether a retry can help.
"""

from __future__ import annotations

from typing import ClassVar

# Exit codes shared by every entry point (sysexits-style, so shells and CI read them too).
EXIT_OK = 0
EXIT_BAD_CONFIG = 2  # a parameter or setting is wrong: fix the configuration
EXIT_BAD_DATA = 3  # the data failed a check: fix the data
EXIT_BAD_SOURCE = 4  # the data source cannot be read as listings: fix the source
EXIT_NOT_READY = 5  # a precondition in the tracking store is missing (e.g. no eligible run)
EXIT_TRANSIENT = 75  # EX_TEMPFAIL: the same call may succeed later (network, locked store)

PERMANENT = "permanent"
TRANSIENT = "transient"


class StepError(Exception):
    """Base of the errors an entry point reports to its user in one clear message."""

    exit_code: ClassVar[int] = 1
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
