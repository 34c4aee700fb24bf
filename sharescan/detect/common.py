"""Helpers the detectors share: byte comparison, sample points, exact distances."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import numpy as np
import numpy.typing as npt

from sharescan.digest import Digest, float_values, matrix_view
from sharescan.dtypes import DTYPES
from sharescan.table import TensorEntry

__all__ = ["bits", "same_bytes", "value_units", "MIN_SEARCH_ELEMENTS", "distance", "Distance", "relative_error"]


def bits(array: np.ndarray) -> np.ndarray:
    """The array's elements as unsigned ints of the same width: bitwise comparison."""
    return array.view(f"u{array.dtype.itemsize}") if array.dtype.kind != "b" else array.view(np.uint8)


def same_bytes(a: np.ndarray, b: np.ndarray) -> bool:
    return a.shape == b.shape and a.dtype.itemsize == b.dtype.itemsize and bool(np.array_equal(bits(a), bits(b)))


# Near and scaled matches are searched only among tensors of at least this
# many elements. Between a handful of numbers such a match says nothing: among
# a million random 4-element tensors thousands of pairs fall within 2e-3 by
# chance (and the search crowds), while 8 random elements are never that close.
# Exact relations (identical, negated) still cover every size.
MIN_SEARCH_ELEMENTS = 8


def value_units(entries: Sequence[TensorEntry], units: Sequence[int], digests: Mapping[int, Digest], min_elements: int = 2) -> list[int]:
    """Units that value relations may use: finite floats with at least ``min_elements`` elements and a nonzero norm."""
    out = []
    for i in units:
        e, d = entries[i], digests[i]
        if DTYPES[e.dtype].is_float and e.numel >= min_elements and not d.nonfinite and d.norm > 0 and d.grid is not None:
            out.append(i)
    return out


def relative_error(diff_norm: npt.ArrayLike, norm_a: npt.ArrayLike, norm_b: npt.ArrayLike) -> np.ndarray:
    """||a - b|| / max(||a||, ||b||), elementwise: the one relative distance.

    The merge test (``--tol``), the reported ``rel_error`` and the tying
    candidates' distance all use it, so nothing reported as merged within
    tol can read as more than tol. Symmetric, and 0 <= . <= 2; two zero
    tensors are at 0, a zero and a nonzero one at infinity.
    """
    diff, scale = np.asarray(diff_norm, np.float64), np.maximum(np.asarray(norm_a, np.float64), np.asarray(norm_b, np.float64))
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(scale > 0, diff / np.where(scale > 0, scale, 1.0), np.where(diff == 0, 0.0, np.inf))


class Distance:
    """Exact distance between two tensors, computed in float64 by row blocks."""

    def __init__(self, max_abs: float, diff_norm: float, norm_a: float, norm_b: float, zero_signs: int = 0) -> None:
        self.max_abs = max_abs
        self.diff_norm = diff_norm
        self.norm_a = norm_a
        self.norm_b = norm_b
        # Elements where one tensor holds +0.0 and the other -0.0: equal, so
        # invisible to max_abs and the norms, yet 1/x turns +inf into -inf.
        self.zero_signs = zero_signs

    @property
    def relative(self) -> float:
        return float(relative_error(self.diff_norm, self.norm_a, self.norm_b))


def distance(a: TensorEntry, b: TensorEntry, transposed: bool = False, block: int = 1 << 16) -> Distance:
    """Distance between a (or a's transpose) and b.

    ``block`` elements at a time: 64 Ki float64 values per array stay in
    cache through the block's passes (a million per block went to memory
    and back for each of them: twice the time).
    """
    x = float_values(a.read(), a.dtype)
    y = float_values(b.read(), b.dtype)
    if transposed:
        x = x.T
    x, y = matrix_view(np.ascontiguousarray(x)) if transposed else matrix_view(x), matrix_view(y)
    rows = max(1, block // max(x.shape[1], 1))
    max_abs = sq = sq_a = sq_b = 0.0
    zero_signs = 0
    for start in range(0, x.shape[0], rows):
        xa = x[start : start + rows].astype(np.float64)
        yb = y[start : start + rows].astype(np.float64)
        diff = xa - yb
        if diff.size:
            max_abs = max(max_abs, float(np.abs(diff).max()))
            # diff == 0 where xa == 0 is yb == 0: only blocks holding a zero can count.
            zero = xa == 0
            if zero.any():
                zero_signs += int(np.count_nonzero(zero & (yb == 0) & (np.signbit(xa) != np.signbit(yb))))
        sq += float(np.einsum("ij,ij->", diff, diff))
        sq_a += float(np.einsum("ij,ij->", xa, xa))
        sq_b += float(np.einsum("ij,ij->", yb, yb))
    return Distance(max_abs, math.sqrt(sq), math.sqrt(sq_a), math.sqrt(sq_b), zero_signs)
