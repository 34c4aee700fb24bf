"""Near-equal tensors: same shape (or transposed), relative distance <= tol.

Candidates come from the grid samples: each sample is scaled to a unit
vector and searched for neighbours (``close_pairs``), so no two tensors are
compared unless their samples are close. Only candidates are read again and
measured exactly: ``||a - b|| / max(||a||, ||b||)``.

The sample distance estimates the true one. A pair is a candidate up to
``search.MARGIN`` times the tolerance, so ordinary (dense) differences are never
missed; a difference concentrated in a few elements that the sample happens
to hit can overstate the distance and be missed.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from sharescan.detect.common import Distance, PairMeasure, measure_pairs
from sharescan.detect.relation import BaseRelation, Rebuild, Scope
from sharescan.detect.search import MARGIN, sample_points, search_vectors
from sharescan.digest import Digest
from sharescan.groups import SAME, TRANSPOSE, Group, Transform
from sharescan.neighbors import crowd_leaders, unit_rows
from sharescan.table import TensorEntry

__all__ = ["find_near", "Edge", "Near", "RELATION"]

Edge = tuple[int, int, bool]  # (a, b, b is compared with a's transpose), a before b in unit order


# A crowd attaches to its leader when their unit samples are this many
# tolerances apart: unit vectors of two tensors at relative distance t are
# within 2t, so members attached are estimated near; the exact measure decides.
ATTACH = 2.0
_NORM_SLACK = 1e-5  # relative rounding of a digest norm summed in float32 blocks, with room to spare


def _edge(points: list[tuple[int, bool, np.ndarray]], order: Mapping[int, int], p: int, q: int) -> Edge | None:
    (ua, ta, _), (ub, tb, _) = points[p], points[q]
    if ua == ub or (ta and tb):
        return None
    first, second = (ua, ub) if order[ua] < order[ub] else (ub, ua)
    return (first, second, ta != tb)


def _plausible_edges(points: list[tuple[int, bool, np.ndarray]], order: Mapping[int, int], digests: Mapping[int, Digest], tol: float, p: np.ndarray, q: np.ndarray) -> list[Edge]:
    """``_edge`` of each point pair (p, q) whose norms allow the pair to be near, in the pairs' order.

    The search's pairs, up to hundreds of thousands in a zoo of fine-tunes,
    screened as arrays: the same edges and bound as ``_edge`` and ``worth``
    one pair at a time, which took a quarter of the near search.
    """
    units = np.array([u for u, _, _ in points], dtype=np.int64)
    flags = np.array([t for _, t, _ in points], dtype=bool)
    rank = np.array([order[u] for u in units], dtype=np.int64)
    norms = np.array([digests[u].norm for u in units], dtype=np.float64)
    ua, ub, ta, tb = units[p], units[q], flags[p], flags[q]
    na, nb = norms[p], norms[q]
    keep = (ua != ub) & ~(ta & tb) & (np.abs(na - nb) <= (tol + _NORM_SLACK) * np.maximum(na, nb))
    swap = rank[p] > rank[q]
    first, second = np.where(swap, ub, ua)[keep], np.where(swap, ua, ub)[keep]
    transposed = (ta != tb)[keep]
    return [(int(a), int(b), bool(t)) for a, b, t in zip(first, second, transposed)]


def find_near(entries: Sequence[TensorEntry], units: Sequence[int], digests: Mapping[int, Digest], tol: float, measure: PairMeasure = measure_pairs) -> list[Group]:
    """Near groups among ``units``; candidate pairs are measured by ``measure``, a batch at a time."""
    order = {u: k for k, u in enumerate(units)}
    verified: dict[tuple[int, int], tuple[bool, Distance]] = {}
    tried: set[tuple[int, int]] = set()

    def worth(edge: Edge | None) -> bool:
        """Whether the edge is to be measured (and, if so, it is marked tried)."""
        if edge is None:
            return False
        a, b, _ = edge
        if (a, b) in tried:
            return False
        tried.add((a, b))
        # | ||a|| - ||b|| | <= ||a - b||: norms further apart than tol cannot
        # be near. In a zoo of fine-tunes most sample-close pairs end here,
        # before reading both tensors (the digest's norm is summed in float32
        # blocks: the slack covers its rounding).
        na, nb = digests[a].norm, digests[b].norm
        return abs(na - nb) <= (tol + _NORM_SLACK) * max(na, nb)

    def measured(edges: list[Edge]) -> None:
        for (a, b, t), d in zip(edges, measure(entries, edges) if edges else ()):
            # Equal by value but not by bits (only zeros' signs differ): no
            # tolerance bounds what that merge changes (1/x: +inf to -inf), and
            # a near group at error 0 would read as identical. Left unmerged.
            if d.relative <= tol and not (d.diff_norm == 0 and d.zero_signs):
                verified[(a, b)] = (t, d)

    def verify(edge: Edge | None) -> bool:
        if worth(edge):
            assert edge is not None
            measured([edge])
        return edge is not None and (edge[0], edge[1]) in verified

    # Two batches: every crowd member against its leader, then the pairs the
    # search finds among the points no leader confirmed. A pair is measured
    # once, and always as the same (a, b, transposed) whichever bucket meets
    # it (only a square tensor meets another both ways, in one bucket, where
    # leaders come first as before), so batching changes no answer.
    crowds = []
    for points in sample_points(entries, units, digests).values():
        if len(points) < 2:
            continue
        vectors = np.array([g.reshape(-1) for _, _, g in points])
        unit, ok = unit_rows(vectors)
        index = np.flatnonzero(ok)
        # Many mutually near tensors are measured against one leader each,
        # not pair by pair; a member its leader does not confirm is searched
        # like any other point.
        leader = crowd_leaders(unit[index], ATTACH * tol)
        free = leader == np.arange(len(index))
        led = [(k, _edge(points, order, index[leader[k]], index[k])) for k in np.flatnonzero(~free)]
        crowds.append((points, vectors, index, leader, free, led))
    measured([edge for *_, led in crowds for _, edge in led if edge is not None and worth(edge)])
    # Crowd members confirmed near their leader: (leader unit, member unit).
    attached: list[tuple[int, int]] = []
    searched_edges: list[Edge] = []
    for points, vectors, index, leader, free, led in crowds:
        for k, edge in led:
            if edge is not None and (edge[0], edge[1]) in verified:
                attached.append((points[index[leader[k]]][0], points[index[k]][0]))
            else:
                free[k] = True
        searched = index[free]
        found = search_vectors(vectors[searched], 2 * MARGIN * tol)
        for edge in _plausible_edges(points, order, digests, tol, searched[found[:, 0]], searched[found[:, 1]]):
            if edge[:2] not in tried:  # the same pair from another bucket: measured once
                tried.add(edge[:2])
                searched_edges.append(edge)
    measured(searched_edges)
    neighbours: dict[int, list[int]] = {}
    for a, b in verified:
        neighbours.setdefault(a, []).append(b)
        neighbours.setdefault(b, []).append(a)
    followers: dict[int, list[int]] = {}
    for lead, member in attached:
        followers.setdefault(lead, []).append(member)

    def link(a: int, b: int) -> tuple[bool, Distance]:
        return verified[(a, b) if (a, b) in verified else (b, a)]

    # The best-connected tensor is kept; its neighbours are replaced by it.
    # Only direct neighbours join, so every member is within tol of the one kept.
    claimed: set[int] = set()
    groups = []
    for rep in sorted(neighbours, key=lambda u: (-len(neighbours[u]), order[u])):
        if rep in claimed:
            continue
        members = [m for m in sorted(neighbours[rep], key=order.__getitem__) if m not in claimed]
        if not members:
            continue
        claimed.update([rep, *members])
        flags, max_abs, rel, zero_signs = [False], 0.0, 0.0, 0
        for m in members:
            t, d = link(rep, m)
            flags.append(t)
            max_abs = max(max_abs, d.max_abs)
            rel = max(rel, d.relative)  # the measure the merge test used: never above tol
            zero_signs += d.zero_signs
        # A leader that joins another's group leaves its crowd without a
        # kept tensor: each follower is measured against this one instead.
        extra = []
        for lead in members:
            t_lead = link(rep, lead)[0]
            for f in followers.get(lead, ()):
                if f in claimed or f == rep:
                    continue
                first, second = (rep, f) if order[rep] < order[f] else (f, rep)
                if verify((first, second, t_lead != link(lead, f)[0])):
                    extra.append(f)
                    claimed.add(f)
                    t, d = link(rep, f)
                    flags.append(t)
                    max_abs = max(max_abs, d.max_abs)
                    rel = max(rel, d.relative)
                    zero_signs += d.zero_signs
        transforms = tuple(TRANSPOSE if t else SAME for t in flags)
        groups.append(Group("near", (rep, *members, *extra), transforms=transforms, max_abs_error=max_abs, rel_error=rel, zero_signs=zero_signs))
    return groups


class Near(BaseRelation):
    """Lossy: a dropped tensor's readers read the kept one (or its transpose)."""

    name = "near"
    lossless = False  # verification bounds the outputs' change by --max-error

    def detect(self, scope: Scope) -> list[Group]:
        if scope.tol is None:
            return []
        return find_near(scope.entries, scope.units, scope.digests, scope.tol, scope.measure or measure_pairs)

    def member_fields(self, transform: Transform) -> tuple[float | None, bool]:
        return None, transform.kind == "transpose"

    def transform_of(self, scale: float | None, transposed: bool) -> Transform:
        return TRANSPOSE if transposed else SAME

    def rebuild(self, graph: Any, kept: str, dropped: str, transform: Transform, onnx_dtype: int) -> Rebuild:
        if transform.kind != "transpose":
            return super().rebuild(graph, kept, dropped, transform, onnx_dtype)
        from sharescan.onnx_rewrite.rebuild import transpose_node

        return Rebuild((transpose_node(kept, dropped),), f"Transpose({kept})")


RELATION = Near()
