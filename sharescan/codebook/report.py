"""Render a CodebookReport: a short terminal table and a Markdown section (JSON is its to_dict())."""

from __future__ import annotations

from typing import Any

from sharescan.codebook.analysis import CodebookReport, TensorCodebook
from sharescan.report.markdown_table import markdown_table
from sharescan.units import human_bytes

__all__ = ["codebook_lines", "codebook_rows", "render_codebook_terminal", "render_codebook_markdown", "HEADER"]

HEADER = ("tensor", "dtype", "bytes", "bits", "after", "rel err", "note")


def codebook_lines(r: CodebookReport) -> list[str]:
    o = r.options
    what = f"{o.bits} bits" if o.bits is not None else f"fewest bits (1-8) within relative L2 error {o.max_error:g}"
    per = f"one codebook per {o.group_channels} output channels" if o.group_channels else "one codebook per tensor"
    lines = [f"Codebooks: {what}, {per}, codebook in the tensor's dtype"]
    for k, t in sorted(r.totals.items()):
        before, after = t["float_bytes"], t["bytes_after"]
        ratio = f"{before / after:.2f}x" if after else "-"
        lines.append(f"{r.models[k]}: float tensors {before:,} B ({human_bytes(before)}) -> {after:,} B ({human_bytes(after)}), {ratio}; {t['tensors_coded']} tensors coded")
    return lines


def _row(t: TensorCodebook, many: bool, models: tuple[str, ...]) -> tuple[str, ...]:
    name = f"{models[t.model]}:{t.name}" if many else t.name
    err = "-" if t.rel_error is None else f"{t.rel_error:.3g}"
    return (name, t.dtype, human_bytes(t.bytes_before), "-" if t.bits is None else str(t.bits), human_bytes(t.bytes_after), err, t.note)


def codebook_rows(r: CodebookReport, top: int) -> list[tuple[str, ...]]:
    """Largest tensors first, at most ``top``."""
    ranked = sorted(r.tensors, key=lambda t: -t.bytes_before)[:top]
    return [_row(t, len(r.models) > 1, r.models) for t in ranked]


def render_codebook_terminal(r: CodebookReport, console: Any, top: int) -> None:
    from rich import box
    from rich.table import Table

    for line in codebook_lines(r):
        console.print(line, highlight=False, markup=False)
    table = Table(box=box.SIMPLE)
    for h in HEADER:
        table.add_column(h, justify="right" if h in ("bytes", "bits", "after", "rel err") else "left", overflow="fold")
    for row in codebook_rows(r, top):
        table.add_row(*row)
    console.print(table)


def render_codebook_markdown(r: CodebookReport, top: int) -> str:
    lines = ["", "## Codebooks", "", *[f"- {line}" for line in codebook_lines(r)], ""]
    lines += markdown_table(HEADER, codebook_rows(r, top))
    return "\n".join(lines) + "\n"
