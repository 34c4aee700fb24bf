"""The zoo's result for people: the terminal (rich) and Markdown; JSON is ``ZooResult.to_dict``.

Both lead with the answer (input bytes, what a content-addressed store
keeps, what is reclaimable), then families (which models share which
tensors), the largest groups, the models with the most to reclaim, and the
models skipped with their reasons. Rows come from one set of helpers, so the
two forms never disagree.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Sequence
from typing import Any

from sharescan.report.layout import column_width, fit_label, print_line, print_phrases, shorten_middle, spare_width
from sharescan.report.markdown_table import markdown_table
from sharescan.units import human_bytes
from sharescan.zoo.result import ZooFamily, ZooGroup, ZooResult

__all__ = ["render_zoo_json", "render_zoo_terminal", "render_zoo_markdown", "zoo_headline", "FAMILY_HEADER", "GROUP_HEADER", "MODEL_HEADER"]

FAMILY_HEADER = ("#", "models", "shared tensors", "reclaimable")
GROUP_HEADER = ("#", "relation", "members (first is kept)", "each", "reclaimable", "rel error")
MODEL_HEADER = ("#", "model", "tensors", "bytes", "reclaimable")
_NAMES_SHOWN = 4  # tensor names a family row shows before "and N more"
_MODELS_SHOWN = 8  # models a family row shows before "and N more" (JSON lists all)
_MEMBERS_SHOWN = 6  # members a group row shows before "and N more" (JSON lists all)


def render_zoo_json(result: ZooResult) -> str:
    return json.dumps(result.to_dict(), indent=2) + "\n"


def zoo_headline(result: ZooResult) -> list[str]:
    """The answer as phrases (wrapped between phrases, never inside one)."""
    t = result.totals
    share = f" ({100 * t.reclaimable_bytes / t.input_bytes:.2f}%)" if t.input_bytes else ""
    models = f"{t.models} models" + (f" ({t.skipped} skipped)" if t.skipped else "") + ":"
    return [
        models, f"{human_bytes(t.input_bytes)} of tensors;",
        f"kept after sharing {human_bytes(t.unique_bytes)}", f"(bit-exact merges only: {human_bytes(t.exact_unique_bytes)};", f"identical tensors only: {human_bytes(t.content_addressed_bytes)});",
        f"reclaimable {human_bytes(t.reclaimable_bytes)}{share},", f"{human_bytes(t.reclaimable_across_models_bytes)} across models",
    ]


def _timing_line(result: ZooResult) -> str:
    t = result.timing
    if t.result_from_store:
        return f"Scanned in {t.seconds:.2f} s: nothing changed, the analysis came from the store ({t.from_store} models)."
    return f"Scanned in {t.seconds:.2f} s: {t.digested} model(s) digested, {t.from_store} from the store, {t.tensors_read} tensor read(s) to confirm groups."


def _family_names(result: ZooResult, f: ZooFamily) -> str:
    names: dict[str, None] = {}
    for k in f.groups:
        names.setdefault(result.groups[k].members[0].tensor, None)
    shown = list(names)[:_NAMES_SHOWN]
    more = len(names) - len(shown)
    return "\n".join(shown) + (f"\nand {more} more" if more > 0 else "")


def _family_models(f: ZooFamily) -> str:
    shown = list(f.models[:_MODELS_SHOWN])
    if len(f.models) > _MODELS_SHOWN:
        shown.append(f"and {len(f.models) - _MODELS_SHOWN} more")
    return "\n".join(shown)


def _family_rows(result: ZooResult) -> list[tuple[str, ...]]:
    return [(str(k), _family_models(f), _family_names(result, f), human_bytes(f.shared_bytes)) for k, f in enumerate(result.families, 1)]


def _member_lines(g: ZooGroup) -> list[tuple[str, str]]:
    out = []
    for m in g.members[:_MEMBERS_SHOWN]:
        how = " (transposed)" if m.transposed else (f" (x {m.scale:.6g})" if m.scale is not None else "")
        out.append((f"{m.model}: {m.tensor}", f"[{'x'.join(map(str, m.shape))} {m.dtype}]{how}"))
    if len(g.members) > _MEMBERS_SHOWN:
        out.append((f"and {len(g.members) - _MEMBERS_SHOWN} more", ""))
    return out


def _error_cell(g: ZooGroup) -> str:
    return "exact" if g.rel_error == 0 and g.max_abs_error == 0 else f"{g.rel_error:.2g}"


def _member_cell(name: str, rest: str, room: int) -> str:
    """``model: tensor [shape dtype]`` on one line if it fits, else the model on its line and the tensor below (names shortened in the middle)."""
    line = f"{name} {rest}".rstrip()
    if len(line) <= room:
        return line
    model, _, tensor = name.partition(": ")
    if not tensor:  # "and N more"
        return shorten_middle(line, room)
    return shorten_middle(f"{model}:", room) + "\n" + fit_label(tensor, rest, room)


def _model_rows(result: ZooResult, top: int) -> list[tuple[str, ...]]:
    ok = sorted((m for m in result.models if m.status == "ok"), key=lambda m: -m.reclaimable_bytes)[:top]
    return [(str(k), f"{m.path} ({m.format})", f"{m.tensors:,}", human_bytes(m.bytes), human_bytes(m.reclaimable_bytes)) for k, m in enumerate(ok, 1)]


def _skipped_lines(result: ZooResult) -> list[str]:
    return [f"{m.path}: {m.reason}" for m in result.models if m.status != "ok"]


# -- terminal ---------------------------------------------------------------


def render_zoo_terminal(result: ZooResult, console: Any, top: int = 20) -> None:
    say = functools.partial(print_line, console)
    print_phrases(console, zoo_headline(result))
    say("sharescan zoo (KiB/MiB/GiB = 1024-based)")
    if result.families:
        rows = _family_rows(result)[:top]
        room = _room(console.width, FAMILY_HEADER, rows, [1, 2])
        rows = [(r[0], *("\n".join(shorten_middle(line, room) for line in cell.split("\n")) for cell in r[1:3]), r[3]) for r in rows]
        console.print(_table(f"Families ({len(result.families)}): models that share tensors", FAMILY_HEADER, rows, separate_rows=True))
    else:
        say("No tensors shared across models.")
    groups = list(result.groups[:top])
    if groups:
        numbers = [(str(k), g.relation, "", human_bytes(g.bytes_each), human_bytes(g.bytes_reclaimable), _error_cell(g)) for k, g in enumerate(groups, 1)]
        room = _room(console.width, GROUP_HEADER, numbers, [2])
        rows = [(*r[:2], "\n".join(_member_cell(name, rest, room) for name, rest in _member_lines(g)), *r[3:]) for r, g in zip(numbers, groups)]
        console.print(_table(f"Groups ({len(result.groups)}), largest first", GROUP_HEADER, rows, separate_rows=True))
        if len(result.groups) > top:
            say(f"{len(result.groups) - top} more group(s) (--top {top} shown; --json lists all)")
    models = _model_rows(result, top)
    if models:
        room = _room(console.width, MODEL_HEADER, [(r[0], "", *r[2:]) for r in models], [1])
        rows = [(r[0], shorten_middle(r[1], room), *r[2:]) for r in models]
        console.print(_table("Models, most reclaimable first", MODEL_HEADER, rows))
    skipped = _skipped_lines(result)
    if skipped:
        say(f"Skipped ({len(skipped)}):")
        for line in skipped:
            say(f"  {line}")
    say(_timing_line(result))


def _room(width: int, header: Sequence[str], rows: Sequence[Sequence[str]], flexible: Sequence[int]) -> int:
    fixed = [column_width(h, [r[k] for r in rows]) for k, h in enumerate(header) if k not in flexible]
    return spare_width(width, fixed, len(flexible))


def _table(title: str, header: Sequence[str], rows: Sequence[Sequence[str]], separate_rows: bool = False) -> Any:
    from rich import box
    from rich.markup import escape
    from rich.table import Table

    table = Table(title=title, title_justify="left", box=box.SIMPLE_HEAD, show_edge=False, show_lines=separate_rows, pad_edge=False)
    for name in header:
        table.add_column(name, overflow="ellipsis", min_width=max(len(w) for w in name.split()))
    for row in rows:
        table.add_row(*[escape(c) for c in row])  # names are data, not markup
    return table


# -- Markdown ---------------------------------------------------------------


def render_zoo_markdown(result: ZooResult, top: int = 20) -> str:
    lines = ["# sharescan zoo", "", "Units: KiB, MiB, GiB are 1024-based; exact byte counts are in the JSON report.", ""]
    lines += [" ".join(zoo_headline(result)), ""]
    t = result.totals
    lines += ["## Totals", ""]
    lines += [
        f"- models: {t.models} ({t.skipped} skipped)",
        f"- tensor bytes of the readable models: {human_bytes(t.input_bytes)} ({human_bytes(t.file_bytes)} on disk)",
        f"- kept by a content-addressed store after sharescan's merges: {human_bytes(t.unique_bytes)}",
        f"- kept with bit-exact merges only (no near tensors or rows): {human_bytes(t.exact_unique_bytes)}",
        f"- kept by a store keyed by each tensor's bytes (identical copies merged, nothing else): {human_bytes(t.content_addressed_bytes)}",
        f"- reclaimable: {human_bytes(t.reclaimable_bytes)} ({human_bytes(t.reclaimable_across_models_bytes)} across models); by relation: "
        + ", ".join(f"{name} {human_bytes(n)}" for name, n in t.by_relation),
        "",
    ]
    lines += [f"## Families ({len(result.families)})", ""]
    if result.families:
        lines += markdown_table(FAMILY_HEADER, _family_rows(result)[:top]) + [""]
    else:
        lines += ["No tensors shared across models.", ""]
    lines += [f"## Groups ({len(result.groups)})", ""]
    if result.groups:
        if len(result.groups) > top:
            lines += [f"Largest {top} shown; the JSON report lists all.", ""]
        rows = [(str(k), g.relation, "\n".join(f"{a} {b}" for a, b in _member_lines(g)), human_bytes(g.bytes_each), human_bytes(g.bytes_reclaimable), _error_cell(g)) for k, g in enumerate(result.groups[:top], 1)]
        lines += markdown_table(GROUP_HEADER, rows) + [""]
    else:
        lines += ["No shared or duplicated tensors found.", ""]
    lines += ["## Models, most reclaimable first", ""] + markdown_table(MODEL_HEADER, _model_rows(result, top)) + [""]
    skipped = _skipped_lines(result)
    if skipped:
        lines += [f"## Skipped ({len(skipped)})", ""] + [f"- {s}" for s in skipped] + [""]
    if result.warnings:
        lines += ["## Warnings", ""] + [f"- {w}" for w in result.warnings] + [""]
    lines += [_timing_line(result), ""]
    return "\n".join(lines)
