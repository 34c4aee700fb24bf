"""Close pairs among sample vectors, without comparing every pair.

Points are unit vectors (samples divided by their norm). They are projected
on a few orthonormal directions, which can only shrink distances, and
bucketed in a grid of cells wider than the search radius. A point close to a
cell's edge is also looked up in the neighbouring cell, so every pair within
the radius shares at least one looked-up cell: recall is exact for the
sample distance, and the work is about linear in the number of points.
"""

from __future__ import annotations

import math

import numpy as np

__all__ = ["band_pairs", "close_pairs", "crowd_leaders", "axis_sample", "unit_rows"]

_AXIS_CACHE: dict[tuple[int, int], np.ndarray] = {}
_CELL = 8.0  # cell width in radii: wider cells mean fewer edge look-ups, more pairs per cell
# A random unit vector's projection spreads over about this many cells per
# coordinate at the usual radius, so each coordinate divides a cell's share by it.
_SPLIT = 4.5


def axis_sample(length: int, k: int) -> np.ndarray:
    """k positions along an axis of this length, the same for every tensor.

    One position in each of k equal strata of the axis (so the sample spans
    it evenly), jittered within its stratum by a hash of the length and the
    stratum. Seeded by the length alone, so a tensor and its transpose sample
    the same elements: the grid sample of w.T is the transpose of w's. A
    fixed formula rather than a random generator: digests kept in a store
    must not change with a library's version, and the digest need not
    import numpy.random (10 ms, through OpenSSL).
    """
    key = (length, k)
    idx = _AXIS_CACHE.get(key)
    if idx is None:
        if length <= k:
            idx = np.arange(length)
        else:
            strata = np.arange(k + 1, dtype=np.int64) * length // k  # length < 2**48, k <= 4096: no overflow
            width = np.diff(strata).astype(np.uint64)  # >= 1, as length > k
            jitter = _splitmix64(np.arange(k, dtype=np.uint64) + _splitmix64(np.array([length], dtype=np.uint64)))
            idx = strata[:-1] + (jitter % width).astype(np.int64)
        _AXIS_CACHE[key] = idx
    return idx


def _splitmix64(x: np.ndarray) -> np.ndarray:
    """SplitMix64's output function on each element (wrapping uint64 arithmetic): a well-mixed hash."""
    z = x + np.uint64(0x9E3779B97F4A7C15)
    z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return z ^ (z >> np.uint64(31))


def unit_rows(vectors: np.ndarray, in_place: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """Rows scaled to unit length (without overflow for huge values), and which rows could be.

    ``in_place``: a float32 or float64 ``vectors`` is overwritten and
    returned (for a caller whose array is a copy it no longer needs).
    """
    vectors = np.asarray(vectors)
    if vectors.dtype not in (np.float32, np.float64):
        vectors, in_place = vectors.astype(np.float64), True
    if not vectors.size:
        return vectors.copy(), np.zeros(len(vectors), dtype=bool)
    out = vectors if in_place else np.empty(vectors.shape, dtype=vectors.dtype)
    usable = np.empty(len(vectors), dtype=bool)
    # Row by row arithmetic, a block of rows at a time: each block's passes
    # stay in cache (whole arrays of every row sample went through memory
    # five times).
    step = max(1, _UNIT_ELEMENTS // max(1, vectors.shape[1]))
    for start in range(0, len(vectors), step):
        _unit_block(vectors[start : start + step], out[start : start + step], usable[start : start + step])
    return out, usable


_UNIT_ELEMENTS = 1 << 16  # elements scaled at once by unit_rows


def _unit_block(vectors: np.ndarray, out: np.ndarray, usable: np.ndarray) -> None:
    # float32 stays float32 (row samples are many): dividing by the peak first
    # keeps the squares far from overflow in either type.
    peak = _row_peaks(vectors)
    usable[:] = (peak > 0) & np.isfinite(peak)
    peak[~usable] = 1
    np.divide(vectors, peak[:, None], out=out)
    norm = np.sqrt(np.einsum("ij,ij->i", out, out))
    norm[~usable] = 1
    out /= norm[:, None]
    out[~usable] = 0


def _row_peaks(vectors: np.ndarray) -> np.ndarray:
    """Each row's largest magnitude (NaN where a row holds one).

    A max over a short last axis is numpy's slow path (5.6 ms for 100,000
    row samples of 32); for few columns, a column at a time is elementwise
    work, 3x faster, and the same values.
    """
    magnitudes = np.abs(vectors)
    if magnitudes.shape[1] > _FEW_COLUMNS:
        return magnitudes.max(axis=1)
    peak = magnitudes[:, 0].copy()
    for j in range(1, magnitudes.shape[1]):
        np.maximum(peak, magnitudes[:, j], out=peak)
    return peak


_FEW_COLUMNS = 64


def _projection(k: int, dims: int, seed: int) -> np.ndarray:
    q, _ = np.linalg.qr(np.random.default_rng(seed).standard_normal((k, dims)))
    return q  # k x dims, orthonormal columns


# OpenBLAS runs a matrix product on one thread when m * n * k is at most
# this (65536 x GEMM_MULTITHREAD_THRESHOLD, 4 by default).
_SINGLE_THREAD_PRODUCT = 1 << 18


def _single_thread_rows(k: int, columns: int) -> int:
    """Rows of a (rows, k) @ (k, columns) product that a threaded BLAS keeps on the calling thread."""
    return max(1, _SINGLE_THREAD_PRODUCT // max(1, k * columns))


def _project(points: np.ndarray, matrix: np.ndarray) -> np.ndarray:
    """points @ matrix, a block of rows per call.

    The product is small (a few columns), and a call on many points lets a
    threaded BLAS split it: waking its threads, on a busy machine or after
    the scan's own threads, made 0.5 ms of work take 26 ms (median) for
    158,000 points, and 0.2 s in a fresh analysis of them. Blocks this
    small stay on the calling thread.
    """
    out = np.empty((len(points), matrix.shape[1]), dtype=np.result_type(points, matrix))
    step = _single_thread_rows(points.shape[1], matrix.shape[1])
    for start in range(0, len(points), step):
        np.matmul(points[start : start + step], matrix, out=out[start : start + step])
    return out


def close_pairs(points: np.ndarray, radius: float, labels: np.ndarray | None = None, seed: int = 0) -> np.ndarray:
    """Index pairs (i, j), i < j, with ||p_i - p_j|| <= radius, as an (m, 2) array.

    With ``labels``, only pairs of points with the same label are returned
    (and searched for): the label is part of every cell.
    """
    points = _float_points(points)
    n = len(points)
    if n < 2:
        return np.empty((0, 2), dtype=np.int64)
    # Enough coordinates that a cell holds about one point of each label.
    per_label = n if labels is None else int(np.bincount(np.unique(labels, return_inverse=True)[1]).max())
    dims = max(1, min(points.shape[1], math.ceil(math.log(max(per_label, 2)) / math.log(_SPLIT)) + 1))
    width = _CELL * radius
    coords = _project(points, (_projection(points.shape[1], dims, seed) / width).astype(points.dtype)).astype(np.float64)
    cells = np.floor(coords)
    frac = coords - cells
    cells = cells.astype(np.int64)
    mult = np.random.default_rng(seed + 1).integers(1, 1 << 61, size=dims + 1, dtype=np.int64) | 1
    home = cells @ mult[:dims]  # wrapping int64 arithmetic: a hash of the cell
    if labels is not None:
        home += np.asarray(labels, dtype=np.int64) * mult[dims]
    # Probes: the home cell, plus the neighbour across every edge within radius.
    edge = radius / width
    shift = np.where(frac < edge, -1, np.where(frac > 1 - edge, 1, 0))  # n x dims
    probe_point = [np.arange(n)]
    probe_key = [home]
    for d in np.flatnonzero(np.any(shift != 0, axis=0)):
        new_points, new_keys = [], []
        for p, k in zip(probe_point, probe_key):
            moving = shift[p, d] != 0
            new_points.append(p[moving])
            new_keys.append(k[moving] + shift[p[moving], d] * mult[d])
        probe_point += new_points
        probe_key += new_keys
    probe_point_all = np.concatenate(probe_point[1:]) if len(probe_point) > 1 else np.empty(0, np.int64)
    probe_key_all = np.concatenate(probe_key[1:]) if len(probe_key) > 1 else np.empty(0, np.int64)
    pairs = [_same_cell_pairs(home)]
    if probe_key_all.size:
        pairs.append(_probe_pairs(home, probe_point_all, probe_key_all))
    return _within_radius(points, np.concatenate([p[0] for p in pairs]), np.concatenate([p[1] for p in pairs]), radius)


def band_pairs(points: np.ndarray, radius: float, labels: np.ndarray | None = None, seed: int = 0) -> np.ndarray:
    """What ``close_pairs`` returns, in the same order, built without a Python loop per cell or per probe.

    For many points (every row of a large embedding). Each of ``dims``
    orthonormal directions is a band: the points' projections on it, cut into
    slabs ``_CELL`` radii wide. A point's key is its slab in every band (and
    its label). A projection never lengthens a distance, so two points within
    ``radius`` lie in the same slab of every band or in neighbouring ones,
    and where p's slab is below q's, p lies within ``radius`` of its slab's
    upper edge (and q within ``radius`` of its lower edge). So each point
    also takes the keys of its slabs moved up across every subset of the
    upper edges it is near: p moved up where it is below q, and q moved up
    where it is below p, reach one key. Recall on these points is exact.
    Only upper edges are crossed (a point near k of them takes 2^k keys), so
    a point takes about 1.125^dims keys instead of the 1.25^dims look-ups
    that crossing both edges costs; points sharing a key are paired by
    sorting all keys once, and only those pairs (about one per point and
    label) are measured.
    """
    points = _float_points(points)
    n = len(points)
    if n < 2:
        return np.empty((0, 2), dtype=np.int64)
    dims = max(1, min(points.shape[1], math.ceil(math.log(max(_largest_label(n, labels), 2)) / math.log(_SPLIT)) + 1))
    width = _CELL * radius
    mult = np.random.default_rng(seed + 1).integers(1, 1 << 61, size=dims + 1, dtype=np.int64) | 1
    matrix = (_projection(points.shape[1], dims, seed) / width).astype(points.dtype)
    home, upper = _slabs(points, matrix, radius / width, mult[:dims])
    if labels is not None:
        home += np.asarray(labels, dtype=np.int64) * mult[dims]
    key_point, key = _edge_keys(home, upper, mult[:dims])
    # One sort of (key, point) packed in an int64, the key's low bits giving
    # way to the point's number: an argsort and two gathers took 6 ms of 281,000
    # keys, this sort 1 ms. Points sharing a key still share the shortened one;
    # the few that share only the shortened one are dropped by their distance below.
    bits = max(1, (n - 1).bit_length())
    packed = np.sort((key << bits) | key_point)
    del key, key_point
    key_point, key = packed & ((1 << bits) - 1), packed >> bits
    del packed
    a, b = _sorted_group_pairs(key_point, key)
    del key, key_point
    return _within_radius(points, a, b, radius)


def _edge_keys(home: np.ndarray, upper: np.ndarray, mult: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Every point's keys: its home key, and its home key moved across every nonempty subset of the upper edges it is near.

    The subsets of each point's edges (a bit mask over the bands) are walked
    as submasks, ``s = (s - 1) & mask``, all points at once; a subset's move
    is looked up in a table of every subset's summed multipliers. Each step
    emits one key per point that still has a subset left, so the work is the
    number of keys (building them band by band copied the growing arrays
    once per band: 11 ms of 14 for GPT-2's 97,000 row samples).
    """
    dims, n = upper.shape
    mask = np.zeros(n, dtype=np.int64)
    for d in range(dims):
        mask |= upper[d].astype(np.int64) << d
    moves = np.zeros(1 << dims, dtype=np.int64)  # wrapping int64 sums, as the home keys
    for d in range(dims):
        moves[1 << d : 2 << d] = moves[: 1 << d] + mult[d]
    points, keys = [np.arange(n)], [home]
    active = np.flatnonzero(mask)
    edges = subset = mask[active]
    while active.size:
        points.append(active)
        keys.append(home[active] + moves[subset])
        subset = (subset - 1) & edges
        left = subset != 0
        if not left.all():
            active, edges, subset = active[left], edges[left], subset[left]
    return np.concatenate(points), np.concatenate(keys)


def _within_radius(points: np.ndarray, a: np.ndarray, b: np.ndarray, radius: float) -> np.ndarray:
    """The candidate pairs (a[k], b[k]) as sorted unique (i, j), i < j, kept where ||p_i - p_j|| <= radius."""
    if not a.size:
        return np.empty((0, 2), dtype=np.int64)
    n = len(points)
    lo, hi = np.minimum(a, b), np.maximum(a, b)
    keep = lo != hi
    packed = _sorted_unique(lo[keep] * n + hi[keep])
    a, b = packed // n, packed % n
    near = np.zeros(len(a), dtype=bool)
    block = max(1, (1 << 22) // max(1, points.shape[1]))  # pairs measured at once: bounded memory
    for s in range(0, len(a), block):
        diff = points[a[s : s + block]] - points[b[s : s + block]]
        near[s : s + block] = np.einsum("ij,ij->i", diff, diff) <= radius * radius
    return np.stack([a[near], b[near]], axis=1)


def _slabs(points: np.ndarray, matrix: np.ndarray, edge: float, mult: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Each point's home key (a hash of its slab in every band) and, band by band, whether it lies near its slab's upper edge.

    A block of points at a time: the projections, their slabs and the
    fractions within them never exist for every point at once (three
    float64 arrays of points x bands), and each block's product stays off a
    threaded BLAS (see ``_project``).
    """
    n, dims = len(points), matrix.shape[1]
    home = np.empty(n, dtype=np.int64)
    upper = np.empty((dims, n), dtype=bool)  # one band's flags contiguous
    step = _single_thread_rows(points.shape[1], dims)
    for start in range(0, n, step):
        coords = (points[start : start + step] @ matrix).astype(np.float64)
        cells = np.floor(coords)
        # Near the upper edge: within radius (edge, in slab widths) of it.
        # >= and not >: a pair exactly at the radius is still found.
        upper[:, start : start + step] = ((coords - cells) >= 1 - edge).T
        home[start : start + step] = cells.astype(np.int64) @ mult  # wrapping int64 arithmetic: a hash of the slabs
    return home, upper


def _sorted_unique(values: np.ndarray) -> np.ndarray:
    """np.unique of a 1-D array, by one sort (np.unique's first call imports numpy.ma: 6 ms)."""
    values = np.sort(values)
    return values[np.r_[True, values[1:] != values[:-1]]] if values.size else values


def _largest_label(n: int, labels: np.ndarray | None) -> int:
    """How many points the most common label has (all n without labels)."""
    if labels is None:
        return n
    labels = np.asarray(labels)
    if labels.dtype.kind in "iu" and labels.size and labels.min() >= 0 and labels.max() < 4 * labels.size:
        return int(np.bincount(labels).max())  # small non-negative labels (tensor numbers): no sort
    return int(np.bincount(np.unique(labels, return_inverse=True)[1]).max())


def _sorted_group_pairs(order: np.ndarray, keys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Every pair of points sharing a key; ``keys`` sorted, ``order`` the points in that order."""
    # Most keys are one point's: the groups of two or more are found from
    # the repeats alone, never from an array of every group.
    repeat = np.flatnonzero(keys[1:] == keys[:-1])  # position i repeats position i + 1's key
    if not repeat.size:
        return np.empty(0, np.int64), np.empty(0, np.int64)
    opens = np.r_[True, repeat[1:] != repeat[:-1] + 1]
    starts = repeat[opens]
    sizes = np.diff(np.r_[np.flatnonzero(opens), repeat.size]) + 1
    # Each position of a group pairs with the positions after it in the group.
    position = np.repeat(starts, sizes) + np.arange(int(sizes.sum())) - np.repeat(np.cumsum(sizes) - sizes, sizes)
    after = np.repeat(starts + sizes, sizes) - position - 1
    first = np.repeat(position, after)
    offsets = np.arange(int(after.sum())) - np.repeat(np.cumsum(after) - after, after) + 1
    return order[first], order[first + offsets]


def _same_cell_pairs(home: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Every pair of points that share a home cell."""
    order = np.argsort(home, kind="stable")
    keys = home[order]
    starts = np.flatnonzero(np.r_[True, keys[1:] != keys[:-1]])
    sizes = np.diff(np.r_[starts, keys.size])
    crowded = sizes > 1
    if not crowded.any():
        return np.empty(0, np.int64), np.empty(0, np.int64)
    a_list, b_list = [], []
    for start, size in zip(starts[crowded], sizes[crowded]):
        members = order[start : start + size]
        i, j = np.triu_indices(size, 1)
        a_list.append(members[i])
        b_list.append(members[j])
    return np.concatenate(a_list), np.concatenate(b_list)


def _probe_pairs(home: np.ndarray, probe_point: np.ndarray, probe_key: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Pairs (probing point, point whose home cell it probes)."""
    order = np.argsort(home)
    sorted_home = home[order]
    porder = np.argsort(probe_key)  # sorted look-ups stay cache friendly
    probe_key, probe_point = probe_key[porder], probe_point[porder]
    start = np.searchsorted(sorted_home, probe_key, side="left")
    stop = np.searchsorted(sorted_home, probe_key, side="right")
    counts = stop - start
    hit = counts > 0
    start, counts, probe_point = start[hit], counts[hit], probe_point[hit]
    a = np.repeat(probe_point, counts)
    offsets = np.arange(counts.sum()) - np.repeat(np.cumsum(counts) - counts, counts)
    b = order[np.repeat(start, counts) + offsets]
    return a, b


def crowd_leaders(points: np.ndarray, radius: float, limit: int = 32, seed: int = 0) -> np.ndarray:
    """For each point, the point it is attached to (itself when free), as an index array.

    Points are bucketed in the cells ``close_pairs`` uses. In a cell holding
    more than ``limit`` points, the first point not yet attached leads, and
    every point within ``radius`` of it attaches to it; the next unattached
    point leads next. A cluster of n mutually close points then costs about
    n distances instead of its n^2 / 2 pairs. Cells of ``limit`` points or
    fewer, and the leaders, are left to ``close_pairs``. A cell stops
    electing leaders after ``limit`` of them (its points are then not one
    cluster), so the work stays within ``limit`` distances per point.
    """
    points = np.asarray(points)
    if points.dtype not in (np.float32, np.float64):
        points = points.astype(np.float64)
    n = len(points)
    leader = np.arange(n)
    if n <= limit:
        return leader
    dims = max(1, min(points.shape[1], math.ceil(math.log(n) / math.log(_SPLIT)) + 1))
    coords = _project(points, (_projection(points.shape[1], dims, seed) / (_CELL * radius)).astype(points.dtype))
    cells = np.floor(coords.astype(np.float64)).astype(np.int64)
    mult = np.random.default_rng(seed + 1).integers(1, 1 << 61, size=dims, dtype=np.int64) | 1
    home = cells @ mult
    order = np.argsort(home, kind="stable")  # stable: a cell's points stay in input order
    keys = home[order]
    starts = np.flatnonzero(np.r_[True, keys[1:] != keys[:-1]])
    sizes = np.diff(np.r_[starts, n])
    for start, size in zip(starts[sizes > limit], sizes[sizes > limit]):
        rest = order[start : start + size]
        for _ in range(limit):
            if not rest.size:
                break
            head = rest[0]
            diff = points[rest] - points[head]
            close = np.einsum("ij,ij->i", diff, diff) <= radius * radius
            close[0] = True
            leader[rest[close]] = head
            rest = rest[~close]
    return leader


def _float_points(points: np.ndarray) -> np.ndarray:
    """The points as float32 or float64 (kept as they are), other dtypes as float64."""
    points = np.asarray(points)
    return points if points.dtype in (np.float32, np.float64) else points.astype(np.float64)
