"""Float tensors that are exactly c times another, computed in their own dtype.

"Exactly" means ``Mul(w, c)`` in the tensor's dtype rebuilds the copy bit for
bit, so the merge changes no output. c is taken from the largest-magnitude
element and then checked over the whole tensor.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from sharescan.detect.common import element_at, flat_blocks, same_bytes
from sharescan.detect.relation import BaseRelation, Rebuild, Scope
from sharescan.detect.search import direction_pairs
from sharescan.digest import Digest
from sharescan.dtypes import DTYPES, from_float, neighbours, to_float
from sharescan.groups import Group, Transform
from sharescan.table import TensorEntry

__all__ = ["find_scaled", "scale_exactly", "Scaled", "RELATION"]


def scale_exactly(array: np.ndarray, dtype: str, c: float) -> np.ndarray:
    """``array * c`` computed and rounded in the tensor's dtype, as its storage bits.

    Types numpy lacks are multiplied in float32 and rounded once, as a
    runtime that upcasts them does.
    """
    dt = DTYPES[dtype]
    if not dt.numpy_native:
        return from_float(to_float(array, dtype) * np.float32(c), dtype)
    return np.multiply(array, np.array(c, dtype=dt.storage), dtype=dt.storage)


# Elements taken at a time: the largest magnitude is found, and a candidate
# factor checked, a block at a time, with no temporaries of the tensor's size
# (a pair of 65 MB embeddings took 210 MB more at once), and a pair that is
# not a scaled copy, as most candidates are, is left at its first block.
_BLOCK = 1 << 20


def _ratio(a: TensorEntry, b: TensorEntry) -> float | None:
    """other / rep at rep's largest-magnitude element (the first of equal ones); None where that says no scaled copy."""
    k, largest, start = 0, -1.0, 0
    for block in flat_blocks(a, _BLOCK):
        magnitudes = np.abs(to_float(block, a.dtype))
        at = int(np.argmax(magnitudes))
        if float(magnitudes[at]) > largest:  # strictly: the first of equal maxima, as one argmax over the whole
            k, largest = start + at, float(magnitudes[at])
        start += len(block)
    va, vb = float(to_float(element_at(a, k), a.dtype)[0]), float(to_float(element_at(b, k), b.dtype)[0])
    if va == 0:
        return None
    c = vb / va
    return c if np.isfinite(c) and c not in (0.0, 1.0, -1.0) else None


def _scales_to(rep: TensorEntry, other: TensorEntry, c: float) -> bool:
    """Whether ``scale_exactly(rep, dtype, c)`` is ``other`` bit for bit, checked a block at a time."""
    if rep.shape != other.shape:
        return False
    return all(same_bytes(scale_exactly(r, rep.dtype, c), o) for r, o in zip(flat_blocks(rep, _BLOCK), flat_blocks(other, _BLOCK)))


def find_scaled(entries: Sequence[TensorEntry], units: Sequence[int], digests: Mapping[int, Digest]) -> list[Group]:
    partners: dict[int, list[tuple[int, float]]] = {}
    claimed: set[int] = set()
    for a, b in direction_pairs(entries, units, digests):
        if a in claimed or b in claimed:
            continue
        dtype = entries[a].dtype
        c = _ratio(entries[a], entries[b])
        if c is None:
            continue
        # The ratio of two rounded values can miss the true factor by one unit
        # in the last place: the rounded ratio's neighbours are tried too.
        for c_stored in neighbours(c, dtype):
            if _scales_to(entries[a], entries[b], c_stored):
                partners.setdefault(a, []).append((b, c_stored))
                claimed.add(b)
                break
    return [
        # The representative is "1.0 times itself": reports list its factor too.
        Group("scaled", (a, *(b for b, _ in bs)), transforms=tuple(Transform("scale", c) for c in (1.0, *(c for _, c in bs))))
        for a, bs in partners.items()
        if a not in claimed
    ]


class Scaled(BaseRelation):
    """Rebuilt by ``Mul(kept, c)`` with c stored in the tensor's type; reports give each member's c."""

    name = "scaled"

    def detect(self, scope: Scope) -> list[Group]:
        return find_scaled(scope.entries, scope.units, scope.digests)

    def member_fields(self, transform: Transform) -> tuple[float | None, bool]:
        return transform.scale, False

    def transform_of(self, scale: float | None, transposed: bool) -> Transform:
        return Transform("scale", scale or 0.0)

    def supports(self, transform: Transform, onnx_dtype: int) -> bool:
        from sharescan.onnx_rewrite.rebuild import ARITHMETIC_TYPES

        return onnx_dtype in ARITHMETIC_TYPES

    def rebuild(self, graph: Any, kept: str, dropped: str, transform: Transform, onnx_dtype: int) -> Rebuild:
        from sharescan.onnx_rewrite.rebuild import mul_nodes

        return Rebuild(tuple(mul_nodes(graph, kept, dropped, transform.scale, onnx_dtype)), f"Mul({kept}, {transform.scale:.6g})")


RELATION = Scaled()
