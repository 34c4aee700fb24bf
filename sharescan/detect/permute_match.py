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
2. sorted lines: every row sorted (unchanged by a column permutation), and
   each row of ``b`` paired with its nearest sorted row of ``a``. Summed
   over rows, that is at most the distance under the best permutation; the
   same for columns. It separates unrelated tensors whose value
   distributions agree (two random matrices of one shape pass the norm
   sketch, not this). ``code_screen`` takes it on each sorted line's leading
   DCT terms (``codes``; an orthonormal projection only shortens distances,
   so it is a lower bound too, at 32 numbers a line), a block of the copy's
   lines at a time: an unrelated pair is refused within a block or two.
   ``match`` then takes it in full, on the way to its first guess.

``match`` guesses rows by nearest sorted row and columns by nearest
sorted column; if that guess is not
within the limit, alternately rows given the columns and columns given the
rows, each by nearest neighbour when that is a
bijection and by ``scipy.optimize.linear_sum_assignment`` (the optimal
assignment) when it is not, until neither changes. Whatever it returns is
confirmed on the whole tensor by the caller's measure.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

__all__ = ["Codes", "codes", "code_screen", "Prepared", "prepare", "sketch", "sketch_bound", "match", "MAX_REFINE", "SCREEN_BLOCK", "CODE_TERMS"]

logger = logging.getLogger(__name__)

MAX_REFINE = 6  # alternating row/column passes before giving up (a true copy settles in one or two)
# Rows of the copy sorted and compared in the screen's first step (each next
# step doubles): an unrelated tensor is usually refused within the first,
# at a small part of the cost of the whole bound.
SCREEN_BLOCK = 32
# Leading orthonormal DCT terms kept of each sorted line. Sorted rows of
# random data differ mostly in smooth ways (scale, shift, tails: a quantile
# curve), so 32 terms keep about half of their squared distance, enough to
# refuse an unrelated pair within a few rows, at 32 numbers a line.
CODE_TERMS = 32
_CODE_CHUNK = 1 << 22  # elements per DCT chunk, so a large tensor is not widened to float64 whole
_SMALL_PRODUCT = 1 << 22  # multiply-adds below which einsum beats a threaded BLAS call
# Rounding in the float64 sums (of float32 inputs): far below any tolerance, far above zero.
_SLACK = 1 + 1e-9


@dataclass(frozen=True)
class Codes:
    """Each sorted row (or each sorted column) of a tensor, projected on the leading DCT terms (float64)."""

    lines: np.ndarray  # (rows or cols, up to CODE_TERMS)
    sq: np.ndarray  # their squared norms


def _leading_dct(lines: np.ndarray, terms: int) -> np.ndarray:
    """The first ``terms`` coefficients of each row's orthonormal DCT-II (float64): scipy's, or by numpy's FFT without scipy."""
    try:
        from scipy.fft import dct
    except ImportError:
        return _leading_dct_numpy(lines, terms)
    return np.asarray(dct(lines.astype(np.float64), type=2, norm="ortho", axis=1)[:, :terms])


def _leading_dct_numpy(lines: np.ndarray, terms: int) -> np.ndarray:
    """The same by one complex FFT of the reordered rows (Makhoul, 1980)."""
    n = lines.shape[1]
    x = lines.astype(np.float64)
    reordered = np.concatenate([x[:, 0::2], x[:, 1::2][:, ::-1]], axis=1)
    spectrum = np.fft.fft(reordered, axis=1)[:, :terms]
    k = np.arange(terms)
    out = 2.0 * (spectrum * np.exp(-1j * np.pi * k / (2 * n))).real
    out *= np.sqrt(1.0 / (2 * n))
    out[:, 0] /= np.sqrt(2.0)
    return out


def codes(values: np.ndarray, axis: int) -> Codes:
    """Codes of a 2-D float array's rows (axis 0) or columns (axis 1).

    An orthonormal projection only shortens distances, so distances between
    codes bound those between the sorted lines from below.
    """
    lines = np.sort(values if axis == 0 else np.ascontiguousarray(values.T), axis=1)
    terms = min(CODE_TERMS, lines.shape[1])
    step = max(1, _CODE_CHUNK // lines.shape[1])
    out = np.concatenate([_leading_dct(lines[k : k + step], terms) for k in range(0, len(lines), step)])
    return Codes(out, (out * out).sum(axis=1))


def _coded_blocks(values: np.ndarray, axis: int) -> Iterator[np.ndarray]:
    """The copy's codes, SCREEN_BLOCK lines first and twice as many each step: a pair refused early never codes the rest."""
    lines = values if axis == 0 else values.T
    start, size = 0, SCREEN_BLOCK
    while start < len(lines):
        block = np.sort(lines[start : start + size], axis=1)
        yield _leading_dct(block, min(CODE_TERMS, block.shape[1]))
        start, size = start + size, 2 * size


def code_screen(kept: Codes, copy: np.ndarray, axis: int, limit: float) -> bool:
    """False when no permutation brings ``copy`` within ``limit`` of the tensor ``kept`` codes (its lines along ``axis`` say so)."""
    return _within(kept.lines, kept.sq, _coded_blocks(copy, axis), limit)


@dataclass(frozen=True)
class Prepared:
    """A kept tensor (float64) with what every comparison against it reuses."""

    a: np.ndarray
    sorted_rows: np.ndarray  # each row sorted: unchanged by a column permutation
    sorted_cols: np.ndarray  # each column sorted, as rows: unchanged by a row permutation
    row_sq: np.ndarray  # squared norms of sorted_rows' rows (those of a's rows)
    col_sq: np.ndarray


def prepare(a: np.ndarray) -> Prepared:
    rows, cols = np.sort(a, axis=1), np.ascontiguousarray(np.sort(a, axis=0).T)
    return Prepared(a, rows, cols, (rows * rows).sum(axis=1), (cols * cols).sum(axis=1))


def sketch(a: np.ndarray) -> np.ndarray:
    """Sorted row norms then sorted column norms (float64): unchanged by any row and column permutation."""
    return np.concatenate([np.sort(np.linalg.norm(a, axis=1)), np.sort(np.linalg.norm(a, axis=0))])


def sketch_bound(sketch_a: np.ndarray, sketch_b: np.ndarray) -> float:
    """A lower bound of ``min over permutations ||a[rows][:, cols] - b||`` from the two sketches."""
    return float(np.linalg.norm(sketch_a - sketch_b)) / np.sqrt(2) / _SLACK


def _squared_distances(x: np.ndarray, y: np.ndarray, y_sq: np.ndarray | None = None) -> np.ndarray:
    """||x_i - y_j||^2 for every row pair, by one matrix product (clipped at 0 against cancellation)."""
    y_sq = (y * y).sum(axis=1) if y_sq is None else y_sq
    # A small product goes through einsum's own loop: a threaded BLAS call
    # can cost more in waking its threads than the product itself.
    product = np.einsum("ik,jk->ij", x, y) if x.shape[0] * y.shape[0] * x.shape[1] < _SMALL_PRODUCT else x @ y.T
    d = (x * x).sum(axis=1)[:, None] + y_sq[None, :] - 2.0 * product
    return np.maximum(d, 0.0)


def _within(kept_lines: np.ndarray, kept_sq: np.ndarray, copy_blocks: Iterator[np.ndarray], limit: float) -> bool:
    """Whether each copy line to its nearest kept line, squared and summed, stays within ``limit`` squared.

    Blockwise: the partial sum only grows, so the first block past the limit decides.
    """
    bound = (limit * _SLACK) ** 2
    total = 0.0
    for block in copy_blocks:
        total += float(_squared_distances(block, kept_lines, kept_sq).min(axis=1).sum())
        if total > bound:
            return False
    return True


def _assign(cost: np.ndarray) -> np.ndarray:
    """order with copy line i matched to kept line order[i]: nearest neighbours if they form a bijection, else the optimal assignment.

    scipy is optional: without it, the cheapest pairs are taken first
    (greedy), which may miss a copy the optimal assignment would find; never
    a wrong one, as every match is confirmed on the whole tensor.
    """
    nearest = cost.argmin(axis=1)
    if len(np.unique(nearest)) == len(nearest):
        return nearest
    try:
        from scipy.optimize import linear_sum_assignment
    except ImportError:
        return _greedy(cost)
    _, order = linear_sum_assignment(cost)
    return np.asarray(order)


def _greedy(cost: np.ndarray) -> np.ndarray:
    order = np.full(cost.shape[0], -1)
    taken = np.zeros(cost.shape[1], dtype=bool)
    for flat in np.argsort(cost, axis=None, kind="stable"):
        i, j = divmod(int(flat), cost.shape[1])
        if order[i] < 0 and not taken[j]:
            order[i], taken[j] = j, True
    return order


def match(kept: Prepared, b: np.ndarray, limit: float) -> tuple[np.ndarray, np.ndarray] | None:
    """(rows, cols) with ``||a[rows][:, cols] - b|| <= limit`` as far as alternating assignment finds one; None when none is found.

    Rows sorted are unchanged by a column permutation (and columns sorted by
    a row permutation): each copy line's distance to its nearest sorted kept
    line, summed, bounds the distance from below (over the limit: None), and
    the nearest lines are the first guess.
    """
    a = kept.a
    row_cost = _squared_distances(np.sort(b, axis=1), kept.sorted_rows, kept.row_sq)
    if row_cost.min(axis=1).sum() > (limit * _SLACK) ** 2:
        return None
    col_cost = _squared_distances(np.sort(b, axis=0).T, kept.sorted_cols, kept.col_sq)
    if col_cost.min(axis=1).sum() > (limit * _SLACK) ** 2:
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
