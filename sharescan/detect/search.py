"""Candidate searches the value relations share: no relation imports another.

Every search runs on the digests' grid samples scaled to unit vectors, so two
tensors are only read again when their samples are close; each relation then
confirms its candidates on the full tensors.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import cast

import numpy as np

from sharescan.detect.common import MIN_SEARCH_ELEMENTS, value_units
from sharescan.digest import Digest, float_values
from sharescan.neighbors import close_pairs, crowd_leaders, unit_rows
from sharescan.table import TensorEntry

__all__ = ["MARGIN", "SEARCH_COORDS", "search_vectors", "sample_points", "direction_pairs"]

# A pair is a candidate up to MARGIN times the tolerance on the samples, so
# ordinary (dense) differences are never missed by the estimate.
MARGIN = 3.0
# The neighbour search runs on this many coordinates of each grid sample: in
# fewer dimensions a unit vector's coordinates spread wider relative to the
# radius, so the search prunes far better. Pairs it finds are then checked on
# the whole grid sample, a finer estimate, before the exact measurement.
SEARCH_COORDS = 64
# Grid samples of w and c*w point the same way up to the dtype's rounding;
# this radius (on unit vectors) is far above rounding and far below unrelated.
_DIRECTION_RADIUS = 1e-2
_PAIR_BLOCK = 8192  # pairs whose full samples are compared at once (8192 x 1,024 float64: 64 MiB)
_GRAM_POINTS = 4096  # points whose products are taken all at once (4096^2 float64: 128 MiB) ...
_GRAM_DENSITY = 16  # ... when they pair at least 1/16 of all their pairs


def search_vectors(vectors: np.ndarray, radius: float) -> np.ndarray:
    """Pairs (i, j) whose unit-scaled rows are within radius, on a subsample first, then in full."""
    full, _ = unit_rows(vectors)
    step = max(1, vectors.shape[1] // SEARCH_COORDS)
    sub, usable = unit_rows(vectors[:, ::step])
    index = np.flatnonzero(usable)
    pairs = close_pairs(sub[usable], radius)
    a, b = index[pairs[:, 0]], index[pairs[:, 1]]
    keep = np.zeros(len(a), dtype=bool)
    n = len(full)
    if n <= _GRAM_POINTS and len(a) * _GRAM_DENSITY >= n * n:
        # A crowd of fine-tunes pairs most of its points: one product of the
        # samples gives every pair's distance (||x||^2 + ||y||^2 - 2 x.y),
        # where gathering both samples of each pair moved 8 KiB a pair
        # (74k pairs of 761 points: 0.49 s -> 0.05 s).
        gram = full @ full.T
        squares = np.einsum("ij,ij->i", full, full)
        keep[:] = squares[a] + squares[b] - 2 * gram[a, b] <= radius * radius
    else:
        # In blocks of pairs: a crowd of fine-tunes within the radius gives pairs
        # quadratic in its size, and their differences at once took 1.4 GB.
        for start in range(0, len(a), _PAIR_BLOCK):
            end = start + _PAIR_BLOCK
            keep[start:end] = np.linalg.norm(full[a[start:end]] - full[b[start:end]], axis=1) <= radius
    return np.stack([a[keep], b[keep]], axis=1)


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


def direction_pairs(entries: Sequence[TensorEntry], units: Sequence[int], digests: Mapping[int, Digest]) -> list[tuple[int, int]]:
    """Pairs (a, b), a before b, whose samples are parallel or antiparallel.

    A crowd of mutually parallel tensors (thousands of near-equal biases) would
    give every pair of the crowd: there, each tensor is paired with the
    crowd's leader only (``crowd_leaders``), so the pairs stay linear in the
    number of tensors.
    """
    buckets: dict[tuple[str, tuple[int, ...]], list[int]] = {}
    for i in value_units(entries, units, digests, MIN_SEARCH_ELEMENTS):
        buckets.setdefault((entries[i].dtype, entries[i].shape), []).append(i)
    pairs: list[tuple[int, int]] = []
    for members in buckets.values():
        if len(members) < 2:
            continue
        # value_units keeps only units with a grid sample, so no grid here is None.
        raw = np.array([float_values(cast(np.ndarray, digests[i].grid), entries[i].dtype).reshape(-1).astype(np.float64) for i in members])
        pts, ok = unit_rows(raw)
        # w and -w (or c*w, c < 0) point the same way once the first nonzero is positive.
        first = np.argmax(pts != 0, axis=1)
        pts *= np.where(pts[np.arange(len(pts)), first] < 0, -1.0, 1.0)[:, None]
        index = np.flatnonzero(ok)
        leader = crowd_leaders(pts[ok], _DIRECTION_RADIUS)
        free = np.flatnonzero(leader == np.arange(len(leader)))
        found = search_vectors(pts[ok][free], _DIRECTION_RADIUS)
        pairs.extend((members[index[free[a]]], members[index[free[b]]]) for a, b in found)
        pairs.extend((members[index[leader[k]]], members[index[k]]) for k in np.flatnonzero(leader != np.arange(len(leader))))
    order = {u: k for k, u in enumerate(units)}
    return sorted(((a, b) if order[a] < order[b] else (b, a) for a, b in pairs), key=lambda p: (order[p[0]], order[p[1]]))
