"""Render a DedupResult: terminal (rich), Markdown; JSON is its to_dict()."""

from __future__ import annotations

from typing import Any

from sharescan.onnx_rewrite.dedup_result import DedupResult, DroppedMerge
from sharescan.report.markdown_table import markdown_table
from sharescan.units import human_bytes

__all__ = ["dedup_summary", "dedup_rows", "render_dedup_terminal", "render_dedup_markdown", "MERGE_HEADER"]

MERGE_HEADER = ("#", "relation", "dropped", "now", "saved", "max abs err")


def _ram_line(r: DedupResult) -> str:
    if not r.ram:
        failed = next((w for w in r.warnings if w.startswith("onnxruntime RAM")), None)
        return failed or "onnxruntime RAM: not measured"
    b, a = r.ram["before"], r.ram["after"]
    return (
        f"onnxruntime RAM (session + one run): default options {human_bytes(b['default'])} -> {human_bytes(a['default'])}; "
        f"recommended options {human_bytes(b['recommended'])} -> {human_bytes(a['recommended'])}"
    )


def _simplify_line(r: DedupResult) -> str:
    f = r.simplified
    assert f is not None
    return (
        f"simplify: {f.nodes_folded} constant nodes folded into {f.tensors_added} tensors; "
        f"{f.repeats_merged} repeated, {f.identities_dropped} Identity and {f.nodes_pruned} unused nodes dropped; "
        f"{f.reshapes_constant} Reshape targets made constant; {f.tensors_pruned} unused tensors dropped; "
        f"model {f.model_bytes_before:,} B -> {f.model_bytes_after:,} B"
    )


def _feeds_line(r: DedupResult) -> str:
    v = r.verdict
    shapes = ", ".join(f"{n} {'x'.join(map(str, s)) or 'scalar'} {d}" for n, s, d in v.inputs)
    runs = f"; {len(v.runs)} runs: {'; '.join(v.runs)}" if len(v.runs) > 1 else ""
    return f"verified on: {v.feeds_source}: {shapes}{runs}"


def _dropped_line(d: DroppedMerge) -> str:
    m = d.merge
    return f"dropped merge: {m.relation} {m.dropped} = {m.how} ({human_bytes(m.saved_bytes)} not saved): {d.reason}; the tensor stays stored"


def dedup_summary(r: DedupResult) -> list[str]:
    v = r.verdict
    verdict = "outputs identical" if v.outputs_identical else f"outputs within max abs {v.max_abs_error:.3g}, relative {v.rel_error:.3g}"
    options = ", ".join(f"{k}={v}" for k, v in r.recommended_options.items())
    return [
        f"{r.input} -> {r.output}",
        f"file: {r.file_bytes_before:,} B ({human_bytes(r.file_bytes_before)}) -> {r.file_bytes_after:,} B ({human_bytes(r.file_bytes_after)})",
        f"tensor bytes: {r.tensor_bytes_before:,} B -> {r.tensor_bytes_after:,} B (saved {human_bytes(r.tensor_bytes_before - r.tensor_bytes_after)})",
        f"verification: onnx.checker passed; onnxruntime {verdict} ({'lossy' if r.lossy else 'lossless'} merges)",
        _feeds_line(r),
        *[f"skipped run: {s}" for s in v.skipped],
        *[_dropped_line(d) for d in r.dropped_merges],
        *([_simplify_line(r)] if r.simplified is not None else []),
        _ram_line(r),
        f"recommended onnxruntime session config entries: {options}",
    ]


def dedup_rows(r: DedupResult) -> list[tuple[str, ...]]:
    return [
        (str(k), m.relation, m.dropped, m.how, human_bytes(m.saved_bytes), f"{m.max_abs_error:.3g}")
        for k, m in enumerate(sorted(r.merges, key=lambda m: -m.saved_bytes), 1)
    ]


def render_dedup_terminal(r: DedupResult, console: Any, top: int = 50) -> None:
    from rich import box
    from rich.markup import escape
    from rich.table import Table

    from sharescan.report.layout import column_width, fit_words, share_width

    console.print("[bold]sharescan dedup[/bold]  (KiB/MiB/GiB = 1024-based)")
    for line in dedup_summary(r):
        console.print(line, highlight=False, markup=False)
    if r.merges:
        rows = dedup_rows(r)[:top]
        names = (2, 3)  # "dropped" and "now" hold tensor names: shortened in the middle, and only if they do not fit
        fixed = [column_width(h, [row[k] for row in rows]) for k, h in enumerate(MERGE_HEADER) if k not in names]
        room = dict(zip(names, share_width(console.width, fixed, [column_width(MERGE_HEADER[k], [row[k] for row in rows]) for k in names])))
        table = Table(title=f"Merges ({len(r.merges)})", title_justify="left", box=box.SIMPLE_HEAD, show_edge=False, pad_edge=False)
        for name in MERGE_HEADER:
            table.add_column(name, min_width=max(len(w) for w in name.split()))
        for row in rows:
            table.add_row(*[escape(fit_words(c, room[k]) if k in names else c) for k, c in enumerate(row)])
        console.print(table)
    else:
        console.print("Nothing to merge: the model stores no tensor twice.")


def render_dedup_markdown(r: DedupResult, top: int = 50) -> str:
    lines = ["# sharescan dedup", ""] + [f"- {line}" for line in dedup_summary(r)] + ["", f"## Merges ({len(r.merges)})", ""]
    if r.merges:
        lines += markdown_table(MERGE_HEADER, dedup_rows(r)[:top])
    else:
        lines.append("Nothing to merge.")
    return "\n".join(lines) + "\n"
