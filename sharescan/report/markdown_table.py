"""The one Markdown table builder every report uses."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

__all__ = ["markdown_table"]


def _cell(text: str) -> str:
    # A bare "|" would end the cell and a newline the row: names are data, not layout.
    return text.replace("|", "\\|").replace("\n", "<br>")


def markdown_table(header: Sequence[str], rows: Iterable[Sequence[str]]) -> list[str]:
    """Lines of a GitHub Markdown table: the header, its rule, one line per row."""
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(_cell(c) for c in row) + " |" for row in rows]
    return lines
