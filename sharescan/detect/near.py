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

from sharescan.detect.common import Distance, distance, value_units
from sharescan.digest import Digest, float_values
from sharescan.groups import Group
from sharescan.neighbors import close_pairs, unit_rows
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
    for i in value_units(entries, units, digests):
        e, sample = entries[i], digests[i].grid
        assert sample is not None  # value_units keeps only units with a grid sample
        grid = float_values(sample, e.dtype).astype(np.float64)
        buckets.setdefault((e.dtype, e.shape), []).append((i, False, grid))
        if len(e.shape) == 2 and min(e.shape) > 1:
            buckets.setdefault((e.dtype, (e.shape[1], e.shape[0])), []).append((i, True, grid.T))
    # A bucket of transposed points alone pairs nothing (two transposes compare like the originals).
    return {k: v for k, v in buckets.items() if any(not t for _, t, _ in v)}


def candidate_edges(entries: Sequence[TensorEntry], units: Sequence[int], digests: Mapping[int, Digest], tol: float) -> set[Edge]:
    order = {u: k for k, u in enumerate(units)}
    edges: set[Edge] = set()
    for points in sample_points(entries, units, digests).values():
        if len(points) < 2:
            continue
        vectors = np.array([g.reshape(-1) for _, _, g in points])
        _, ok = unit_rows(vectors)
        index = np.flatnonzero(ok)
        # Unit vectors of two tensors at relative distance t are within 2t.
        for a, b in search_vectors(vectors[ok], 2 * MARGIN * tol):
            (ua, ta, _), (ub, tb, _) = points[index[a]], points[index[b]]
            if ua == ub or (ta and tb):
                continue
            first, second = (ua, ub) if order[ua] < order[ub] else (ub, ua)
            edges.add((first, second, ta != tb))
    return edges


def find_near(entries: Sequence[TensorEntry], units: Sequence[int], digests: Mapping[int, Digest], tol: float) -> list[Group]:
    order = {u: k for k, u in enumerate(units)}
    verified: dict[tuple[int, int], tuple[bool, Distance]] = {}
    for a, b, t in sorted(candidate_edges(entries, units, digests, tol), key=lambda e: (order[e[0]], order[e[1]], e[2])):
        if (a, b) in verified:
            continue
        d = distance(entries[a], entries[b], transposed=t)
        # Equal by value but not by bits (only zeros' signs differ): no
        # tolerance bounds what that merge changes (1/x: +inf to -inf), and
        # a near group at error 0 would read as identical. Left unmerged.
        if d.relative <= tol and not (d.diff_norm == 0 and d.zero_signs):
            verified[(a, b)] = (t, d)
    neighbours: dict[int, list[int]] = {}
    for a, b in verified:
        neighbours.setdefault(a, []).append(b)
        neighbours.setdefault(b, []).append(a)
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
            t, d = verified[(rep, m) if (rep, m) in verified else (m, rep)]
            flags.append(t)
            max_abs = max(max_abs, d.max_abs)
            rel = max(rel, d.relative)  # the measure the merge test used: never above tol
            zero_signs += d.zero_signs
        groups.append(Group("near", (rep, *members), transposed=tuple(flags), max_abs_error=max_abs, rel_error=rel, zero_signs=zero_signs))
    return groups
