"""One-dimensional k-means: an exact dynamic programme and Lloyd's iterations.

Both work on a weighted set of points (a histogram): each point is a bin
holding ``count`` values whose sum and sum of squares are kept, so the
squared error of any clustering that keeps bins whole is exact. A tensor of
any size is read once into a histogram; every codebook after that costs time
in the number of bins, not of elements. Small tensors use their sorted
distinct values as the bins, so there everything is exact.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np

__all__ = ["Histogram", "histogram", "exact_kmeans", "lloyd_kmeans", "kmeans", "assign", "sse", "EXACT_MAX_K"]

logger = logging.getLogger(__name__)

# Distinct values up to this many are the bins themselves (exact); above it, uniform bins.
EXACT_VALUES = 65536
# Uniform bins for a large tensor: fine enough that a bin straddling a cluster
# boundary costs little, small enough that Lloyd on the bins takes milliseconds.
DEFAULT_BINS = 65536
# The exact programme costs O(k * n^2) on n points: it runs up to k = 16 (4 bits)
# on at most this many points (coarsened by equal counts); Lloyd takes over above.
EXACT_MAX_K = 16
EXACT_MAX_POINTS = 1024


@dataclass(frozen=True)
class Histogram:
    """Weighted points in increasing order: each a bin of values (empty bins left out)."""

    count: np.ndarray  # values in each bin (float64, so weights need not be integers)
    total: np.ndarray  # their sum
    squares: np.ndarray  # their sum of squares

    @property
    def mean(self) -> np.ndarray:
        return self.total / self.count

    @property
    def norm_sq(self) -> float:
        return float(self.squares.sum())


def histogram(values: np.ndarray, bins: int = DEFAULT_BINS) -> Histogram:
    """The weighted points of a finite float array (one pass for a large one).

    Up to ``EXACT_VALUES`` elements, every distinct value is a point. Above
    it, ``bins`` uniform bins between the extremes (np.bincount, the fast path).
    """
    x = np.asarray(values, dtype=np.float64).reshape(-1)
    if x.size <= EXACT_VALUES:
        v, c = np.unique(x, return_counts=True)
        c = c.astype(np.float64)
        return Histogram(c, v * c, v * v * c)
    lo, hi = float(x.min()), float(x.max())
    if hi == lo:
        n = float(x.size)
        return Histogram(np.array([n]), np.array([lo * n]), np.array([lo * lo * n]))
    idx = ((x - lo) * ((bins - 1) / (hi - lo))).astype(np.int64)
    count = np.bincount(idx, minlength=bins).astype(np.float64)
    total = np.bincount(idx, weights=x, minlength=bins)
    squares = np.bincount(idx, weights=x * x, minlength=bins)
    keep = count > 0
    return Histogram(count[keep], total[keep], squares[keep])


def _coarsen(h: Histogram, points: int) -> Histogram:
    """At most ``points`` points: neighbours merged into runs of about equal count."""
    if h.count.size <= points:
        return h
    cum = np.cumsum(h.count)
    group = np.minimum((cum - h.count / 2) * points // cum[-1], points - 1).astype(np.int64)
    merged = (np.bincount(group, weights=a, minlength=points) for a in (h.count, h.total, h.squares))
    return Histogram(*_nonempty(*merged))


def _nonempty(count: np.ndarray, total: np.ndarray, squares: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    keep = count > 0
    return count[keep], total[keep], squares[keep]


def exact_kmeans(h: Histogram, k: int) -> np.ndarray:
    """Optimal centers (increasing) for ``k`` clusters of contiguous points: the 1-D k-means optimum.

    Dynamic programme over the sorted points (in 1-D an optimal cluster is an
    interval): D[m][j] = min over i of D[m-1][i] + cost(i, j), cost from prefix
    sums. O(k n^2) time in numpy, one n x n layer at a time.
    """
    n = h.count.size
    if k >= n:
        return h.mean.copy()
    c0 = np.concatenate(([0.0], np.cumsum(h.count)))
    s1 = np.concatenate(([0.0], np.cumsum(h.total)))
    s2 = np.concatenate(([0.0], np.cumsum(h.squares)))
    i = np.arange(n + 1)[:, None]
    j = np.arange(n + 1)[None, :]
    with np.errstate(divide="ignore", invalid="ignore"):
        w = c0[j] - c0[i]
        cost = (s2[j] - s2[i]) - (s1[j] - s1[i]) ** 2 / w
    cost = np.where(j > i, np.maximum(cost, 0.0), np.inf)  # cost[i, j]: points i..j-1 as one cluster
    best = cost[0].copy()  # one cluster over the first j points
    # Laid out [j, i] so each argmin runs along contiguous memory, into one
    # reused buffer: half the time of reducing down columns (one codebook per
    # group of rows runs this once a group). Same values, same first minima.
    cost_t = np.ascontiguousarray(cost.T)
    total = np.empty_like(cost_t)
    back = np.zeros((k, n + 1), dtype=np.int64)
    ends = np.arange(n + 1)
    for m in range(1, k):
        np.add(cost_t, best[None, :], out=total)
        back[m] = np.argmin(total, axis=1)
        best = total[ends, back[m]]
    cuts = [n]
    for m in range(k - 1, 0, -1):
        cuts.append(int(back[m][cuts[-1]]))
    cuts.append(0)
    cuts.reverse()
    return np.array([(s1[b] - s1[a]) / (c0[b] - c0[a]) for a, b in zip(cuts[:-1], cuts[1:]) if b > a])


def _plusplus(h: Histogram, k: int, rng: np.random.Generator) -> np.ndarray:
    """k-means++ seeds drawn among the points, each weighted by its count."""
    x = h.mean
    centers = [x[rng.choice(x.size, p=h.count / h.count.sum())]]
    d2 = (x - centers[0]) ** 2
    for _ in range(1, k):
        p = d2 * h.count
        s = p.sum()
        if s <= 0:
            break
        centers.append(x[rng.choice(x.size, p=p / s)])
        d2 = np.minimum(d2, (x - centers[-1]) ** 2)
    return np.unique(np.array(centers))


def lloyd_kmeans(h: Histogram, k: int, seed: int = 0, iterations: int = 100, init: np.ndarray | None = None, restarts: int = 3) -> np.ndarray:
    """Lloyd's iterations on the points from k-means++ seeds (or ``init``); centers increasing.

    Without ``init``, the best of ``restarts`` seedings: one can stop in a poor
    local optimum, and each costs milliseconds on a histogram.
    """
    if init is None and restarts > 1:
        rng = np.random.default_rng(seed)
        runs = [lloyd_kmeans(h, k, int(rng.integers(2**31)), iterations, restarts=1) for _ in range(restarts)]
        return min(runs, key=lambda c: sse(h, c))
    x = h.mean
    if k >= x.size:
        return x.copy()
    centers = np.sort(init) if init is not None else _plusplus(h, k, np.random.default_rng(seed))
    for _ in range(iterations):
        label = assign(x, centers)
        count = np.bincount(label, weights=h.count, minlength=centers.size)
        total = np.bincount(label, weights=h.total, minlength=centers.size)
        used = count > 0
        new = total[used] / count[used]
        if new.size == centers.size and np.array_equal(new, centers):
            break
        centers = new
    return centers


def kmeans(h: Histogram, k: int, seed: int = 0) -> np.ndarray:
    """Exact where cheap (k <= 16 on a coarsened histogram, then polished by Lloyd on all points), else Lloyd."""
    if k >= h.count.size:
        return h.mean.copy()
    if k <= EXACT_MAX_K:
        return lloyd_kmeans(h, k, init=exact_kmeans(_coarsen(h, EXACT_MAX_POINTS), k))
    return lloyd_kmeans(h, k, seed)


def assign(values: np.ndarray, centers: np.ndarray) -> np.ndarray:
    """Index of the nearest center (``centers`` increasing) for each value: a binary search over midpoints."""
    return np.searchsorted((centers[1:] + centers[:-1]) / 2, values).astype(np.int64)


def sse(h: Histogram, centers: np.ndarray) -> float:
    """Squared error of the points' bins each sent whole to its nearest center.

    Exact on distinct values; on uniform bins an upper bound of the error of
    sending every value to its nearest center.
    """
    label = assign(h.mean, centers)
    c = centers[label]
    return float(max(0.0, (h.squares - 2 * c * h.total + c * c * h.count).sum()))
