"""Near-equal permuted copies: candidates from permutation-invariant bounds, then a matching.

Exact permuted copies are found by hashing (``permuted``); a copy that is
only near-equal once permuted (a re-saved fine-tune, a cast and back, noise)
needs distances. Everything here works on float64 copies of two tensors of
one shape, ``a`` (kept) and ``b`` (the candidate copy), and the one relative
distance ``||a[rows][:, cols] - b|| / max(||a||, ||b||)`` that ``--tol`` bounds.

Each screen is a lower bound of the distance under the best permutation, so
a pair it drops cannot be within tol, and no copy is missed:

1. ``sketch``: sorted row norms, then sorted column norms. A row's norm does
   not depend on its columns' order, and sorted order is the best matching of
   two lists of numbers, so the sketches' distance is at most ``sqrt(2)``
   times the tensors' distance under any row and column permutation.
2. sorted lines (in ``match``): every row sorted (unchanged by a column
   permutation), and each row of ``b`` paired with its nearest sorted row of
   ``a``. Summed over rows, that is at most the distance under the best
   permutation. It separates unrelated tensors whose value distributions
   agree (two random matrices of one shape pass the norm sketch, not this).

The same sums (and the same for columns) give the first guess: rows by
nearest sorted row, columns by nearest sorted column; if that guess is not
within the limit, alternately rows given the columns and columns given the
rows, each by nearest neighbour when that is a
bijection and by ``scipy.optimize.linear_sum_assignment`` (the optimal
assignment) when it is not, until neither changes. Whatever it returns is
confirmed on the whole tensor by the caller's measure.
"""

from __future__ import annotations

import logging

import numpy as np

__all__ = ["sketch", "sketch_bound", "match", "MAX_REFINE"]

logger = logging.getLogger(__name__)

MAX_REFINE = 6  # alternating row/column passes before giving up (a true copy settles in one or two)
# Rounding in the float64 sums (of float32 inputs): far below any tolerance, far above zero.
_SLACK = 1 + 1e-9


def sketch(a: np.ndarray) -> np.ndarray:
    """Sorted row norms then sorted column norms (float64): unchanged by any row and column permutation."""
    return np.concatenate([np.sort(np.linalg.norm(a, axis=1)), np.sort(np.linalg.norm(a, axis=0))])


def sketch_bound(sketch_a: np.ndarray, sketch_b: np.ndarray) -> float:
    """A lower bound of ``min over permutations ||a[rows][:, cols] - b||`` from the two sketches."""
    return float(np.linalg.norm(sketch_a - sketch_b)) / np.sqrt(2) / _SLACK


def _squared_distances(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """||x_i - y_j||^2 for every row pair, by one matrix product (clipped at 0 against cancellation)."""
    d = (x * x).sum(axis=1)[:, None] + (y * y).sum(axis=1)[None, :] - 2.0 * (x @ y.T)
    return np.maximum(d, 0.0)


def _lines_bound(a_sorted: np.ndarray, b_sorted: np.ndarray) -> tuple[float, np.ndarray]:
    """(lower bound, squared distances): each sorted line of b to its nearest sorted line of a."""
    cost = _squared_distances(b_sorted, a_sorted)
    return float(np.sqrt(cost.min(axis=1).sum())) / _SLACK, cost


def _assign(cost: np.ndarray) -> np.ndarray:
    """order with copy line i matched to kept line order[i]: nearest neighbours if they form a bijection, else the optimal assignment."""
    nearest = cost.argmin(axis=1)
    if len(np.unique(nearest)) == len(nearest):
        return nearest
    from scipy.optimize import linear_sum_assignment

    _, order = linear_sum_assignment(cost)
    return np.asarray(order)


def match(a: np.ndarray, b: np.ndarray, limit: float) -> tuple[np.ndarray, np.ndarray] | None:
    """(rows, cols) with ``||a[rows][:, cols] - b|| <= limit`` as far as alternating assignment finds one; None when a bound rules it out or none is found.

    Float64 inputs of one shape. Rows sorted are unchanged by a column
    permutation (and columns sorted by a row permutation), so the first
    guess matches sorted lines; the two costs also give the lower bounds.
    """
    row_bound, row_cost = _lines_bound(np.sort(a, axis=1), np.sort(b, axis=1))
    if row_bound > limit:
        return None
    col_bound, col_cost = _lines_bound(np.sort(a, axis=0).T, np.sort(b, axis=0).T)
    if col_bound > limit:
        return None
    rows, cols = _assign(row_cost), _assign(col_cost)
    for _ in range(MAX_REFINE):
        if np.linalg.norm(a[rows][:, cols] - b) <= limit:
            return rows, cols
        new_rows = _assign(_squared_distances(b, a[:, cols]))
        new_cols = _assign(_squared_distances(b.T, a[new_rows].T))
        if np.array_equal(new_rows, rows) and np.array_equal(new_cols, cols):
            return None
        rows, cols = new_rows, new_cols
    return None
