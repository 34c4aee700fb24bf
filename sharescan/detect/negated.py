"""Float tensors that are exactly another's negation (every sign bit flipped).

Bitwise, so that ``Neg(w)`` rebuilds the copy exactly, zeros' signs included.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from sharescan.detect.identical import same_bytes
from sharescan.digest import Digest
from sharescan.dtypes import DTYPES
from sharescan.groups import Group
from sharescan.table import TensorEntry

__all__ = ["find_negated", "scale_buckets", "flip_sign"]


def scale_buckets(entries: Sequence[TensorEntry], units: Sequence[int], digests: Mapping[int, Digest]) -> list[list[int]]:
    """Units that may be scalar multiples of each other (same dtype, shape, scale key)."""
    buckets: dict[tuple[str, tuple[int, ...], tuple[int, int]], list[int]] = {}
    for i in units:
        d = digests[i]
        if d.scale_key is not None and not d.nonfinite:
            e = entries[i]
            buckets.setdefault((e.dtype, e.shape, d.scale_key), []).append(i)
    return [b for b in buckets.values() if len(b) > 1]


def flip_sign(array: np.ndarray, dtype: str) -> np.ndarray:
    dt = DTYPES[dtype]
    bits = np.ascontiguousarray(array).view(f"u{dt.itemsize}")
    return bits ^ np.array(dt.sign_mask, dtype=bits.dtype)


def find_negated(entries: Sequence[TensorEntry], units: Sequence[int], digests: Mapping[int, Digest]) -> list[Group]:
    groups = []
    for bucket in scale_buckets(entries, units, digests):
        claimed: set[int] = set()
        for a in bucket:
            if a in claimed:
                continue
            negated = flip_sign(entries[a].read(), entries[a].dtype)
            copies = [b for b in bucket if b != a and b not in claimed and same_bytes(negated, entries[b].read())]
            if copies:
                claimed.update([a, *copies])
                groups.append(Group("negated", (a, *copies)))
    return groups
