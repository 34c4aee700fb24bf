"""Groups -> the reclaimable bytes of each, per model and in total.

Every byte is counted once: aliases share one storage, and a storage claimed
by one group is never offered to a later detector, so summing groups cannot
double count. Row groups reclaim merged rows minus their index.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from sharescan.detect.aliased import FreedBytes, overlapping_views
from sharescan.digest import Digest
from sharescan.groups import RELATIONS, Candidate, Group
from sharescan.result import AnalysisResult, CandidateReport, GroupReport, Member, ModelReport, RowsReport, Settings, Totals
from sharescan.table import LoadedModel, TensorEntry

__all__ = ["account"]


def account(
    models: Sequence[LoadedModel],
    entries: Sequence[TensorEntry],
    groups: Sequence[Group],
    digests: Mapping[int, Digest],
    settings: Settings,
    candidates: Sequence[Candidate] = (),
    warnings: Sequence[str] = (),
) -> AnalysisResult:
    reclaimed_by_model = [0] * len(models)
    by_relation = dict.fromkeys(RELATIONS, 0)
    reports = []
    seen: set[tuple[int, str]] = set()
    # Views of one buffer: a removed view frees only the bytes no kept view needs.
    freed = FreedBytes(entries, [i for g in groups if g.rows is None and g.relation != "aliased" for i in g.members[1:]])

    def member(i: int, scale: float | None = None, transposed: bool = False) -> Member:
        e = entries[i]
        return Member(models[e.model].path, e.name, e.shape, e.dtype, scale, transposed)

    for g in groups:
        reclaimable = 0
        rows = None
        if g.rows is not None:
            shared = overlapping_views(entries, g.members)  # the same bytes, not duplicates
            for i, n in zip(g.members, g.rows.reclaimed):
                n = 0 if i in shared else n
                reclaimed_by_model[entries[i].model] += n
                reclaimable += n
            rows = RowsReport(g.rows.n_rows, g.rows.distinct_rows, g.rows.row_bytes, g.rows.index_bytes)
        elif g.relation != "aliased":
            for i in g.members[1:]:
                e = entries[i]
                storage = (e.model, e.storage)
                if storage in seen:  # guarded by construction; kept as a hard invariant
                    raise AssertionError(f"storage of {e.name} reclaimed twice")
                seen.add(storage)
                n = freed.free(i)
                reclaimable += n
                reclaimed_by_model[e.model] += n
        by_relation[g.relation] += reclaimable
        members = tuple(
            member(i, g.scales[k] if g.scales else None, bool(g.transposed and g.transposed[k]))
            for k, i in enumerate(g.members)
        )
        each = entries[g.members[0]].nbytes
        reports.append(GroupReport(g.relation, members, each, reclaimable, g.max_abs_error, g.rel_error, rows))
    order: dict[str, int] = {r: k for k, r in enumerate(RELATIONS)}  # keyed by GroupReport.relation (a str)
    reports.sort(key=lambda r: (-r.reclaimable_bytes, order[r.relation], r.members[0].model, r.members[0].name))

    model_reports = []
    for k, m in enumerate(models):
        own = [(i, e) for i, e in enumerate(entries) if e.model == k]
        unique: dict[str, int] = {}
        for _, e in own:
            unique[e.buffer_key] = max(unique.get(e.buffer_key, 0), e.stored_nbytes)
        nonfinite = tuple(e.name for i, e in own if i in digests and digests[i].nonfinite)
        model_reports.append(
            ModelReport(
                path=m.path,
                format=m.format,
                n_tensors=len(own),
                stored_bytes=sum(e.nbytes for _, e in own),
                unique_bytes=sum(unique.values()),
                reclaimable_bytes=reclaimed_by_model[k],
                file_bytes=m.file_bytes,
                nonfinite=nonfinite,
                reused_initializers=m.reused,
                files=m.files,
            )
        )
    totals = Totals(
        stored_bytes=sum(m.stored_bytes for m in model_reports),
        unique_bytes=sum(m.unique_bytes for m in model_reports),
        reclaimable_bytes=sum(reclaimed_by_model),
        by_relation=tuple(by_relation.items()),
    )
    candidate_reports = tuple(
        CandidateReport(member(c.a), member(c.b), c.transposed, c.rel_distance, c.max_abs_diff) for c in candidates
    )
    return AnalysisResult(tuple(model_reports), tuple(reports), totals, settings, candidate_reports, tuple(warnings))
