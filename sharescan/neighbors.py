"""Close pairs among sample vectors, without comparing every pair.

Points are unit vectors (samples divided by their norm). They are projected
on a few orthonormal directions, which can only shrink distances, and
bucketed in a grid of cells wider than the search radius. A point close to a
cell's edge is also looked up in the neighbouring cell, so every pair within
the radius shares at least one looked-up cell: recall is exact for the
sample distance, and the work is about linear in the number of points.
"""

from __future__ import annotations

import numpy as np

__all__ = ["close_pairs", "axis_sample"]

_AXIS_CACHE: dict[tuple[int, int], np.ndarray] = {}
_DIMS = 10  # projected coordinates that form a cell
_CELL = 8.0  # cell width in radii: wider cells mean fewer edge look-ups, more pairs per cell


def axis_sample(length: int, k: int) -> np.ndarray:
    """k positions along an axis of this length, the same for every tensor.

    Seeded by the length alone, so a tensor and its transpose sample the same
    elements: the grid sample of w.T is the transpose of w's.
    """
    key = (length, k)
    idx = _AXIS_CACHE.get(key)
    if idx is None:
        if length <= k:
            idx = np.arange(length)
        else:
            idx = np.sort(np.random.default_rng(length).choice(length, k, replace=False))
        _AXIS_CACHE[key] = idx
    return idx


def _projection(k: int, seed: int) -> np.ndarray:
    dims = min(_DIMS, k)
    q, _ = np.linalg.qr(np.random.default_rng(seed).standard_normal((k, dims)))
    return q  # k x dims, orthonormal columns


def close_pairs(points: np.ndarray, radius: float, seed: int = 0) -> np.ndarray:
    """Index pairs (i, j), i < j, with ||p_i - p_j|| <= radius, as an (m, 2) array."""
    points = np.asarray(points, dtype=np.float64)
    n = len(points)
    if n < 2:
        return np.empty((0, 2), dtype=np.int64)
    width = _CELL * radius
    coords = points @ _projection(points.shape[1], seed) / width
    cells = np.floor(coords).astype(np.int64)
    frac = coords - cells
    mult = np.random.default_rng(seed + 1).integers(1, 1 << 61, size=cells.shape[1], dtype=np.int64) | 1
    home = (cells * mult).sum(axis=1)  # wrapping int64 arithmetic: a hash of the cell
    # Probes: the home cell, plus the neighbour across every edge within radius.
    probe_point = np.arange(n)
    probe_key = home.copy()
    edge = radius / width
    for d in range(cells.shape[1]):
        f = frac[probe_point, d]
        low, high = f < edge, f > 1 - edge
        probe_point = np.concatenate([probe_point, probe_point[low], probe_point[high]])
        probe_key = np.concatenate([probe_key, probe_key[low] - mult[d], probe_key[high] + mult[d]])
    # Join probes to home cells with one sort: within a run of equal keys the
    # home entries come first (tag 0), then the probes that land there.
    # The lowest key bit carries the tag, so one plain sort orders both.
    keys = np.concatenate([home << 1, (probe_key << 1) | 1])
    owner = np.concatenate([np.arange(n), probe_point])
    order = np.argsort(keys)
    keys, owner = keys[order], owner[order]
    tags = keys & 1
    keys = keys >> 1
    run_start = np.flatnonzero(np.r_[True, keys[1:] != keys[:-1]])
    run_id = np.cumsum(np.r_[False, keys[1:] != keys[:-1]])
    homes_in_run = np.add.reduceat((tags == 0).astype(np.int64), run_start)
    probes = np.flatnonzero(tags == 1)
    counts = homes_in_run[run_id[probes]]
    a = np.repeat(owner[probes], counts)
    first = np.repeat(run_start[run_id[probes]], counts)
    offsets = np.arange(counts.sum()) - np.repeat(np.cumsum(counts) - counts, counts)
    b = owner[first + offsets]
    keep = a < b
    a, b = a[keep], b[keep]
    if a.size:
        pairs = np.unique(np.stack([a, b], axis=1), axis=0)
        a, b = pairs[:, 0], pairs[:, 1]
        near = np.einsum("ij,ij->i", points[a] - points[b], points[a] - points[b]) <= radius * radius
        return np.stack([a[near], b[near]], axis=1)
    return np.empty((0, 2), dtype=np.int64)
