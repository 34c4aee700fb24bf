"""An analysis of the readable models, plus the skipped ones -> the zoo's result.

Families are the connected parts of the graph whose nodes are models and
whose edges are groups with members in several models: models that share
(or nearly share) tensors, directly or through another. Byte totals follow
analyze's accounting: each model's storages once, every merged byte once.
"""

from __future__ import annotations

from collections.abc import Sequence

from sharescan import detect
from sharescan.result import AnalysisResult, GroupReport
from sharescan.zoo.records import STATUS_SKIPPED, ModelRecord
from sharescan.zoo.result import ZooFamily, ZooGroup, ZooMember, ZooModel, ZooResult, ZooTotals

__all__ = ["summarise", "families_of"]


def summarise(listed: Sequence[tuple[str, ModelRecord]], analysis: AnalysisResult | None, tol: float | None, row_tol: float | None) -> ZooResult:
    """``listed``: (label, record) of every model in listing order; ``analysis``: of the readable ones, in that order (None: none readable)."""
    reports = iter(analysis.models if analysis is not None else ())
    models = []
    for label, record in listed:
        if not record.ok:
            models.append(ZooModel(label, record.format, 0, 0, 0, 0, STATUS_SKIPPED, record.reason))
            continue
        m = next(reports)
        models.append(ZooModel(label, m.format, m.unique_bytes, m.file_bytes, m.n_tensors, m.reclaimable_bytes, "ok"))
    groups = tuple(_group(g) for g in analysis.groups) if analysis is not None else ()
    by_relation = analysis.totals.by_relation if analysis is not None else tuple((r.name, 0) for r in detect.RELATIONS)
    input_bytes = analysis.totals.unique_bytes if analysis is not None else 0
    reclaimable = analysis.totals.reclaimable_bytes if analysis is not None else 0
    identical = dict(by_relation).get("identical", 0)
    # Bit-exact merges: every group but near ones, and permuted or rows groups only where they merged nothing near.
    exact = sum(g.bytes_reclaimable for g in groups if g.relation != "near" and g.rel_error == 0 and g.max_abs_error == 0)
    totals = ZooTotals(
        models=len(models),
        skipped=sum(1 for m in models if m.status == STATUS_SKIPPED),
        input_bytes=input_bytes,
        unique_bytes=input_bytes - reclaimable,
        exact_unique_bytes=input_bytes - exact,
        content_addressed_bytes=input_bytes - identical,
        reclaimable_bytes=reclaimable,
        reclaimable_across_models_bytes=analysis.totals.reclaimable_across_models_bytes if analysis is not None else 0,
        file_bytes=sum(m.file_bytes for m in models),
        by_relation=tuple(by_relation),
    )
    warnings = tuple(analysis.warnings) if analysis is not None else ()
    return ZooResult(tuple(models), groups, families_of(groups), totals, {"tol": tol, "row_tol": row_tol}, warnings)


def _group(g: GroupReport) -> ZooGroup:
    members = tuple(ZooMember(m.model, m.name, m.shape, m.dtype, m.transposed, m.scale) for m in g.members)
    return ZooGroup(g.relation, g.reclaimable_bytes, g.bytes_each, members, g.rel_error, g.max_abs_error, len({m.model for m in members}) > 1)


def families_of(groups: Sequence[ZooGroup]) -> tuple[ZooFamily, ...]:
    """Models linked by cross-model groups, most shared bytes first."""
    parent: dict[str, str] = {}

    def root(m: str) -> str:
        parent.setdefault(m, m)
        while parent[m] != m:
            parent[m] = parent[parent[m]]
            m = parent[m]
        return m

    across = [k for k, g in enumerate(groups) if g.across_models]
    for k in across:
        first = root(groups[k].members[0].model)
        for m in groups[k].members[1:]:
            other = root(m.model)
            if other != first:
                parent[other] = first
    by_root: dict[str, list[int]] = {}
    for k in across:
        by_root.setdefault(root(groups[k].members[0].model), []).append(k)
    families = []
    for ks in by_root.values():
        seen: dict[str, None] = {}
        for k in ks:
            for m in groups[k].members:
                seen.setdefault(m.model, None)
        families.append(ZooFamily(tuple(seen), sum(groups[k].bytes_reclaimable for k in ks), tuple(ks)))
    families.sort(key=lambda f: (-f.shared_bytes, -len(f.models), f.models))
    return tuple(families)
