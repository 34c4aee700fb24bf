"""Near-equal tensors: same shape (or transposed), relative distance <= tol.

Candidates come from the grid samples: each sample is scaled to a unit
vector and searched for neighbours (``close_pairs``), so no two tensors are
compared unless their samples are close. Only candidates are read again and
measured exactly: ``||a - b|| / max(||a||, ||b||)``.

The sample distance estimates the true one. A pair is a candidate up to
``MARGIN`` times the tolerance, so ordinary (dense) differences are never
missed; a difference concentrated in a few elements that the sample happens
to hit can overstate the distance and be missed.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from sharescan.detect.common import MIN_SEARCH_ELEMENTS, Distance, distance, value_units
from sharescan.digest import Digest, float_values
from sharescan.groups import Group
from sharescan.neighbors import close_pairs, crowd_leaders, unit_rows
from sharescan.table import TensorEntry

__all__ = ["find_near", "MARGIN", "sample_points", "search_vectors", "Edge"]

MARGIN = 3.0
# The neighbour search runs on this many coordinates of each grid sample: in
# fewer dimensions a unit vector's coordinates spread wider relative to the
# radius, so the search prunes far better. Pairs it finds are then checked on
# the whole grid sample, a finer estimate, before the exact measurement.
SEARCH_COORDS = 64


def search_vectors(vectors: np.ndarray, radius: float) -> np.ndarray:
    """Pairs (i, j) whose unit-scaled rows are within radius, on a subsample first, then in full."""
    full, _ = unit_rows(vectors)
    step = max(1, vectors.shape[1] // SEARCH_COORDS)
    sub, usable = unit_rows(vectors[:, ::step])
    index = np.flatnonzero(usable)
    pairs = close_pairs(sub[usable], radius)
    a, b = index[pairs[:, 0]], index[pairs[:, 1]]
    keep = np.linalg.norm(full[a] - full[b], axis=1) <= radius
    return np.stack([a[keep], b[keep]], axis=1)

Edge = tuple[int, int, bool]  # (a, b, b is compared with a's transpose), a before b in unit order


def sample_points(entries: Sequence[TensorEntry], units: Sequence[int], digests: Mapping[int, Digest]) -> dict[tuple[str, tuple[int, ...]], list[tuple[int, bool, np.ndarray]]]:
    """Per (dtype, shape): (unit, transposed, grid sample as float64 matrix).

    A 2-D tensor also appears, transposed, among tensors of its transposed shape.
    """
    buckets: dict[tuple[str, tuple[int, ...]], list[tuple[int, bool, np.ndarray]]] = {}
    for i in value_units(entries, units, digests, MIN_SEARCH_ELEMENTS):
        e, sample = entries[i], digests[i].grid
        assert sample is not None  # value_units keeps only units with a grid sample
        grid = float_values(sample, e.dtype).astype(np.float64)
        buckets.setdefault((e.dtype, e.shape), []).append((i, False, grid))
        if len(e.shape) == 2 and min(e.shape) > 1:
            buckets.setdefault((e.dtype, (e.shape[1], e.shape[0])), []).append((i, True, grid.T))
    # A bucket of transposed points alone pairs nothing (two transposes compare like the originals).
    return {k: v for k, v in buckets.items() if any(not t for _, t, _ in v)}


# A crowd attaches to its leader when their unit samples are this many
# tolerances apart: unit vectors of two tensors at relative distance t are
# within 2t, so members attached are estimated near; the exact measure decides.
ATTACH = 2.0


def _edge(points: list[tuple[int, bool, np.ndarray]], order: Mapping[int, int], p: int, q: int) -> Edge | None:
    (ua, ta, _), (ub, tb, _) = points[p], points[q]
    if ua == ub or (ta and tb):
        return None
    first, second = (ua, ub) if order[ua] < order[ub] else (ub, ua)
    return (first, second, ta != tb)


def find_near(entries: Sequence[TensorEntry], units: Sequence[int], digests: Mapping[int, Digest], tol: float) -> list[Group]:
    order = {u: k for k, u in enumerate(units)}
    verified: dict[tuple[int, int], tuple[bool, Distance]] = {}
    tried: set[tuple[int, int]] = set()

    def verify(edge: Edge | None) -> bool:
        if edge is None:
            return False
        a, b, t = edge
        if (a, b) not in tried:
            tried.add((a, b))
            d = distance(entries[a], entries[b], transposed=t)
            # Equal by value but not by bits (only zeros' signs differ): no
            # tolerance bounds what that merge changes (1/x: +inf to -inf), and
            # a near group at error 0 would read as identical. Left unmerged.
            if d.relative <= tol and not (d.diff_norm == 0 and d.zero_signs):
                verified[(a, b)] = (t, d)
        return (a, b) in verified

    # Crowd members confirmed near their leader: (leader unit, member unit).
    attached: list[tuple[int, int]] = []
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
        for k in np.flatnonzero(~free):
            p, q = index[leader[k]], index[k]
            if verify(_edge(points, order, p, q)):
                attached.append((points[p][0], points[q][0]))
            else:
                free[k] = True
        searched = index[free]
        for a, b in search_vectors(vectors[searched], 2 * MARGIN * tol):
            verify(_edge(points, order, searched[a], searched[b]))
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
        groups.append(Group("near", (rep, *members, *extra), transposed=tuple(flags), max_abs_error=max_abs, rel_error=rel, zero_signs=zero_signs))
    return groups
