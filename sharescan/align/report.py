"""Render an AlignResult: terminal (rich) and Markdown; JSON is its to_dict()."""

from __future__ import annotations

from typing import Any

from sharescan.align.result import AlignResult
from sharescan.report.markdown_table import markdown_table

__all__ = ["LAYER_HEADER", "align_summary", "render_align_terminal", "render_align_markdown"]

LAYER_HEADER = ("layer", "units permuted", "gap before", "gap after")


def align_summary(r: AlignResult) -> list[str]:
    return [
        f"models: A={r.models[0]}, B={r.models[1]} (B's hidden units permuted to match A)",
        f"permuted layers: {', '.join(r.sites) or 'none'}; {r.units_moved} units moved ({r.passes} passes, best of {r.starts} starts, {r.seconds:.2f} s)",
        f"trunk gap: {r.trunk_gap_before:.4g} -> {r.trunk_gap_after:.4g} ({_change(r.trunk_gap_before, r.trunk_gap_after)}); "
        f"whole model: {r.model_gap_before:.4g} -> {r.model_gap_after:.4g}",
        f"aligned B vs B on random inputs {r.input_shape}: max abs output difference {r.max_abs_output_diff:.3g}",
    ] + ([f"written: {r.output}"] if r.output else [])


def _change(before: float, after: float) -> str:
    return f"{100 * (after - before) / before:+.1f}%" if before else "unchanged"


def _rows(r: AlignResult) -> list[tuple[str, ...]]:
    return [(g.layer, g.permuted or "-", f"{g.gap_before:.4g}", f"{g.gap_after:.4g}") for g in r.layers]


def render_align_terminal(r: AlignResult, console: Any) -> None:
    from rich.markup import escape
    from rich.table import Table

    console.print("[bold]sharescan align[/bold]  (relative gap = ||A - B|| / max(||A||, ||B||))")
    for line in align_summary(r):
        console.print(line, highlight=False, markup=False)
    table = Table(*LAYER_HEADER, title=f"Layers ({len(r.layers)})", title_justify="left")
    for row in _rows(r):
        table.add_row(*map(escape, row))
    console.print(table)


def render_align_markdown(r: AlignResult) -> str:
    lines = ["# sharescan align", ""] + [f"- {line}" for line in align_summary(r)] + ["", f"## Layers ({len(r.layers)})", ""]
    return "\n".join(lines + markdown_table(LAYER_HEADER, _rows(r)) + [""])
