"""Float tensors that are exactly another's negation (every sign bit flipped).

Bitwise, so that ``Neg(w)`` rebuilds the copy exactly, zeros' signs included
(the fnuz float8 types have no -0: their zeros stay zeros).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, cast

import numpy as np

from sharescan.detect.common import bits, value_units
from sharescan.detect.relation import BaseRelation, Rebuild, Scope
from sharescan.digest import Digest
from sharescan.dtypes import DTYPES, negate_bits
from sharescan.groups import NEGATE, SAME, Group, Transform
from sharescan.table import TensorEntry

__all__ = ["find_negated", "Negated", "RELATION"]

def find_negated(entries: Sequence[TensorEntry], units: Sequence[int], digests: Mapping[int, Digest]) -> list[Group]:
    """Exact negations, joined on their grid samples' bits: linear in the number of tensors.

    A negated copy's grid sample is the kept tensor's sample with every sign
    bit flipped, bit for bit, so a hash of the flipped sample finds its
    partners without comparing pairs; the whole tensor then confirms.
    """
    by_grid: dict[tuple[str, tuple[int, ...], bytes], list[int]] = {}
    flipped_key: dict[int, bytes] = {}
    same_kind: dict[tuple[str, tuple[int, ...]], list[int]] = {}
    for i in value_units(entries, units, digests):
        if DTYPES[entries[i].dtype].signed:
            same_kind.setdefault((entries[i].dtype, entries[i].shape), []).append(i)
    for (dtype, shape), members in same_kind.items():
        # One stack per dtype and shape: the bit flips run once, not per tensor.
        grids = np.stack([cast(np.ndarray, digests[i].grid).reshape(-1) for i in members])
        plain, flipped = bits(grids), negate_bits(grids, dtype)
        for k, i in enumerate(members):
            by_grid.setdefault((dtype, shape, plain[k].tobytes()), []).append(i)
            flipped_key[i] = flipped[k].tobytes()
    candidates = list(flipped_key)
    order = {u: k for k, u in enumerate(units)}
    partners: dict[int, list[int]] = {}
    claimed: set[int] = set()
    for a in sorted(candidates, key=order.__getitem__):
        if a in claimed:
            continue
        e = entries[a]
        later = [b for b in by_grid.get((e.dtype, e.shape, flipped_key[a]), ()) if order[b] > order[a] and b not in claimed]
        if not later:
            continue
        negated = negate_bits(e.read(), e.dtype)
        for b in later:
            if np.array_equal(negated, bits(entries[b].read())):
                partners.setdefault(a, []).append(b)
                claimed.add(b)
    return [Group("negated", (a, *bs), transforms=(SAME, *(NEGATE for _ in bs))) for a, bs in partners.items() if a not in claimed]


class Negated(BaseRelation):
    """Rebuilt by ``Neg(kept)``, where onnxruntime has the kernel."""

    name = "negated"

    def detect(self, scope: Scope) -> list[Group]:
        return find_negated(scope.entries, scope.units, scope.digests)

    def transform_of(self, scale: float | None, transposed: bool) -> Transform:
        return NEGATE

    def supports(self, transform: Transform, onnx_dtype: int) -> bool:
        from sharescan.onnx_rewrite.rebuild import ARITHMETIC_TYPES

        return onnx_dtype in ARITHMETIC_TYPES

    def rebuild(self, graph: Any, kept: str, dropped: str, transform: Transform, onnx_dtype: int) -> Rebuild:
        from sharescan.onnx_rewrite.rebuild import neg_node

        return Rebuild((neg_node(kept, dropped),), f"Neg({kept})")


RELATION = Negated()
