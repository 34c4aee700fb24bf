"""Fitting names into terminal tables without breaking them mid-word.

Rich wraps cells at spaces and, where one word is wider than its column,
folds it or cuts its end (``onnx::MatMu…``). Tensor names are single words
whose ends differ (``blocks.0.fc1.weight`` / ``blocks.1.fc1.weight``), so a
name that does not fit is shortened in the middle instead, and the width it
may take is worked out before rich lays the table out.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

__all__ = ["ELLIPSIS", "shorten_middle", "column_width", "spare_width", "fit_label", "wrap_phrases", "wrap_line", "print_line", "print_phrases", "fit_words", "share_width"]

ELLIPSIS = "…"


def shorten_middle(text: str, width: int) -> str:
    """``text`` if it fits in ``width`` characters, else its start and end around an ellipsis."""
    if len(text) <= width:
        return text
    if width <= 1:
        return ELLIPSIS[:width]
    tail = (width - 1) // 2  # the end names the tensor's role (".weight", "_287"): keep as much of it as the start
    head = width - 1 - tail
    return text[:head] + ELLIPSIS + text[len(text) - tail :]


def column_width(header: str, cells: Sequence[str]) -> int:
    """Width a column needs to show its header on one line and every cell line whole."""
    lines = [line for c in cells for line in c.split("\n")]
    return max([len(header)] + [len(line) for line in lines])


def spare_width(total: int, fixed: Sequence[int], flexible: int) -> int:
    """Characters left for each of ``flexible`` columns in a table ``total`` characters wide.

    The table is rich's frameless kind (no outer edge, no edge padding):
    between two columns, a space of padding, a separator and another space.
    """
    columns = len(fixed) + flexible
    return max(8, (total - sum(fixed) - 3 * (columns - 1)) // max(flexible, 1))


def fit_label(name: str, suffix: str, width: int) -> str:
    """``name suffix`` on one line if it fits; else the name (shortened in the middle if need be), the suffix below."""
    if len(name) + 1 + len(suffix) <= width:
        return f"{name} {suffix}" if suffix else name
    return shorten_middle(name, width) + (f"\n{suffix}" if suffix else "")


def wrap_phrases(phrases: Sequence[str], width: int) -> list[str]:
    """Join phrases with spaces into lines of at most ``width``, breaking only between phrases.

    Keeps "404 B" or "66.98% of unique bytes" on one line, where rich would
    break at any space.
    """
    lines: list[str] = []
    for phrase in phrases:
        if lines and len(lines[-1]) + 1 + len(phrase) <= width:
            lines[-1] += " " + phrase
        else:
            lines.append(phrase)
    return lines


_UNIT = re.compile(r"(B|KiB|MiB|GiB|TiB)[,;:)]*")


def wrap_line(line: str, width: int) -> list[str]:
    """Wrap at spaces, but never between a figure and its unit ("404 B")."""
    words: list[str] = []
    for word in line.split(" "):
        if words and _UNIT.fullmatch(word):
            words[-1] += " " + word
        else:
            words.append(word)
    return wrap_phrases(words, width)


def print_line(console: Any, text: str) -> None:
    """Plain text on a rich console, wrapped here (``wrap_line``) so that a figure never parts from its unit."""
    for line in wrap_line(text, console.width):
        console.print(line, highlight=False, markup=False)


def print_phrases(console: Any, phrases: Sequence[str]) -> None:
    """Phrases on a rich console, broken only between them (``wrap_phrases``): a report's headline."""
    for line in wrap_phrases(phrases, console.width):
        console.print(line, highlight=False, markup=False)


def fit_words(text: str, width: int) -> str:
    """``text`` with each word wider than ``width`` broken after "(" or else shortened in the middle; rich then wraps it at spaces.

    ``Transpose(tok_emb.weight)`` becomes ``Transpose(`` over ``tok_emb.weight)``, both whole.
    """

    def fit(word: str) -> str:
        if len(word) > width and "(" in word[:-1]:
            head, tail = word.split("(", 1)
            return shorten_middle(head + "(", width) + "\n" + fit(tail)
        return shorten_middle(word, width)

    return "\n".join(" ".join(fit(w) for w in line.split(" ")) for line in text.split("\n"))


def share_width(total: int, fixed: Sequence[int], needs: Sequence[int]) -> list[int]:
    """Widths for the flexible columns of a frameless table: what each needs when all fit, else fair shares.

    A column needing less than its share gives the rest to the others, so a
    name is shortened only when the table cannot hold it.
    """
    left = total - sum(fixed) - 3 * (len(fixed) + len(needs) - 1)
    widths = [0] * len(needs)
    pending = sorted(range(len(needs)), key=lambda k: needs[k])
    while pending:
        share = max(8, left // len(pending))
        k = pending.pop(0)
        widths[k] = min(needs[k], share)
        left -= widths[k]
    return widths
