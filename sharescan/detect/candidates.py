"""Closest pairs of same-shape tensors that are too far apart to merge.

These are the pairs worth pulling together by penalised fine-tuning (``tie``):
two fine-tunes of one base, two models for related tasks, layers of one
stack. Distances are first estimated from the grid samples; the closest
estimates are then measured exactly and sorted.

Within a bucket of at most ``_EXHAUSTIVE`` tensors every pair is estimated;
in larger buckets each tensor's nearest neighbours along a few random
projections are, so a close pair may rank lower than it should there.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from sharescan.detect.common import distance
from sharescan.detect.near import sample_points
from sharescan.digest import Digest
from sharescan.groups import Candidate, Group
from sharescan.table import TensorEntry

__all__ = ["find_candidates"]

_EXHAUSTIVE = 512
_PROJECTIONS = 4
_WINDOW = 4
_MEASURED_PER_REPORTED = 3  # exact measurements per candidate reported


def _estimates(entries: Sequence[TensorEntry], digests: Mapping[int, Digest], points: list[tuple[int, bool, np.ndarray]]) -> list[tuple[float, int, int]]:
    """(estimated relative distance, i, j) for pairs of point indices."""
    vectors = np.array([g.reshape(-1) * np.sqrt(entries[u].numel / g.size) for u, _, g in points])
    norms = np.array([digests[u].norm for u, _, _ in points])
    n = len(points)
    if n <= _EXHAUSTIVE:
        i, j = np.triu_indices(n, 1)
    else:
        pairs = set()
        rng = np.random.default_rng(0)
        for _ in range(_PROJECTIONS):
            order = np.argsort(vectors @ rng.standard_normal(vectors.shape[1]))
            for w in range(1, _WINDOW + 1):
                a, b = order[:-w], order[w:]
                pairs.update(zip(np.minimum(a, b).tolist(), np.maximum(a, b).tolist()))
        i, j = (np.array(x, dtype=np.int64) for x in zip(*pairs)) if pairs else (np.empty(0, np.int64),) * 2
    est = np.linalg.norm(vectors[i] - vectors[j], axis=1) / np.maximum(norms[i], norms[j])
    return list(zip(est.tolist(), i.tolist(), j.tolist()))


def find_candidates(entries: Sequence[TensorEntry], units: Sequence[int], digests: Mapping[int, Digest], groups: Sequence[Group], count: int) -> list[Candidate]:
    if count <= 0:
        return []
    together = set()
    for g in groups:
        if g.relation != "aliased":
            together.update((a, b) for a in g.members for b in g.members if a != b)
    order = {u: k for k, u in enumerate(units)}
    estimates: list[tuple[float, int, int, bool]] = []
    for points in sample_points(entries, units, digests).values():
        if len(points) < 2:
            continue
        for est, i, j in _estimates(entries, digests, points):
            (ua, ta, _), (ub, tb, _) = points[i], points[j]
            if ua == ub or (ta and tb) or (ua, ub) in together:
                continue
            a, b = (ua, ub) if order[ua] < order[ub] else (ub, ua)
            estimates.append((est, a, b, ta != tb))
    estimates.sort()
    measured: dict[tuple[int, int, bool], Candidate] = {}
    for _, a, b, t in estimates:
        if len(measured) >= count * _MEASURED_PER_REPORTED:
            break
        if (a, b, t) in measured:
            continue
        d = distance(entries[a], entries[b], transposed=t)
        measured[(a, b, t)] = Candidate(a, b, t, d.relative, d.max_abs)
    return sorted(measured.values(), key=lambda c: (c.rel_distance, order[c.a], order[c.b]))[:count]
