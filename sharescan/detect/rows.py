"""Duplicate rows: rows (first axis) equal, or near-equal within row_tol,
inside one tensor and across tensors of the same row shape and dtype.

The case to catch is an embedding with hundreds of identical untrained rows.
Such a tensor can be stored as its distinct rows plus an int32 index (ONNX
``Gather`` takes int32 indices), so a finding reclaims the merged rows minus
the index's bytes, and is only reported when that is positive.

Rows are bucketed by their digest sample (ROW_SAMPLE elements each): rows
with identical samples are compared byte for byte, within and across
tensors. With ``row_tol``, one row per distinct class is searched for near
neighbours within its own tensor (where untrained rows sit together);
searching every row against every other tensor's would cost more than the
rest of the analysis for little gain, since near rows across tensors almost
always come with near tensors.

The near search runs on the row samples the digest already holds, through a
banded index (``neighbors.band_pairs``): each row takes a few keys (its slab
in every band, and the slabs above the edges it lies near), rows sharing a
key are paired by one sort instead of every row being compared with every
other, and no pair within the search radius is missed. Candidates are then measured on their full
rows, in blocks, with the test used before: ``||x - y|| <= row_tol * max(||x||, ||y||)``.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
import xxhash

from sharescan.detect.relation import BaseRelation, Ledger, Rebuild, Scope
from sharescan.detect.search import MARGIN
from sharescan.digest import Digest, float_values, matrix_view
from sharescan.dtypes import DTYPES
from sharescan.groups import Group, RowStats
from sharescan.neighbors import band_pairs, unit_rows
from sharescan.sources.mapped import file_range
from sharescan.table import TensorEntry

__all__ = ["find_rows", "INDEX_ITEMSIZE", "Rows", "RELATION"]

INDEX_ITEMSIZE = 4  # int32 row index


def find_rows(entries: Sequence[TensorEntry], units: Sequence[int], digests: Mapping[int, Digest], row_tol: float | None) -> list[Group]:
    families: dict[tuple[str, tuple[int, ...]], list[int]] = {}
    for i in units:
        if digests[i].row_sample is not None and not digests[i].nonfinite:
            families.setdefault((entries[i].dtype, entries[i].shape[1:]), []).append(i)
    groups = []
    for members in families.values():
        groups.extend(_family(entries, members, digests, row_tol))
    return groups


def _family(entries: Sequence[TensorEntry], members: list[int], digests: Mapping[int, Digest], row_tol: float | None) -> list[Group]:
    """Row groups among tensors of one row shape and dtype."""
    owner = np.concatenate([np.full(entries[u].shape[0], k) for k, u in enumerate(members)])
    samples = np.concatenate([digests[u].row_sample for u in members])
    row = _FamilyRows(entries, members, owner)
    label = _exact_labels(samples, row)
    errors = np.zeros(len(owner))  # squared distance of each merged row to its representative
    abs_errors = np.zeros(len(owner))
    dtype = entries[members[0]].dtype
    if row_tol is not None and DTYPES[dtype].is_float:
        # Near: one row per exact class, searched on unit samples, confirmed in full.
        _merge_near_rows(samples, owner, label, dtype, row, row_tol, errors, abs_errors)
    row_bytes = entries[members[0]].nbytes // entries[members[0]].shape[0]
    n_rows_of = np.array([entries[u].shape[0] for u in members], dtype=np.int64)
    _keep_unprofitable(label, owner, n_rows_of, row_bytes, errors, abs_errors)
    merged = label != np.arange(len(owner))
    if not merged.any():
        return []
    merged_per = np.bincount(owner[merged], minlength=len(members))
    sq_per = np.bincount(owner, weights=errors, minlength=len(members))
    abs_per = np.zeros(len(members))
    np.maximum.at(abs_per, owner, abs_errors)
    norms = np.array([digests[u].norm for u in members])
    return [
        _group(members, ks, n_rows_of, merged_per, row_bytes, float(abs_per[ks].max()), _rel_error(sq_per[ks], norms[ks]))
        for ks in _components(len(members), owner, label, merged)
    ]


class _FamilyRows:
    """Rows of a family by global row number, reading each tensor once, when first needed."""

    def __init__(self, entries: Sequence[TensorEntry], members: list[int], owner: np.ndarray) -> None:
        self._entries = entries
        self._members = members
        self._owner = owner
        self._local = np.concatenate([np.arange(entries[u].shape[0]) for u in members])
        self._views: dict[int, np.ndarray] = {}

    def _view(self, k: int) -> np.ndarray:
        if k not in self._views:
            read = self._entries[self._members[k]].read
            # Only some rows of a tensor are read here: a mapping that is not
            # pre-faulted makes only their pages resident, not the tensor's
            # (a 128 MiB embedding with 100 equal rows: +136 MiB of peak memory before).
            self._views[k] = matrix_view(read(populate=False) if file_range(read) is not None else read())  # type: ignore[call-arg]
        return self._views[k]

    def __call__(self, r: int) -> np.ndarray:
        """Row ``r``."""
        return self._view(int(self._owner[r]))[self._local[r]]

    def take(self, rs: np.ndarray) -> np.ndarray:
        """Rows ``rs`` (any tensors of the family) as one matrix, in that order."""
        owners = self._owner[rs]
        first = self._view(int(owners[0]))
        out = np.empty((len(rs), first.shape[1]), dtype=first.dtype)
        for k in np.unique(owners):
            at = np.flatnonzero(owners == k)
            out[at] = self._view(int(k))[self._local[rs[at]]]
        return out


def _exact_labels(samples: np.ndarray, row: Callable[[int], np.ndarray]) -> np.ndarray:
    """Each row's representative row: rows whose samples agree, confirmed on their full bytes."""
    label = np.arange(len(samples))
    keys = _row_keys(samples)
    # Most rows' keys are unique: one plain sort says which are not, and only
    # those rows are sorted again, stably, so each class's rows come
    # together in row order (a scan per class would cost classes x rows).
    sorted_keys = np.sort(keys)
    repeated = sorted_keys[1:] == sorted_keys[:-1]
    if not repeated.any():
        return label
    shared = sorted_keys[1:][repeated]
    shared = shared[np.r_[True, shared[1:] != shared[:-1]]]
    at = np.minimum(np.searchsorted(shared, keys), len(shared) - 1)
    rows = np.flatnonzero(shared[at] == keys)
    order = rows[np.argsort(keys[rows], kind="stable")]
    sorted_keys = keys[order]
    starts = np.flatnonzero(np.r_[True, sorted_keys[1:] != sorted_keys[:-1]])
    sizes = np.diff(np.r_[starts, len(order)])
    for start, size in zip(starts[sizes > 1], sizes[sizes > 1]):
        first_seen: dict[int, int] = {}
        for r in order[start : start + size]:
            h = xxhash.xxh3_64_intdigest(np.ascontiguousarray(row(int(r))).view(np.uint8).data)
            label[r] = first_seen.setdefault(h, int(r))
    return label


def _keep_unprofitable(label: np.ndarray, owner: np.ndarray, n_rows_of: np.ndarray, row_bytes: int, errors: np.ndarray, abs_errors: np.ndarray) -> None:
    """Unmerge the rows of tensors whose merged rows do not outweigh their index.

    Only such a tensor is rebuilt from the table; the others stay as they are
    (other tensors may still read their rows). Per-tensor sums by bincount: a
    mask over all rows per tensor would cost tensors x rows (quadratic in a
    family of thousands of small tensors).
    """
    merged = label != np.arange(len(owner))
    merged_per = np.bincount(owner[merged], minlength=len(n_rows_of))
    undo = merged_per * row_bytes <= INDEX_ITEMSIZE * n_rows_of
    back = np.flatnonzero(merged & undo[owner])
    label[back] = back
    errors[back] = abs_errors[back] = 0.0


def _components(n_members: int, owner: np.ndarray, label: np.ndarray, merged: np.ndarray) -> list[list[int]]:
    """Tensors (positions in the family) linked by a shared row, one list per group."""
    parent = list(range(n_members))

    def find(x: int) -> int:
        while parent[x] != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    for r in np.flatnonzero(merged):
        a, b = find(int(owner[r])), find(int(owner[label[r]]))
        parent[a] = b
    involved = {find(int(k)) for k in np.unique(owner[merged])}
    components: dict[int, list[int]] = {}
    for k in range(n_members):
        if find(k) in involved:
            components.setdefault(find(k), []).append(k)
    return list(components.values())


def _rel_error(sq: np.ndarray, norms: np.ndarray) -> float:
    """Worst ||merged rows' change|| / ||tensor|| over the tensors."""
    rel = 0.0
    for s, norm in zip(sq, norms):
        if s > 0 and norm > 0:
            rel = max(rel, math.sqrt(float(s)) / float(norm))
    return rel


def _group(members: list[int], ks: list[int], n_rows_of: np.ndarray, merged_per: np.ndarray, row_bytes: int, max_abs: float, rel: float) -> Group:
    n_rows = int(n_rows_of[ks].sum())
    distinct = n_rows - int(merged_per[ks].sum())
    rebuilt = [k for k in ks if merged_per[k]]
    reclaimed = tuple(int(merged_per[k]) * row_bytes - INDEX_ITEMSIZE * int(n_rows_of[k]) if merged_per[k] else 0 for k in ks)
    index_bytes = INDEX_ITEMSIZE * int(n_rows_of[rebuilt].sum())
    stats = RowStats(n_rows, distinct, row_bytes, index_bytes, reclaimed)
    return Group("rows", tuple(members[k] for k in ks), max_abs_error=max_abs, rel_error=rel, rows=stats)


def _row_keys(samples: np.ndarray) -> np.ndarray:
    """A 64-bit hash of each row's sample bytes (a collision only costs a comparison)."""
    raw = np.ascontiguousarray(samples).view(np.uint8).reshape(len(samples), -1)
    pad = -raw.shape[1] % 8
    if pad:
        raw = np.pad(raw, ((0, 0), (0, pad)))
    words = raw.view(np.uint64)
    mult = np.random.default_rng(0).integers(1, 1 << 63, size=words.shape[1], dtype=np.uint64) | np.uint64(1)
    # One product, wrapping in uint64: no temporary of every word, and no sum
    # over a short last axis (numpy's slow path: 4 ms for 97,000 samples, this 0.8).
    return words @ mult


def _merge_near_rows(samples: np.ndarray, owner: np.ndarray, label: np.ndarray, dtype: str, row: _FamilyRows, row_tol: float, errors: np.ndarray, abs_errors: np.ndarray) -> None:
    reps = np.flatnonzero(label == np.arange(len(label)))
    # Every row its own class (the usual case): the samples as they are, no
    # copy. They are the family's own concatenation, not needed after this,
    # so they are scaled in place (a second array of every row's sample was
    # the search's largest).
    values, ok = unit_rows(float_values(samples if len(reps) == len(label) else samples[reps], dtype).astype(np.float32, copy=False), in_place=True)
    if not ok.all():
        reps, values = reps[ok], values[ok]  # float32: samples only locate candidates
    if len(reps) < 2:
        return
    pairs = band_pairs(values, 2 * MARGIN * row_tol, labels=owner[reps])
    if not len(pairs):
        return
    neighbours: dict[int, list[tuple[int, float, float]]] = {}
    for ra, rb, diff, worst in _confirmed(reps[pairs[:, 0]], reps[pairs[:, 1]], dtype, row, row_tol):
        neighbours.setdefault(ra, []).append((rb, diff, worst))
        neighbours.setdefault(rb, []).append((ra, diff, worst))
    # Each representative's exact class, found by binary search in the labels
    # sorted once (a scan of every row per merged row would cost rows^2).
    # A claimed neighbour was never a representative that took others in, so
    # its class is still the one it had here.
    by_label = np.argsort(label, kind="stable")
    sorted_label = label[by_label]
    claimed: set[int] = set()
    for rep in sorted(neighbours, key=lambda r: (-len(neighbours[r]), r)):
        if rep in claimed:
            continue
        claimed.add(rep)
        for other, diff, worst in neighbours[rep]:
            if other in claimed:
                continue
            claimed.add(other)
            lo, hi = np.searchsorted(sorted_label, [other, other + 1])
            moved = by_label[lo:hi]  # the neighbour's exact class follows it
            label[moved] = rep
            errors[moved] = diff * diff
            abs_errors[moved] = worst


_CONFIRM_ELEMENTS = 1 << 22  # candidate pairs are measured in blocks of about this many elements per side


def _confirmed(a: np.ndarray, b: np.ndarray, dtype: str, row: _FamilyRows, row_tol: float) -> list[tuple[int, int, float, float]]:
    """(a, b, ||a - b||, max |a - b|) for each candidate pair within ``row_tol`` on the full rows.

    Measured in float64 on the full rows, in blocks: a crowd of m mutually
    near rows gives m^2 / 2 candidates, too many for one Python step each.
    Each row's norm is taken once, however many pairs it is in.
    """
    if not len(a):
        return []
    cols = row(int(a[0])).size
    step = max(1, _CONFIRM_ELEMENTS // max(1, cols))
    involved = np.unique(np.concatenate([a, b]))
    square = np.empty(len(involved))
    for s in range(0, len(involved), step):
        x = float_values(row.take(involved[s : s + step]), dtype).astype(np.float64)
        square[s : s + step] = np.einsum("ij,ij->i", x, x)
    scale_a = np.sqrt(square[np.searchsorted(involved, a)])
    scale_b = np.sqrt(square[np.searchsorted(involved, b)])
    out: list[tuple[int, int, float, float]] = []
    for s in range(0, len(a), step):
        ra, rb = a[s : s + step], b[s : s + step]
        delta = float_values(row.take(ra), dtype).astype(np.float64) - float_values(row.take(rb), dtype).astype(np.float64)
        diff = np.sqrt(np.einsum("ij,ij->i", delta, delta))
        scale = np.maximum(scale_a[s : s + step], scale_b[s : s + step])
        near = (scale > 0) & (diff <= row_tol * scale)
        if near.any():
            worst = np.abs(delta[near]).max(axis=1)
            out.extend(zip(ra[near].tolist(), rb[near].tolist(), diff[near].tolist(), worst.tolist()))
    return out


class Rows(BaseRelation):
    """Tensors stored as their distinct rows plus an int32 index, rebuilt by ``Gather``."""

    name = "rows"
    claims = False  # a tensor stored as unique rows is still stored: later searches may use it
    drops_members = False
    # dedup stores rows bit for bit (identical rows only), so outputs do not
    # move; near rows (--row-tol) are an analysis finding only.
    lossless = True

    def detect(self, scope: Scope) -> list[Group]:
        return find_rows(scope.entries, scope.units, scope.digests, scope.row_tol)

    def reclaimed(self, group: Group, ledger: Ledger) -> tuple[int, ...]:
        assert group.rows is not None  # every rows group carries its row statistics
        shared = ledger.shared_views(group.members)  # the same bytes, not duplicates
        return tuple(0 if i in shared else n for i, n in zip(group.members, group.rows.reclaimed))

    def rewrite_tensor(self, graph: Any, initializer: Any) -> Rebuild | None:
        from sharescan.onnx_rewrite.rows import unique_rows

        rewrite = unique_rows(graph, initializer)
        if rewrite is None:
            return None
        nodes, saved = rewrite
        name = initializer.name
        return Rebuild(tuple(nodes), f"Gather({name}_unique_rows, {name}_row_index)", saved)


RELATION = Rows()
