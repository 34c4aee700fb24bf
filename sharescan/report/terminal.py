"""Rich terminal report: summary, models, groups sorted by reclaimable bytes."""

from __future__ import annotations

from typing import Any

from sharescan.report.rows import CANDIDATE_HEADER, GROUP_HEADER, MODEL_HEADER, candidate_rows, group_row, model_rows, nonfinite_lines, summary_lines
from sharescan.result import AnalysisResult

__all__ = ["render_terminal"]


def render_terminal(result: AnalysisResult, console: Any, top: int = 50) -> None:
    from rich.markup import escape
    from rich.table import Table

    def cells(row: tuple[str, ...]) -> list[str]:
        # Tensor names and paths are data, not markup: "[64x48 float32]" must print as is.
        return [escape(c) for c in row]

    console.print("[bold]sharescan analysis[/bold]  (KiB/MiB/GiB = 1024-based)")
    models = Table(title="Models", title_justify="left")
    for name in MODEL_HEADER:
        # Paths are folded, never cut: a report must say which file it means.
        models.add_column(name, overflow="fold")
    for row in model_rows(result):
        models.add_row(*cells(row))
    console.print(models)
    for line in summary_lines(result):
        console.print(line, highlight=False, markup=False)
    if not result.groups:
        console.print("No shared or duplicated tensors found.")
    else:
        shown = result.groups[:top]
        title = f"Groups ({len(result.groups)})" + (f", largest {top} shown" if len(result.groups) > top else "")
        table = Table(title=title, title_justify="left", show_lines=True)
        for name in GROUP_HEADER:
            table.add_column(name, overflow="fold")
        for k, g in enumerate(shown, 1):
            table.add_row(*cells(group_row(k, g, result)))
        console.print(table)
    if result.candidates:
        table = Table(title="Closest pairs not merged (candidates for tying)", title_justify="left")
        for name in CANDIDATE_HEADER:
            table.add_column(name, overflow="fold")
        for row in candidate_rows(result):
            table.add_row(*cells(row))
        console.print(table)
    for m in result.models:
        if m.reused_initializers:
            names = ", ".join(f"{n} ({c} readers)" for n, c in m.reused_initializers)
            console.print(f"{m.path}: initializers already shared in the graph: {names}", highlight=False, markup=False)
    for line in nonfinite_lines(result):
        console.print(line, highlight=False, markup=False)
