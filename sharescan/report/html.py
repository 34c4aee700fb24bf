"""The same report as one self-contained HTML page, to read at a glance.

The page works offline: CSS, JavaScript and charts (inline SVG) are written
into it, and a Content-Security-Policy forbids every fetch, so opening it
sends nothing anywhere. Every name from a model is escaped. The JSON result
is embedded whole (``<script type="application/json" id="sharescan-result">``),
so a reader or a test can check the page against it.

:func:`distance_heatmap` derives the heatmap's cells from the result's groups
and candidates; :func:`render_html` only lays out what it is given.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from html import escape

from sharescan.report.rows import member_label
from sharescan.result import AnalysisResult, GroupReport, Member
from sharescan.units import human_bytes

__all__ = ["HeatmapCell", "Heatmap", "distance_heatmap", "render_html"]

# Tensors drawn in the heatmap: beyond ~40 rows the cells are too small to read.
HEATMAP_LIMIT = 40
_CELL = 14  # px per heatmap cell
_LABEL_W = 260  # px for row labels
_MEMBERS_SHOWN = 4  # group members listed before the rest fold away


@dataclass(frozen=True)
class HeatmapCell:
    row: int  # index into Heatmap.labels
    col: int
    distance: float  # relative L2 distance (after the group's transform for merged pairs)
    candidate: bool  # a pair not merged but worth tying (a candidate)
    relation: str  # the group's relation, or "candidate"


@dataclass(frozen=True)
class Heatmap:
    labels: tuple[str, ...]  # one per tensor, "m0:name [shape dtype]"
    models: tuple[int, ...]  # each tensor's model index
    cells: tuple[HeatmapCell, ...]  # known distances; both (i, j) and (j, i) listed
    dropped: int  # tensors left out to keep the map readable


def _key(m: Member) -> tuple[str, str]:
    return (m.model, m.name)


def _pairs(result: AnalysisResult) -> list[tuple[Member, Member, float, bool, str]]:
    """Known distances: each group's kept tensor with each member, and each candidate pair."""
    out: list[tuple[Member, Member, float, bool, str]] = []
    for c in result.candidates:
        out.append((c.a, c.b, c.rel_distance, True, "candidate"))
    for g in result.groups:
        if g.relation == "rows":  # rows are shared, not whole tensors: no tensor distance
            continue
        kept = g.members[0]
        out += [(kept, m, g.rel_error, False, g.relation) for m in g.members[1:] if _key(m) != _key(kept)]
    return out


def distance_heatmap(result: AnalysisResult, limit: int = HEATMAP_LIMIT) -> Heatmap:
    """Relative distances between same-shape tensors the analysis compared, within and across models.

    Candidates come first, then groups by reclaimable bytes, until ``limit``
    tensors are placed; a pair is drawn only when both ends are. Tensors are
    ordered by shape (a transpose counts as the same shape), then model, then
    name, so each shape forms one block on the diagonal.
    """
    model_index = {m.path: k for k, m in enumerate(result.models)}
    chosen: dict[tuple[str, str], Member] = {}
    pairs = _pairs(result)
    total: set[tuple[str, str]] = set()
    for a, b, *_ in pairs:
        total.update((_key(a), _key(b)))
        if _key(a) in chosen and _key(b) in chosen:
            continue
        need = [m for m in (a, b) if _key(m) not in chosen]
        if len(chosen) + len(need) <= limit:
            chosen.update((_key(m), m) for m in need)
    order = sorted(chosen.values(), key=lambda m: (tuple(sorted(m.shape)), model_index.get(m.model, 0), m.name))
    index = {_key(m): k for k, m in enumerate(order)}
    cells: dict[tuple[int, int], HeatmapCell] = {}
    for a, b, distance, candidate, relation in pairs:
        i, j = index.get(_key(a)), index.get(_key(b))
        if i is None or j is None or (i, j) in cells:
            continue
        for r, c in ((i, j), (j, i)):
            cells[(r, c)] = HeatmapCell(r, c, distance, candidate, relation)
    labels = tuple(member_label(Member(m.model, m.name, m.shape, m.dtype), result) for m in order)
    return Heatmap(labels, tuple(model_index.get(m.model, 0) for m in order), tuple(cells[k] for k in sorted(cells)), len(total) - len(order))


# ---------------------------------------------------------------- rendering

_CSS = """
body{font:14px/1.4 system-ui,-apple-system,"Segoe UI",sans-serif;margin:24px;color:#1b1f24;background:#fff;max-width:1200px}
h1{font-size:22px;margin:0 0 4px}h2{font-size:17px;margin:28px 0 8px;border-bottom:1px solid #d0d7de;padding-bottom:4px}
.note{color:#57606a;font-size:12px}
.cards{display:flex;gap:12px;flex-wrap:wrap;margin:12px 0}
.card{border:1px solid #d0d7de;border-radius:6px;padding:10px 14px;min-width:170px}
.card .k{color:#57606a;font-size:12px}.card .v{font-size:20px;font-weight:600}.card .b{font-size:12px;color:#57606a;font-variant-numeric:tabular-nums}
table{border-collapse:collapse;font-size:13px;font-variant-numeric:tabular-nums}
th,td{border:1px solid #d0d7de;padding:3px 8px;text-align:left;vertical-align:top}
td.n{text-align:right;white-space:nowrap}
th{background:#f6f8fa}
table.sortable th{cursor:pointer;user-select:none}
table.sortable th[aria-sort=ascending]::after{content:" \\25B2"}
table.sortable th[aria-sort=descending]::after{content:" \\25BC"}
td.members{max-width:520px;word-break:break-all}
.members div{white-space:nowrap;overflow:hidden;text-overflow:ellipsis}
svg text{font:12px system-ui,sans-serif;fill:#1b1f24}
.warn{color:#9a6700}
"""

# Sorting in place: each cell's data-sort holds the value to compare (numbers as numbers).
_JS = """
document.querySelectorAll('table.sortable').forEach(function (table) {
  var heads = table.querySelectorAll('th');
  heads.forEach(function (th, col) {
    th.addEventListener('click', function () {
      var dir = th.getAttribute('aria-sort') === 'ascending' ? 'descending' : 'ascending';
      heads.forEach(function (h) { h.removeAttribute('aria-sort'); });
      th.setAttribute('aria-sort', dir);
      var body = table.tBodies[0];
      var rows = Array.prototype.slice.call(body.rows);
      var numeric = th.dataset.type === 'number';
      rows.sort(function (a, b) {
        var x = a.cells[col].dataset.sort, y = b.cells[col].dataset.sort;
        var d = numeric ? Number(x) - Number(y) : (x < y ? -1 : x > y ? 1 : 0);
        return dir === 'ascending' ? d : -d;
      });
      rows.forEach(function (r) { body.appendChild(r); });
    });
  });
});
"""

_RELATION_COLORS = {"aliased": "#8c959f", "identical": "#0969da", "transposed": "#1a7f37", "negated": "#8250df", "scaled": "#bf3989", "near": "#bc4c00", "rows": "#9a6700"}
_MODEL_COLORS = ("#0969da", "#bc4c00", "#1a7f37", "#8250df", "#bf3989", "#9a6700")


def _bytes(n: int) -> str:
    """Exact bytes with the binary unit beside them: '250,388 B (244.52 KiB)'."""
    return f"{n:,} B" + (f" ({human_bytes(n)})" if n >= 1024 else "")


def _pct(part: int, whole: int) -> str:
    return f"{100 * part / whole:.2f}%" if whole else "0.00%"


def _summary(result: AnalysisResult) -> list[str]:
    t = result.totals
    cards = (
        ("stored", "stored (every name counted)", t.stored_bytes, ""),
        ("unique", "unique (aliases counted once)", t.unique_bytes, ""),
        ("reclaimable", "reclaimable by sharing", t.reclaimable_bytes, f"{100 * t.reclaimable_fraction:.2f}% of unique"),
        ("after", "after sharing", t.after_bytes, ""),
    )
    out = ['<div class="cards">']
    for key, title, n, extra in cards:
        pct = f'<div class="b" data-field="{key}_pct">{escape(extra)}</div>' if extra else ""
        out.append(f'<div class="card" id="total-{key}"><div class="k">{escape(title)}</div><div class="v">{escape(human_bytes(n))}</div><div class="b" data-field="{key}">{n:,} B</div>{pct}</div>')
    out.append("</div>")
    s = result.settings
    tol = f"near tensors within {s.tol:g}" if s.tol is not None else "exact relations only"
    row_tol = f"rows within {s.row_tol:g}" if s.row_tol is not None else "identical rows only"
    out.append(f'<p class="note">Tolerances (relative L2 distance): {escape(tol)}; {escape(row_tol)}. KiB, MiB, GiB are 1024-based.</p>')
    return out


def _models_table(result: AnalysisResult) -> list[str]:
    head = ("#", "model", "format", "tensors", "stored", "unique", "reclaimable", "% of unique", "file")
    out = ['<table id="models"><thead><tr>' + "".join(f"<th>{escape(h)}</th>" for h in head) + "</tr></thead><tbody>"]
    for k, m in enumerate(result.models):
        cells = [
            f"<td>m{k}</td>",
            f"<td>{escape(m.path)}</td>",
            f"<td>{escape(m.format)}</td>",
            f'<td class="n">{m.n_tensors:,}</td>',
            f'<td class="n" data-field="stored_bytes">{m.stored_bytes:,} B</td>',
            f'<td class="n" data-field="unique_bytes">{m.unique_bytes:,} B</td>',
            f'<td class="n" data-field="reclaimable_bytes">{m.reclaimable_bytes:,} B</td>',
            f'<td class="n">{_pct(m.reclaimable_bytes, m.unique_bytes)}</td>',
            f'<td class="n">{m.file_bytes:,} B</td>',
        ]
        out.append("<tr>" + "".join(cells) + "</tr>")
    return out + ["</tbody></table>"]


def _group_cells(k: int, g: GroupReport, result: AnalysisResult) -> str:
    relation = g.relation if g.rows is None else f"rows ({g.rows.n_rows:,} -> {g.rows.distinct_rows:,} distinct)"
    labels = [f'<div title="{escape(member_label(m, result))}">{escape(member_label(m, result))}</div>' for m in g.members]
    members = "".join(labels[:_MEMBERS_SHOWN])
    if len(labels) > _MEMBERS_SHOWN:  # long lists fold so that one group cannot push the rest off the screen
        members += f"<details><summary>and {len(labels) - _MEMBERS_SHOWN} more</summary>{''.join(labels[_MEMBERS_SHOWN:])}</details>"
    cells = [
        f'<td class="n" data-sort="{k}">{k}</td>',
        f'<td data-sort="{escape(g.relation)}">{escape(relation)}</td>',
        f'<td class="n" data-sort="{len(g.members)}">{len(g.members)}</td>',
        f'<td class="members" data-sort="{escape(g.members[0].name)}">{members}</td>',
        f'<td class="n" data-sort="{g.bytes_each}">{g.bytes_each:,} B</td>',
        f'<td class="n" data-sort="{g.reclaimable_bytes}">{g.reclaimable_bytes:,} B</td>',
        f'<td class="n" data-sort="{g.max_abs_error!r}">{g.max_abs_error:.3g}</td>',
        f'<td class="n" data-sort="{g.rel_error!r}">{g.rel_error:.3g}</td>',
    ]
    return "<tr>" + "".join(cells) + "</tr>"


_GROUP_HEAD = (("#", "number"), ("relation", "text"), ("members", "number"), ("tensors (first is kept)", "text"), ("each", "number"), ("reclaimable", "number"), ("max abs err", "number"), ("rel err", "number"))


def _groups_table(result: AnalysisResult, top: int) -> list[str]:
    if not result.groups:
        return ["<p>No shared or duplicated tensors found.</p>"]
    out = [f'<p class="note">Largest {top} of {len(result.groups)} shown; the embedded JSON has all.</p>'] if len(result.groups) > top else []
    out.append('<p class="note">Click a column header to sort.</p>')
    out.append('<table id="groups" class="sortable"><thead><tr>' + "".join(f'<th data-type="{t}">{escape(h)}</th>' for h, t in _GROUP_HEAD) + "</tr></thead><tbody>")
    out += [_group_cells(k, g, result) for k, g in enumerate(result.groups[:top], 1)]
    return out + ["</tbody></table>"]


def _relation_bars(result: AnalysisResult) -> list[str]:
    """Reclaimable bytes per relation as horizontal bars, every relation listed."""
    rows = result.totals.by_relation
    largest = max((n for _, n in rows), default=0) or 1
    bar_w, row_h, label_w = 420, 24, 90
    height = row_h * len(rows) + 8
    out = [f'<svg id="relation-bars" role="img" aria-label="Reclaimable bytes by relation" width="{label_w + bar_w + 220}" height="{height}" xmlns="http://www.w3.org/2000/svg">']
    for k, (relation, n) in enumerate(rows):
        y = 4 + k * row_h
        w = round(bar_w * n / largest)
        color = _RELATION_COLORS.get(relation, "#57606a")
        out.append(f'<text x="{label_w - 8}" y="{y + 15}" text-anchor="end">{escape(relation)}</text>')
        out.append(f'<rect x="{label_w}" y="{y + 3}" width="{w}" height="{row_h - 8}" fill="{color}"><title>{escape(relation)}: {n:,} B</title></rect>')
        out.append(f'<text class="bar-label" data-relation="{escape(relation)}" x="{label_w + w + 6}" y="{y + 15}">{escape(_bytes(n))}</text>')
    return out + ["</svg>"]


def _heat_color(distance: float, top: float) -> str:
    """White-to-red by distance; exact (0) is a strong blue so merged pairs stand out."""
    if distance == 0:
        return "#0969da"
    t = min(1.0, distance / top) if top > 0 else 1.0
    g = round(235 - 175 * t)
    return f"rgb(250,{g},{round(g * 0.8)})"


def _heatmap(result: AnalysisResult) -> list[str]:
    heat = distance_heatmap(result)
    if not heat.labels:
        return ["<p>No same-shape tensors were compared (no groups or candidates).</p>"]
    n = len(heat.labels)
    top = max((c.distance for c in heat.cells), default=0.0)
    size = n * _CELL
    out = [
        '<p class="note">Relative L2 distance ||a - b|| / max(||a||, ||b||) between tensors the analysis compared: blue = merged exactly '
        "(after the group's transpose, negation or scale), white to red = farther apart (up to "
        f"{top:.3g}), outlined = closest pairs not merged (candidates for tying), light grey = not compared, darker grey = the tensor itself. Labels are coloured by model.</p>"
    ]
    if heat.dropped:
        out.append(f'<p class="note">{heat.dropped} more tensor(s) left out to keep the map readable; the JSON has all.</p>')
    out.append(f'<svg id="heatmap" role="img" aria-label="Distance heatmap" width="{_LABEL_W + size + 10}" height="{size + 10}" xmlns="http://www.w3.org/2000/svg">')
    out.append(f'<rect x="{_LABEL_W}" y="0" width="{size}" height="{size}" fill="#eaeef2"/>')
    for k, (label, model) in enumerate(zip(heat.labels, heat.models)):
        short = label if len(label) <= 40 else label[:39] + "\u2026"
        color = _MODEL_COLORS[model % len(_MODEL_COLORS)]
        out.append(f'<text x="{_LABEL_W - 6}" y="{k * _CELL + 11}" text-anchor="end" style="font-size:10px;fill:{color}">{escape(short)}<title>{escape(label)}</title></text>')
    # The diagonal (a tensor with itself) in a quiet tone, so each shape's block is easy to find.
    out += [f'<rect class="self" x="{_LABEL_W + k * _CELL + 1}" y="{k * _CELL + 1}" width="{_CELL - 2}" height="{_CELL - 2}" fill="#c8d1da"/>' for k in range(n)]
    for c in heat.cells:
        x, y = _LABEL_W + c.col * _CELL, c.row * _CELL
        stroke = ' stroke="#1b1f24" stroke-width="2"' if c.candidate else ""
        tip = f"{heat.labels[c.row]} vs {heat.labels[c.col]}: {c.relation}, distance {c.distance:.4g}"
        kind = "candidate" if c.candidate else "merged"
        out.append(f'<rect class="cell {kind}" x="{x + 1}" y="{y + 1}" width="{_CELL - 2}" height="{_CELL - 2}" fill="{_heat_color(c.distance, top)}"{stroke}><title>{escape(tip)}</title></rect>')
    return out + ["</svg>"]


def _candidates_table(result: AnalysisResult) -> list[str]:
    if not result.candidates:
        return []
    out = ["<h2>Candidates for tying (pairs not merged, best first)</h2>", '<table id="candidates"><thead><tr><th>#</th><th>a</th><th>b</th><th>rel distance</th><th>max abs diff</th></tr></thead><tbody>']
    for k, c in enumerate(result.candidates, 1):
        b = member_label(c.b, result) + (" (vs a.T)" if c.transposed else "")
        out.append(f'<tr><td>{k}</td><td>{escape(member_label(c.a, result))}</td><td>{escape(b)}</td><td class="n">{c.rel_distance:.4g}</td><td class="n">{c.max_abs_diff:.4g}</td></tr>')
    return out + ["</tbody></table>"]


def _embedded_json(result: AnalysisResult) -> str:
    # "<", ">" and "&" as \\u escapes: the text stays the same JSON and can never close the script element.
    text = json.dumps(result.to_dict(), indent=1).replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")
    return f'<script type="application/json" id="sharescan-result">\n{text}\n</script>'


def render_html(result: AnalysisResult, top: int = 50) -> str:
    """The whole page: summary, models, groups (sortable), bytes by relation, distance heatmap, candidates, warnings."""
    policy = "default-src 'none'; style-src 'unsafe-inline'; script-src 'unsafe-inline'; img-src data:"
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f'<meta http-equiv="Content-Security-Policy" content="{policy}">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        "<title>sharescan analysis</title>",
        f"<style>{_CSS}</style></head><body>",
        "<h1>sharescan analysis</h1>",
        f'<p class="note">{len(result.models)} model(s), {len(result.groups)} group(s), {len(result.candidates)} candidate pair(s).</p>',
        "<h2>Summary</h2>",
        *_summary(result),
        "<h2>Models</h2>",
        *_models_table(result),
        "<h2>Reclaimable bytes by relation</h2>",
        *_relation_bars(result),
        "<h2>Distance between same-shape tensors</h2>",
        *_heatmap(result),
        f"<h2>Groups ({len(result.groups)})</h2>",
        *_groups_table(result, top),
        *_candidates_table(result),
    ]
    for m in result.models:
        if m.nonfinite:
            parts.append(f'<p class="warn">{escape(m.path)}: {len(m.nonfinite)} tensor(s) hold NaN or Inf, compared as bytes only.</p>')
    if result.warnings:
        parts += ["<h2>Warnings</h2>", "<ul>"] + [f'<li class="warn">{escape(w)}</li>' for w in result.warnings] + ["</ul>"]
    parts += [_embedded_json(result), f"<script>{_JS}</script>", "</body></html>"]
    return "\n".join(parts) + "\n"
