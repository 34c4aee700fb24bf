"""Groups -> the reclaimable bytes of each, per model and in total.

Every byte is counted once: aliases share one storage, and a storage claimed
by one group is never offered to a later detector, so summing groups cannot
double count. What a group reclaims is its relation's answer
(``Relation.reclaimed``); this module keeps the ledger they all draw on.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from sharescan import detect
from sharescan.detect.aliased import FreedBytes, overlapping_views
from sharescan.digest import Digest
from sharescan.groups import Candidate, Group
from sharescan.result import AnalysisResult, CandidateReport, GroupReport, Member, ModelReport, RowsReport, Settings, Totals
from sharescan.table import LoadedModel, TensorEntry

__all__ = ["account"]


class _Ledger:
    """Bytes reclaimed so far: views of one buffer free only what no kept view needs, each storage once."""

    def __init__(self, entries: Sequence[TensorEntry], groups: Sequence[Group]) -> None:
        self.entries = entries
        dropped = [i for g in groups if detect.relation_named(g.relation).drops_members for i in g.members[1:]]
        self.freed = FreedBytes(entries, dropped)
        self.seen: set[tuple[int, str]] = set()

    def free(self, i: int) -> int:
        e = self.entries[i]
        storage = (e.model, e.storage)
        if storage in self.seen:  # guarded by construction; kept as a hard invariant
            raise AssertionError(f"storage of {e.name} reclaimed twice")
        self.seen.add(storage)
        return self.freed.free(i)

    def shared_views(self, members: Sequence[int]) -> set[int]:
        return overlapping_views(self.entries, members)


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
    by_relation = {relation.name: 0 for relation in detect.RELATIONS}
    across_models = 0  # reclaimed by groups whose members live in more than one model
    reports = []
    ledger = _Ledger(entries, groups)
    for g in groups:
        relation = detect.relation_named(g.relation)
        reclaimed = relation.reclaimed(g, ledger)
        for i, n in zip(g.members, reclaimed):
            reclaimed_by_model[entries[i].model] += n
        by_relation[g.relation] += sum(reclaimed)
        if len({entries[i].model for i in g.members}) > 1:
            across_models += sum(reclaimed)
        members = tuple(_member(models, entries, i, *relation.member_fields(g.transform(k)), g.transform(k).permutation) for k, i in enumerate(g.members))
        reports.append(_group_report(entries, g, members, sum(reclaimed)))
    order = {name: k for k, name in enumerate(by_relation)}
    reports.sort(key=lambda r: (-r.reclaimable_bytes, order[r.relation], r.members[0].model, r.members[0].name))
    # Each model's entries gathered in one pass: a scan per model was
    # quadratic (0.4 s of a 1,000-model zoo's report).
    own_entries: list[list[int]] = [[] for _ in models]
    for i, e in enumerate(entries):
        own_entries[e.model].append(i)
    model_reports = [_model_report(m, own_entries[k], entries, digests, reclaimed_by_model[k]) for k, m in enumerate(models)]
    totals = Totals(
        stored_bytes=sum(m.stored_bytes for m in model_reports),
        unique_bytes=sum(m.unique_bytes for m in model_reports),
        reclaimable_bytes=sum(reclaimed_by_model),
        by_relation=tuple(by_relation.items()),
        reclaimable_within_models_bytes=sum(reclaimed_by_model) - across_models,
        reclaimable_across_models_bytes=across_models,
    )
    candidate_reports = tuple(
        CandidateReport(_member(models, entries, c.a), _member(models, entries, c.b), c.transposed, c.rel_distance, c.max_abs_diff, c.saved_bytes, c.score)
        for c in candidates
    )
    return AnalysisResult(tuple(model_reports), tuple(reports), totals, settings, candidate_reports, tuple(warnings))


def _member(
    models: Sequence[LoadedModel],
    entries: Sequence[TensorEntry],
    i: int,
    scale: float | None = None,
    transposed: bool = False,
    permutation: tuple[tuple[int, tuple[int, ...]], ...] = (),
) -> Member:
    """Entry ``i`` as a report member (its relation's ``member_fields`` give scale and transposed; its transform, any permutation)."""
    e = entries[i]
    return Member(models[e.model].path, e.name, e.shape, e.dtype, scale, transposed, permutation)


def _group_report(entries: Sequence[TensorEntry], g: Group, members: tuple[Member, ...], reclaimable: int) -> GroupReport:
    rows = None if g.rows is None else RowsReport(g.rows.n_rows, g.rows.distinct_rows, g.rows.row_bytes, g.rows.index_bytes)
    each = entries[g.members[0]].nbytes
    return GroupReport(g.relation, members, each, reclaimable, g.max_abs_error, g.rel_error, rows)


def _model_report(m: LoadedModel, indices: Sequence[int], entries: Sequence[TensorEntry], digests: Mapping[int, Digest], reclaimable: int) -> ModelReport:
    own = [(i, entries[i]) for i in indices]
    unique: dict[str, int] = {}
    for _, e in own:
        unique[e.buffer_key] = max(unique.get(e.buffer_key, 0), e.stored_nbytes)
    nonfinite = tuple(e.name for i, e in own if i in digests and digests[i].nonfinite)
    return ModelReport(
        path=m.path,
        format=m.format,
        n_tensors=len(own),
        stored_bytes=sum(e.nbytes for _, e in own),
        unique_bytes=sum(unique.values()),
        reclaimable_bytes=reclaimable,
        file_bytes=m.file_bytes,
        nonfinite=nonfinite,
        reused_initializers=m.reused,
        files=m.files,
    )
