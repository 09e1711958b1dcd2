"""How an inspecting command ends: its exit codes (docs/cli.md) and the errors that carry them."""

from __future__ import annotations

# Exit codes a script can use (docs/cli.md).
OK, FAILED, NOT_FOUND, NOT_READY = 0, 1, 2, 3


class CliError(Exception):
    """What ends a command with a message on stderr and an exit code."""

    code = FAILED


class NotFound(CliError):
    code = NOT_FOUND
