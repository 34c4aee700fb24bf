"""What the library raises when it refuses: one base, three kinds, and a failed quality gate.

Every message is one line that says what went wrong, where, and what to do;
the CLI prints it as ``error: <message>`` (see ``sharescan/cli/_errors.py``
for the exit codes). Library callers catch ``SharescanError`` for all of
them, or one kind.
"""

from __future__ import annotations

__all__ = ["SharescanError", "InputError", "VerificationError", "TrainingError", "QualityError", "one_line"]

# A limit below this would hide the cause: onnxruntime and torch put it after
# several hundred characters of context (the node, the op, the shapes).
_MIN_LIMIT = 1000


def one_line(text: object, limit: int | None = None) -> str:
    """A message (or exception) on one line, whole: every line joined, blanks collapsed.

    The cause is often in the second line or the last sentence, so nothing is
    dropped by default. With ``limit`` (never under 1,000 characters), a
    longer text ends at the last sentence that fits, else the last word, and
    an ellipsis says that more was left out.
    """
    joined = " ".join(str(text).split())
    if limit is None or len(joined) <= limit:
        return joined
    limit = max(limit, _MIN_LIMIT)
    if len(joined) <= limit:
        return joined
    head = joined[: limit + 1]
    end = max(head.rfind(". "), head.rfind("; "))
    if end + 1 >= _MIN_LIMIT:
        return joined[: end + 1] + " \u2026"
    space = head.rfind(" ")
    if space < _MIN_LIMIT:  # the word that crosses the limit ends the text: never cut mid-word
        space = joined.find(" ", _MIN_LIMIT)
    return (joined[:space] if space > 0 else joined[:limit]) + " \u2026"


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
