"""The same report as Markdown, for files and pull requests."""

from __future__ import annotations

from sharescan.report.markdown_table import markdown_table
from sharescan.report.rows import CANDIDATE_HEADER, GROUP_HEADER, MODEL_HEADER, candidate_rows, group_row, headline, model_rows, nonfinite_lines, summary_lines
from sharescan.result import AnalysisResult

__all__ = ["render_markdown"]


def render_markdown(result: AnalysisResult, top: int = 50) -> str:
    # The answer first, as in the terminal: what sharing reclaims, before any table.
    lines = ["# sharescan analysis", "", f"**{' '.join(headline(result))}**", "", "Units: KiB, MiB, GiB are 1024-based; exact byte counts are in the JSON report.", ""]
    lines += ["## Models", ""] + markdown_table(MODEL_HEADER, model_rows(result)) + [""]
    lines += ["## Totals", ""] + [f"- {line}" for line in summary_lines(result)] + [""]
    lines += [f"## Groups ({len(result.groups)})", ""]
    if result.groups:
        if len(result.groups) > top:
            lines += [f"Largest {top} shown.", ""]
        rows = [group_row(k, g, result) for k, g in enumerate(result.groups[:top], 1)]
        lines += markdown_table(GROUP_HEADER, rows)
    else:
        lines.append("No shared or duplicated tensors found.")
    lines.append("")
    if result.candidates:
        lines += ["## Candidates for tying (pairs not merged, best first)", ""] + markdown_table(CANDIDATE_HEADER, candidate_rows(result)) + [""]
    for m in result.models:
        if m.reused_initializers:
            names = ", ".join(f"`{n}` ({c} readers)" for n, c in m.reused_initializers)
            lines += [f"{m.path}: initializers already shared in the graph: {names}", ""]
    for line in nonfinite_lines(result):
        lines += [line, ""]
    if result.warnings:
        lines += ["## Warnings", ""] + [f"- {w}" for w in result.warnings] + [""]
    return "\n".join(lines)
