"""What client and fork server agree on: which commands may be forked, and the messages.

Messages are JSON objects, one per line, over a Unix stream socket. The client sends one request
per connection (with its stdin/stdout/stderr attached as SCM_RIGHTS); the server answers
`{"pid": N}` once the child is forked and `{"exit": code}` when it has been reaped (`code` as
`subprocess.Popen.returncode`: negative for a signal), or `{"error": "..."}`.
"""

from __future__ import annotations

import json
import os
import shlex
from dataclasses import dataclass
from typing import Any

# Characters a shell would act on outside quotes; a command holding one is not a plain argv.
_SHELL_SPECIAL = set("$`;&|<>(){}[]*?~!#\\\n\r")
# ... and inside double quotes.
_DOUBLE_QUOTED_SPECIAL = set("$`\\")
_PYTHON_NAMES = ("python", "python3")


@dataclass(frozen=True)
class ModuleCommand:
    """`<python> -m <module> <args...>`: what the fork server can run without a shell."""

    python: str
    module: str
    args: tuple[str, ...]


def _is_plain(command: str) -> bool:
    """True when bash would split `command` into words exactly as shlex does: no expansions,
    redirections, pipes, globs, comments or command substitutions anywhere."""
    quote = ""
    for char in command:
        if quote == "'":
            if char == "'":
                quote = ""
        elif quote == '"':
            if char == '"':
                quote = ""
            elif char in _DOUBLE_QUOTED_SPECIAL:
                return False
        elif char in ("'", '"'):
            quote = char
        elif char in _SHELL_SPECIAL:
            return False
    return quote == ""


def parse_module_command(command: str) -> ModuleCommand | None:
    """The module and arguments of `python -m module args...`, or None for anything else
    (shell syntax, another program, interpreter options), which then runs through a shell."""
    if not _is_plain(command):
        return None
    try:
        words = shlex.split(command, posix=True)
    except ValueError:
        return None
    if len(words) < 3 or words[1] != "-m":
        return None
    python = words[0]
    name = os.path.basename(python)
    if name not in _PYTHON_NAMES and not name.startswith("python3."):
        return None
    module = words[2]
    if (
        not module
        or module.startswith("-")
        or not all(part.isidentifier() for part in module.split("."))
    ):
        return None
    if "=" in python:  # an environment assignment, not a program
        return None
    return ModuleCommand(python=python, module=module, args=tuple(words[3:]))


def same_interpreter(program: str | None, executable: str) -> bool:
    """Whether `program` (as found on PATH) is the interpreter `executable` of the server:
    the same file in the same bin directory (a venv's python is a symlink to the base one,
    so the directory decides which environment it is)."""
    if not program:
        return False
    here = os.path.realpath(os.path.dirname(os.path.abspath(program)))
    there = os.path.realpath(os.path.dirname(os.path.abspath(executable)))
    if here != there:
        return False
    try:
        return os.path.samefile(program, executable)
    except OSError:
        return False


def encode(message: dict[str, Any]) -> bytes:
    return json.dumps(message, separators=(",", ":")).encode() + b"\n"


def decode_lines(buffer: bytearray) -> list[dict[str, Any]]:
    """Pop every complete message off the front of `buffer`."""
    messages: list[dict[str, Any]] = []
    while True:
        end = buffer.find(b"\n")
        if end < 0:
            return messages
        line = bytes(buffer[:end])
        del buffer[: end + 1]
        if line.strip():
            messages.append(json.loads(line))


def exit_code_of(exit_value: Any) -> int:
    """The process exit status a `SystemExit(value)` stands for, as the interpreter maps it."""
    if exit_value is None:
        return 0
    if isinstance(exit_value, bool):
        return int(exit_value)
    if isinstance(exit_value, int):
        return exit_value & 0xFF
    return 1
