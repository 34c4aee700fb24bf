"""Float tensors that are exactly another's negation (every sign bit flipped).

Bitwise, so that ``Neg(w)`` rebuilds the copy exactly, zeros' signs included
(the fnuz float8 types have no -0: their zeros stay zeros).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import cast

import numpy as np

from sharescan.detect.common import MIN_SEARCH_ELEMENTS, bits, value_units
from sharescan.digest import Digest, float_values
from sharescan.dtypes import DTYPES, negate_bits
from sharescan.detect.near import search_vectors
from sharescan.groups import Group
from sharescan.neighbors import crowd_leaders, unit_rows
from sharescan.table import TensorEntry

__all__ = ["find_negated", "direction_pairs"]

# Grid samples of w and c*w point the same way up to the dtype's rounding;
# this radius (on unit vectors) is far above rounding and far below unrelated.
_DIRECTION_RADIUS = 1e-2


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
    return [Group("negated", (a, *bs)) for a, bs in partners.items() if a not in claimed]
