"""Rich terminal report: the answer first, then models, groups largest first.

Laid out for the console's width (80 columns and up): a name is never split
mid-word; one too long for its column is shortened in the middle
(:mod:`sharescan.report.layout`). Groups reclaiming less than ``min_bytes``
fold into one line; JSON and Markdown list every group.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import Any

from sharescan.report.layout import column_width, fit_label, print_line, print_phrases, spare_width
from sharescan.report.rows import candidate_rows, error_cell, headline, member_parts, nonfinite_lines, relation_lines, summary_lines
from sharescan.result import AnalysisResult, GroupReport
from sharescan.units import human_bytes

__all__ = ["render_terminal", "TERMINAL_GROUP_HEADER", "TERMINAL_MODEL_HEADER", "TERMINAL_CANDIDATE_HEADER", "DEFAULT_MIN_BYTES"]

TERMINAL_GROUP_HEADER = ("#", "relation", "members (first is kept)", "each", "reclaimable", "error")
TERMINAL_MODEL_HEADER = ("#", "model", "unique", "reclaimable", "file")
TERMINAL_CANDIDATE_HEADER = ("#", "a", "b", "rel dist", "max diff")  # short headers leave the names room at 80 columns
DEFAULT_MIN_BYTES = 1024  # groups reclaiming less fold into one line


def render_terminal(result: AnalysisResult, console: Any, top: int = 50, min_bytes: int = DEFAULT_MIN_BYTES) -> None:
    say = functools.partial(print_line, console)
    print_phrases(console, headline(result))
    say("sharescan analysis (KiB/MiB/GiB = 1024-based)")
    console.print(_models_table(result, console.width))
    for line in summary_lines(result):
        say(line)
    if not result.groups:
        say("No shared or duplicated tensors found.")
    else:
        large = [g for g in result.groups if g.reclaimable_bytes >= min_bytes]
        small = [g for g in result.groups if g.reclaimable_bytes < min_bytes]
        if large:
            console.print(_groups_table(result, large[:top], console.width))
        if len(large) > top:
            rest = large[top:]
            say(f"{len(rest)} more group(s) reclaim {human_bytes(sum(g.reclaimable_bytes for g in rest))} (--top {top} shown)")
        if small:
            say(f"{len(small)} group(s) under {human_bytes(min_bytes)} each reclaim {human_bytes(sum(g.reclaimable_bytes for g in small))} in total (--min-bytes)")
    if result.candidates:
        console.print(_candidates_table(result, console.width))
    for m in result.models:
        if m.reused_initializers:
            say(f"{m.path}: initializers already shared in the graph: " + ", ".join(f"{n} ({c} readers)" for n, c in m.reused_initializers))
    for line in nonfinite_lines(result):
        say(line)


def _table(title: str, header: Sequence[str], rows: Sequence[Sequence[str]], separate_rows: bool = False) -> Any:
    """A rule under the header and no vertical borders: more room for names at 80 columns."""
    from rich import box
    from rich.markup import escape
    from rich.table import Table

    table = Table(title=title, title_justify="left", box=box.SIMPLE_HEAD, show_edge=False, show_lines=separate_rows, pad_edge=False)
    for name in header:
        # Widths are worked out beforehand: nothing needs folding, and a word never breaks.
        table.add_column(name, overflow="ellipsis", min_width=max(len(w) for w in name.split()))
    for row in rows:
        # Tensor names and paths are data, not markup: "[64x48 float32]" must print as is.
        table.add_row(*[escape(c) for c in row])
    return table


def _spare(width: int, header: Sequence[str], rows: Sequence[Sequence[str]], flexible: Sequence[int]) -> int:
    """Width left for each of the ``flexible`` columns once the others take what they need."""
    fixed = [column_width(h, [r[k] for r in rows]) for k, h in enumerate(header) if k not in flexible]
    return spare_width(width, fixed, len(flexible))


def _models_table(result: AnalysisResult, width: int) -> Any:
    numbers = [(f"m{k}", "", human_bytes(m.unique_bytes), human_bytes(m.reclaimable_bytes), human_bytes(m.file_bytes)) for k, m in enumerate(result.models)]
    room = _spare(width, TERMINAL_MODEL_HEADER, numbers, [1])
    rows = [(r[0], fit_label(m.path, f"({m.format}, {m.n_tensors} tensors)", room), *r[2:]) for r, m in zip(numbers, result.models)]
    return _table("Models", TERMINAL_MODEL_HEADER, rows)


def _groups_table(result: AnalysisResult, groups: Sequence[GroupReport], width: int) -> Any:
    title = f"Groups ({len(result.groups)}), largest first"
    numbers = [(str(k), relation_lines(g), "", human_bytes(g.bytes_each), human_bytes(g.reclaimable_bytes), error_cell(g)) for k, g in enumerate(groups, 1)]
    room = _spare(width, TERMINAL_GROUP_HEADER, numbers, [2])
    rows = [(*r[:2], "\n".join(fit_label(*member_parts(m, result), room) for m in g.members), *r[3:]) for r, g in zip(numbers, groups)]
    return _table(title, TERMINAL_GROUP_HEADER, rows, separate_rows=True)


def _candidates_table(result: AnalysisResult, width: int) -> Any:
    numbers = [(r[0], "", "", r[3], r[4]) for r in candidate_rows(result)]
    room = _spare(width, TERMINAL_CANDIDATE_HEADER, numbers, [1, 2])
    rows = []
    for r, c in zip(numbers, result.candidates):
        b_name, b_rest = member_parts(c.b, result)
        b_rest += " (vs a.T)" if c.transposed else ""
        rows.append((r[0], fit_label(*member_parts(c.a, result), room), fit_label(b_name, b_rest, room), *r[3:]))
    return _table("Candidates for tying (pairs not merged, best first)", TERMINAL_CANDIDATE_HEADER, rows)
