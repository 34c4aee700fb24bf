"""The one error type the CLI turns into a clear line and exit code 2."""

from __future__ import annotations

__all__ = ["InputError"]


class InputError(Exception):
    """Unusable input: a missing, unreadable, corrupt or refused file, or a bad option.

    The message is one line that says what went wrong, where, and what to do.
    """

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message
