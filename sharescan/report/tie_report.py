"""Render a TieResult: terminal (rich) and Markdown; JSON is its to_dict()."""

from __future__ import annotations

from typing import Any

from sharescan.report.markdown_table import markdown_table
from sharescan.tying.result import TieResult
from sharescan.units import human_bytes

__all__ = ["tie_summary", "tie_headline", "render_tie_terminal", "render_tie_markdown", "GROUP_HEADER", "METRIC_HEADER"]

GROUP_HEADER = ("group", "gap before", "gap per epoch (first ... last)", "gap when shared")
METRIC_HEADER = ("model", "before", "after fine-tuning", "after sharing", "after shared fine-tuning")


def tie_summary(r: TieResult) -> list[str]:
    saved = r.bytes_before - r.bytes_after
    lines = [
        f"models: {', '.join(f'{k}={p}' for k, p in zip(r.keys, r.models))}",
        f"parameters: {r.parameters_before:,} -> {r.parameters_after:,}; bytes {r.bytes_before:,} B ({human_bytes(r.bytes_before)}) -> {r.bytes_after:,} B ({human_bytes(r.bytes_after)}), "
        f"saved {100 * saved / r.bytes_before if r.bytes_before else 0:.1f}%",
        f"lambda per epoch: {', '.join(f'{x:g}' for x in r.lambdas)} ({r.epochs_run} epochs on {r.device}, {r.seconds:.1f} s)",
        f"written: {r.output}" + (f"; ONNX {r.onnx_output} (onnxruntime vs torch max abs diff {r.onnx_max_abs_diff:.3g})" if r.onnx_output else ""),
    ]
    key, drop = r.worst_drop
    if key:
        limit = "" if r.max_drop is None else f" (--max-drop {r.max_drop:g}{', exceeded: written with --force' if r.forced else ''})"
        lines.append(f"largest {r.metric_name} drop: {drop:.2f} points, model {key}{limit}")
    return lines + list(r.notes)


def tie_headline(r: TieResult) -> str:
    """The one line ``tie -q`` prints: what was written, the bytes saved and the largest metric drop."""
    saved = r.bytes_before - r.bytes_after
    key, drop = r.worst_drop
    worst = f"; largest {r.metric_name} drop {drop:.2f} points ({key})" if key else ""
    return (f"{r.output}: {len(r.groups)} group(s) tied, {r.bytes_before:,} -> {r.bytes_after:,} B "
            f"(-{100 * saved / r.bytes_before if r.bytes_before else 0:.1f}%){worst}")


def _group_rows(r: TieResult) -> list[tuple[str, ...]]:
    def trace(g: Any) -> str:
        gaps = g.gap_per_epoch
        return "-" if not gaps else (f"{gaps[0]:.3g} ... {gaps[-1]:.3g}" if len(gaps) > 1 else f"{gaps[0]:.3g}")

    return [(g.label, f"{g.gap_before:.3g}", trace(g), f"{g.gap_at_sharing:.3g}" + (" (above target)" if g.above_target else "")) for g in r.groups]


def _metric_rows(r: TieResult) -> list[tuple[str, ...]]:
    return [
        (k, f"{r.metric_before[k]:.2f}", f"{r.metric_after_finetune[k]:.2f}", f"{r.metric_after_sharing[k]:.2f}", f"{r.metric_final[k]:.2f}")
        for k in r.keys
    ]


def render_tie_terminal(r: TieResult, console: Any) -> None:
    from rich.markup import escape
    from rich.table import Table

    console.print("[bold]sharescan tie[/bold]  (relative gap = sqrt(sum ||w - mean||^2 / sum ||w||^2))")
    for line in tie_summary(r):
        console.print(line, highlight=False, markup=False)
    metrics = Table(*METRIC_HEADER, title=r.metric_name, title_justify="left")
    for row in _metric_rows(r):
        metrics.add_row(*map(escape, row))
    console.print(metrics)
    groups = Table(*GROUP_HEADER, title=f"Tied groups ({len(r.groups)})", title_justify="left")
    for row in _group_rows(r):
        groups.add_row(*map(escape, row))
    console.print(groups)
    for warning in r.warnings:
        console.print(f"warning: {warning}", highlight=False, markup=False)


def render_tie_markdown(r: TieResult) -> str:
    lines = ["# sharescan tie", ""] + [f"- {line}" for line in tie_summary(r)] + ["", f"## {r.metric_name}", ""]
    lines += markdown_table(METRIC_HEADER, _metric_rows(r)) + ["", f"## Tied groups ({len(r.groups)})", ""] + markdown_table(GROUP_HEADER, _group_rows(r)) + [""]
    if r.warnings:
        lines += ["## Warnings", ""] + [f"- {w}" for w in r.warnings] + [""]
    return "\n".join(lines)
