"""Cells shared by the terminal and Markdown tables, so both say the same thing."""

from __future__ import annotations

from sharescan.result import AnalysisResult, GroupReport, Member
from sharescan.units import human_bytes

__all__ = ["member_label", "member_parts", "headline", "relation_lines", "error_cell", "group_row", "model_rows", "summary_lines", "candidate_rows", "nonfinite_lines", "GROUP_HEADER", "MODEL_HEADER", "CANDIDATE_HEADER"]

GROUP_HEADER = ("#", "relation", "members (first is kept)", "each", "reclaimable", "max abs err", "rel err")
CANDIDATE_HEADER = ("#", "a", "b", "rel distance", "max abs diff")
MODEL_HEADER = ("#", "model", "format", "tensors", "stored", "unique", "reclaimable", "file")


def member_parts(m: Member, result: AnalysisResult) -> tuple[str, str]:
    """A member as (name, what it is): ``m0:blocks.0.fc1.weight``, ``[192x48 float32]``.

    The name is one word a table must never split; the rest may go on its own line.
    """
    shape = "x".join(str(d) for d in m.shape) or "scalar"
    name, rest = m.name, f"[{shape} {m.dtype}]"
    if len(result.models) > 1:
        index = next(k for k, r in enumerate(result.models) if r.path == m.model)
        name = f"m{index}:{name}"
    if m.scale is not None and m.scale != 1.0:
        rest += f" = {m.scale:.6g} x first"
    if m.transposed:
        rest += " ~ first.T"
    permuted = [("rows", "cols")[axis] for axis, _ in m.permutation]
    if permuted:
        rest += f" = first, {' and '.join(permuted)} permuted"
    return name, rest


def member_label(m: Member, result: AnalysisResult) -> str:
    name, rest = member_parts(m, result)
    return f"{name} {rest}"


def headline(result: AnalysisResult) -> list[str]:
    """The answer, as phrases of one line: what sharing reclaims, what is left, and whether it lies within or across models.

    Phrases, so that a narrow terminal breaks the line between them, never inside a figure.
    """
    t = result.totals
    phrases = [f"Reclaimable: {human_bytes(t.reclaimable_bytes)}", f"({100 * t.reclaimable_fraction:.2f}% of unique),", f"{human_bytes(t.after_bytes)} after sharing"]
    if len(result.models) > 1:
        phrases[-1] += ";"
        phrases += [f"{human_bytes(t.reclaimable_across_models_bytes)} across models,", f"{human_bytes(t.reclaimable_within_models_bytes)} within"]
    return phrases


def relation_lines(g: GroupReport) -> str:
    """The relation cell in short lines, for narrow terminal columns."""
    if g.rows is None:
        return g.relation
    r = g.rows
    return f"rows\n{r.n_rows:,} -> {r.distinct_rows:,}\ndistinct\nindex {human_bytes(r.index_bytes)}"


def error_cell(g: GroupReport) -> str:
    """``exact``, or the largest absolute and relative errors on two lines."""
    if g.max_abs_error == 0 and g.rel_error == 0:
        return "exact"
    return f"{g.max_abs_error:.3g} abs\n{g.rel_error:.3g} rel"


def _relation_cell(g: GroupReport) -> str:
    if g.rows is None:
        return g.relation
    r = g.rows
    return f"rows\n{r.n_rows:,} -> {r.distinct_rows:,} distinct\n(index {human_bytes(r.index_bytes)})"


def group_row(k: int, g: GroupReport, result: AnalysisResult) -> tuple[str, ...]:
    return (
        str(k),
        _relation_cell(g),
        "\n".join(member_label(m, result) for m in g.members),
        human_bytes(g.bytes_each),
        human_bytes(g.reclaimable_bytes),
        f"{g.max_abs_error:.3g}",
        f"{g.rel_error:.3g}",
    )


def nonfinite_lines(result: AnalysisResult) -> list[str]:
    """Models whose tensors hold NaN or Inf: they are compared as bytes only."""
    out = []
    for m in result.models:
        if m.nonfinite:
            names = ", ".join(m.nonfinite[:8]) + (f" and {len(m.nonfinite) - 8} more" if len(m.nonfinite) > 8 else "")
            out.append(f"{m.path}: {len(m.nonfinite)} tensor(s) hold NaN or Inf, compared as bytes only: {names}")
    return out


def candidate_rows(result: AnalysisResult) -> list[tuple[str, ...]]:
    return [
        (str(k), member_label(c.a, result), member_label(c.b, result) + (" (vs a.T)" if c.transposed else ""), f"{c.rel_distance:.4g}", f"{c.max_abs_diff:.4g}")
        for k, c in enumerate(result.candidates, 1)
    ]


def model_rows(result: AnalysisResult) -> list[tuple[str, ...]]:
    return [
        (
            f"m{k}",
            m.path,
            m.format,
            str(m.n_tensors),
            human_bytes(m.stored_bytes),
            human_bytes(m.unique_bytes),
            human_bytes(m.reclaimable_bytes),
            human_bytes(m.file_bytes),
        )
        for k, m in enumerate(result.models)
    ]


def summary_lines(result: AnalysisResult) -> list[str]:
    t = result.totals
    lines = [
        f"stored (every name counted): {t.stored_bytes:,} B ({human_bytes(t.stored_bytes)})",
        f"unique (aliases counted once): {t.unique_bytes:,} B ({human_bytes(t.unique_bytes)})",
        f"reclaimable by sharing: {t.reclaimable_bytes:,} B ({human_bytes(t.reclaimable_bytes)}, {100 * t.reclaimable_fraction:.2f}% of unique)",
        f"after sharing: {t.after_bytes:,} B ({human_bytes(t.after_bytes)})",
    ]
    parts = [f"{rel} {human_bytes(n)}" for rel, n in t.by_relation if rel != "aliased"]
    aliased = sum(1 for g in result.groups if g.relation == "aliased")
    lines.append("by relation: " + ", ".join(parts) + f"; {aliased} aliased group(s) already shared")
    s = result.settings
    tol = f"near tensors within {s.tol:g}" if s.tol is not None else "exact relations only"
    row_tol = f"rows within {s.row_tol:g}" if s.row_tol is not None else "identical rows only"
    lines.append(f"tolerances (relative L2 distance): {tol}; {row_tol}")
    return lines
