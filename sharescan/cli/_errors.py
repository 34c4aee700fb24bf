"""The one place an exception becomes a line on stderr and an exit code.

Commands raise; only :func:`sharescan.cli.main` catches, through
:func:`describe`. Every known failure is one line that starts with
``error: `` (the contract for bad input); an exception nothing foresaw still
comes out as one line, and ``SHARESCAN_DEBUG=1`` shows its traceback instead.
"""

from __future__ import annotations

import os
from typing import NamedTuple

import click

from sharescan.errors import QualityError, SharescanError

__all__ = ["EXIT_FAIL_ABOVE", "EXIT_ERROR", "EXIT_INTERRUPTED", "ThresholdExceeded", "Failure", "describe", "debugging"]

EXIT_FAIL_ABOVE = 1  # analyze --fail-above, tie --max-drop: the result is complete, the gate failed
EXIT_ERROR = 2  # unusable input or options, a failed verification, a diverged loss: nothing written
EXIT_INTERRUPTED = 130  # 128 + SIGINT, as a shell reports Ctrl-C


class ThresholdExceeded(Exception):
    """``analyze --fail-above``: reclaimable bytes above the limit (the report is already out)."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


def debugging() -> bool:
    """SHARESCAN_DEBUG=1: let an unexpected exception show its traceback."""
    return bool(os.environ.get("SHARESCAN_DEBUG"))


class Failure(NamedTuple):
    line: str  # printed on stderr as it is
    code: int  # the process exit code
    foreseen: bool  # False: no check caught it (SHARESCAN_DEBUG=1 shows the traceback)


def describe(e: BaseException) -> Failure:
    """The line to print on stderr and the exit code for an exception a command raised."""
    if isinstance(e, ThresholdExceeded):
        return Failure(e.message, EXIT_FAIL_ABOVE, True)
    if isinstance(e, QualityError):  # tie --max-drop: nothing written
        return Failure(f"error: {e.message}", EXIT_FAIL_ABOVE, True)
    if isinstance(e, (KeyboardInterrupt, click.exceptions.Abort)):
        return Failure("aborted", EXIT_INTERRUPTED, True)
    if isinstance(e, SharescanError):  # InputError, VerificationError, TrainingError
        return Failure(f"error: {e.message}", EXIT_ERROR, True)
    if isinstance(e, click.UsageError):
        # click prints usage errors as three lines; the contract is one.
        hint = f" (see '{e.ctx.command_path} --help')" if e.ctx is not None else ""
        return Failure(f"error: {e.format_message()}{hint}", EXIT_ERROR, True)
    if isinstance(e, click.ClickException):
        return Failure(f"error: {e.format_message()}", EXIT_ERROR, True)
    return Failure(f"error: {_unexpected(e)}", EXIT_ERROR, False)


def _unexpected(e: BaseException) -> str:
    """One line for an error no check turned into its own message."""
    if isinstance(e, MemoryError):
        return "out of memory; analyse fewer or smaller models at once"
    if isinstance(e, RecursionError):
        return "the input nests too deeply to read; it is corrupt or hostile: re-save it from its source"
    if isinstance(e, OSError) and e.strerror:
        where = f"{e.filename}: " if e.filename else ""
        return f"{where}{e.strerror}; check the path and its permissions"
    text = " ".join(str(e).split())
    return f"unexpected {e.__class__.__name__}{': ' + text if text else ''}; the input may be corrupt: check it, and report this message if it is not"
