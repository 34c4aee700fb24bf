"""Pairs of same-shape tensors too far apart to merge but close enough to tie.

These are the pairs worth pulling together by penalised fine-tuning (``tie``):
two fine-tunes of one base, two models for related tasks, layers of one
stack. Only pairs within ``MAX_CANDIDATE_DISTANCE`` are listed, ranked by the
bytes tying would save per unit of relative distance (``Candidate.score``),
so a large matrix a little further apart outranks a LayerNorm vector that is
a little closer. Distances are first estimated from the grid samples; the
best estimates are then measured exactly and sorted.

Within a bucket of at most ``_EXHAUSTIVE`` tensors every pair is estimated;
in larger buckets each tensor's nearest neighbours along a few random
projections are, so a close pair may rank lower than it should there.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence

import numpy as np

from sharescan.detect.common import distance, relative_error
from sharescan.detect.search import sample_points
from sharescan.digest import Digest
from sharescan.groups import Candidate, Group
from sharescan.table import TensorEntry

__all__ = ["MAX_CANDIDATE_DISTANCE", "find_candidates"]

# Relative distance ||a - b|| / max(||a||, ||b||) beyond which a pair is not a
# candidate. Two unrelated tensors of equal norm sit at sqrt(2) = 1.41; at 0.5
# their cosine is still 0.875 (1 - d^2 / 2), and replacing both by their mean
# moves each by a quarter of its norm, which fine-tuning can recover. Beyond
# it the two share too little for one parameter to stand for both.
MAX_CANDIDATE_DISTANCE = 0.5
# Estimates come from samples and do not bound the exact distance: a pair is
# measured if its estimate is within this factor of the limit.
_ESTIMATE_SLACK = 1.5
_EXHAUSTIVE = 2048
_PROJECTIONS = 4
_WINDOW = 4
_MEASURED_PER_REPORTED = 3  # exact measurements per candidate reported


def _estimates(entries: Sequence[TensorEntry], digests: Mapping[int, Digest], points: list[tuple[int, bool, np.ndarray]]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(estimated relative distance, i, j) arrays over pairs of point indices."""
    vectors = np.array([g.reshape(-1) * np.sqrt(entries[u].numel / g.size) for u, _, g in points])
    norms = np.array([digests[u].norm for u, _, _ in points])
    n = len(points)
    if n <= _EXHAUSTIVE:
        # Every pair, through the Gram matrix: ||a-b||^2 = |a|^2 + |b|^2 - 2 a.b
        sq = np.einsum("ij,ij->i", vectors, vectors)
        i, j = np.triu_indices(n, 1)
        d2 = sq[i] + sq[j] - 2 * (vectors @ vectors.T)[i, j]
    else:
        found = []
        rng = np.random.default_rng(0)
        for _ in range(_PROJECTIONS):
            order = np.argsort(vectors @ rng.standard_normal(vectors.shape[1]))
            for w in range(1, _WINDOW + 1):
                a, b = order[:-w], order[w:]
                found.append(np.minimum(a, b) * n + np.maximum(a, b))
        packed = np.unique(np.concatenate(found))
        i, j = packed // n, packed % n
        diff = vectors[i] - vectors[j]
        d2 = np.einsum("ij,ij->i", diff, diff)
    est = relative_error(np.sqrt(np.maximum(d2, 0.0)), norms[i], norms[j])
    return est, i, j


def _memberships(groups: Sequence[Group]) -> dict[int, frozenset[int]]:
    """Each tensor's groups (by index), aliases aside: linear in the members.

    A group of n copies has n * (n - 1) pairs; 20,000 identical biases would
    be 4e8 of them, so pairs are tested by shared membership instead.
    """
    out: dict[int, set[int]] = {}
    for k, g in enumerate(groups):
        if g.relation != "aliased":
            for m in g.members:
                out.setdefault(m, set()).add(k)
    return {m: frozenset(ks) for m, ks in out.items()}


def _best(est: np.ndarray, wanted: int, skip: Callable[[int], bool]) -> list[int]:
    """Indices of the ``wanted`` smallest estimates that ``skip`` keeps, best first.

    The window doubles until enough survive, so skipped pairs (already
    merged together) cost no more than looking past them.
    """
    window = min(est.size, wanted)
    while True:
        part = np.argpartition(est, window - 1)[:window] if window < est.size else np.arange(est.size)
        kept = [int(k) for k in part[np.argsort(est[part], kind="stable")] if not skip(int(k))]
        if len(kept) >= wanted or window >= est.size:
            return kept[:wanted]
        window = min(est.size, 2 * window)


def find_candidates(entries: Sequence[TensorEntry], units: Sequence[int], digests: Mapping[int, Digest], groups: Sequence[Group], count: int) -> list[Candidate]:
    """The ``count`` pairs within ``MAX_CANDIDATE_DISTANCE`` that save the most bytes per unit of distance."""
    if count <= 0:
        return []
    groups_of = _memberships(groups)
    none: frozenset[int] = frozenset()
    order = {u: k for k, u in enumerate(units)}
    wanted = count * _MEASURED_PER_REPORTED
    estimates: list[tuple[float, float, int, int, bool]] = []  # (-estimated score, estimate, a, b, transposed)
    for points in sample_points(entries, units, digests).values():
        if len(points) < 2:
            continue
        est, i, j = _estimates(entries, digests, points)
        unit = np.array([u for u, _, _ in points])
        flip = np.array([t for _, t, _ in points])
        valid = (unit[i] != unit[j]) & ~(flip[i] & flip[j]) & np.isfinite(est) & (est <= _ESTIMATE_SLACK * MAX_CANDIDATE_DISTANCE)
        est, i, j = est[valid], i[valid], j[valid]
        if not est.size:
            continue

        # Defaults bind this bucket's arrays (the function is used only in this iteration).
        def merged(k: int, unit: np.ndarray = unit, i: np.ndarray = i, j: np.ndarray = j) -> bool:
            """Both tensors are already in one group: nothing left to tie."""
            return not groups_of.get(int(unit[i[k]]), none).isdisjoint(groups_of.get(int(unit[j[k]]), none))

        # A bucket holds one dtype and shape, so within it the closest pairs score best.
        for k in _best(est, wanted, merged):
            ua, ub = int(unit[i[k]]), int(unit[j[k]])
            a, b = (ua, ub) if order[ua] < order[ub] else (ub, ua)
            e = float(est[k])
            estimates.append((-entries[a].nbytes / e if e > 0 else -math.inf, e, a, b, bool(flip[i[k]] != flip[j[k]])))
    estimates.sort()
    measured: dict[tuple[int, int, bool], Candidate] = {}
    for _, _, a, b, t in estimates:
        if len(measured) >= wanted:
            break
        if (a, b, t) in measured:
            continue
        d = distance(entries[a], entries[b], transposed=t)
        # At distance 0 (equal values, other zero signs) tying has nothing to pull together.
        if 0 < d.relative <= MAX_CANDIDATE_DISTANCE and np.isfinite(d.max_abs):
            measured[(a, b, t)] = Candidate(a, b, t, d.relative, d.max_abs, min(entries[a].nbytes, entries[b].nbytes))
    return sorted(measured.values(), key=lambda c: (-c.score, c.rel_distance, order[c.a], order[c.b]))[:count]
