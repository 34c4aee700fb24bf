"""What the library raises when it refuses: one base, three kinds, and a failed quality gate.

Every message is one line that says what went wrong, where, and what to do;
the CLI prints it as ``error: <message>`` (see ``sharescan/cli/_errors.py``
for the exit codes). Library callers catch ``SharescanError`` for all of
them, or one kind.
"""

from __future__ import annotations

__all__ = ["SharescanError", "InputError", "VerificationError", "TrainingError", "QualityError"]


class SharescanError(Exception):
    """A refusal with a one-line message; nothing was written."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class InputError(SharescanError):
    """Unusable input: a missing, unreadable, corrupt or refused file, or a bad option."""


class VerificationError(SharescanError):
    """A rewrite that fails verification (onnx.checker or onnxruntime's outputs); not written."""


class TrainingError(SharescanError):
    """Fine-tuning that cannot go on: a loss that turned NaN/Inf or diverged; nothing written."""


class QualityError(SharescanError):
    """The run completed but its result fails a quality gate (``tie --max-drop``); nothing written.

    Apart from the three refusals above: the input and options were fine, so
    the CLI exits 1, as a failed ``analyze --fail-above`` gate does.
    """
