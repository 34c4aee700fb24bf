"""2-D tensors equal to another, or near-equal within ``--tol``, once its rows and/or columns are permuted.

A permuted copy arises when a model is saved after a neuron reordering
(pruning tools, merged checkpoints, heads regrouped, a conv output flattened
channels-first in one package and channels-last in another) and the original
is kept beside it. It is stored as the kept tensor plus an int32 index per
permuted axis and rebuilt by ``Gather``, so a finding reclaims the copy's
bytes minus its index bytes, and is only reported when that is positive.

Exact copies: the search never compares pairs. Tensors of one dtype and
shape whose norms agree (a permutation keeps the norm, up to summation
order) are read once and sketched: each element's bits are mixed into a
64-bit hash, summed per row (a row's sum does not depend on the column
order) and per column. The sorted row sums and sorted column sums are
unchanged by any row and column permutation, so permuted copies share a
bucket. Within a bucket the column order is recovered by matching column
sums (stable sort: ties keep their order), then the row order by matching
the rows' bytes, and the whole copy is compared with ``kept[rows][:, cols]``.

Near copies (with ``--tol``, float tensors only): the tensors no exact
group took are screened pairwise by lower bounds of their distance under
any permutation (``permute_match``: sorted row and column norms, then
sorted rows' and columns' leading DCT terms, then sorted rows and columns),
so a pair dropped cannot be within tol; survivors are matched
by assignment and kept only when ``||kept[rows][:, cols] - copy|| /
max(||kept||, ||copy||) <= tol``, measured on the whole tensors. A pair near
without any permutation is left to ``near`` (no index to store). A family of
more than NEAR_FAMILY_LIMIT same-shape tensors with agreeing norms is
searched for exact copies only.

A tensor whose rows are all equal (or columns all equal) is left out: its
row order means nothing, and the rows relation stores it as one row plus an
index, which saves more.
"""

from __future__ import annotations

import functools
import logging
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np

from sharescan.detect import permute_match
from sharescan.detect.common import bits, relative_error, row_blocks, streamed_distance
from sharescan.detect.relation import BaseRelation, Ledger, Rebuild, Scope
from sharescan.digest import Digest, content_hash, float_values
from sharescan.dtypes import DTYPES
from sharescan.groups import SAME, Group, Transform
from sharescan.table import TensorEntry

__all__ = ["find_permuted", "index_bytes", "Permuted", "RELATION", "INDEX_ITEMSIZE", "NEAR_FAMILY_LIMIT"]

logger = logging.getLogger(__name__)

INDEX_ITEMSIZE = 4  # int32 index per permuted row or column
# Norms of two permuted copies differ only by summation order (float32
# chunks: ~sqrt(n) ulps); a wider margin costs only a read of a distractor.
_NORM_RTOL = 1e-3
# Near copies are searched pair by pair among tensors of one dtype and shape
# whose norms agree; beyond this many (a model of hundreds of same-shape
# random matrices, whose norms and sketches all agree), that family is
# searched for exact copies only, so the time stays near the read time.
NEAR_FAMILY_LIMIT = 64
# A sample of 1,024 elements estimates the relative distance of a near pair
# within a few times tol; beyond this many tols the pair is not near as it stands.
_SAMPLE_SLACK = 8.0
_CHUNK_ELEMENTS = 1 << 22  # mix hashes are computed in row chunks of about this many elements
_SCAN_ELEMENTS = 1 << 16  # elements widened to float64 at once by the invariants' pass: 512 KiB, in cache


def index_bytes(transform: Transform) -> int:
    """Bytes of the int32 indices that rebuild a permuted member."""
    return INDEX_ITEMSIZE * sum(len(order) for _, order in transform.permutation)


def find_permuted(entries: Sequence[TensorEntry], units: Sequence[int], digests: Mapping[int, Digest], tol: float | None = None) -> list[Group]:
    """Groups of permuted copies: bit for bit, and with ``tol`` also near-equal float copies."""
    families: dict[tuple[str, tuple[int, ...]], list[int]] = {}
    for i in units:
        e, d = entries[i], digests[i]
        if len(e.shape) == 2 and min(e.shape) > 1 and not d.nonfinite:
            families.setdefault((e.dtype, e.shape), []).append(i)
    groups = []
    for (dtype, _), members in families.items():
        if len(members) < 2:
            continue
        near = tol is not None and DTYPES[dtype].is_float
        if DTYPES[dtype].is_float:
            # | ||a|| - ||b|| | <= ||a - permuted b||: a near copy's norm is within tol too.
            members = _norm_neighbours(members, digests, max(_NORM_RTOL, tol) if near and tol is not None else _NORM_RTOL)
        if len(members) > NEAR_FAMILY_LIMIT:
            near = False  # exact copies only: see NEAR_FAMILY_LIMIT
            if tol is not None:
                logger.info("%d tensors of shape %s: near-permuted copies not searched (more than %d)", len(members), entries[members[0]].shape, NEAR_FAMILY_LIMIT)
        buckets: dict[tuple[int, int], list[tuple[int, np.ndarray]]] = {}
        sketches: dict[int, np.ndarray] = {}
        totals: dict[int, int] = {}
        for i in members:
            totals[i], sketch = _invariants(entries[i], near)
            if sketch is not None:
                sketches[i] = sketch
        # Permuted copies hold the same elements, so the same total of their
        # bits: only tensors sharing a total are hashed line by line (four
        # multiplies an element, the search's largest cost when no copy is there).
        shared = Counter(totals.values())
        for i in members:
            if shared[totals[i]] < 2:
                continue
            row_sums, col_sums = _line_sums(entries[i])
            key = (content_hash(np.sort(row_sums)), content_hash(np.sort(col_sums)))
            buckets.setdefault(key, []).append((i, col_sums))  # rows are matched by their bytes
        found = []
        for bucket in buckets.values():
            if len(bucket) > 1:
                found.extend(_bucket_groups(entries, bucket))
        groups.extend(found)
        if near and tol is not None:
            taken = {i for g in found for i in g.members}
            groups.extend(_near_groups(entries, [i for i in members if i not in taken], sketches, digests, tol))
    return groups


def _near_pairs(members: list[int], sketches: Mapping[int, np.ndarray], digests: Mapping[int, Digest], tol: float) -> list[tuple[int, int]]:
    """Pairs (kept, copy), kept first in file order, whose sketches allow a permuted distance within tol.

    Two sketches lie within sqrt(2) times the tensors' distance under any
    row and column permutation (``permute_match.sketch_bound``).
    """
    points = np.array([sketches[i] for i in members])
    norms = np.array([digests[i].norm for i in members])
    pairs = []
    for x in range(len(members) - 1):
        gaps = np.linalg.norm(points[x + 1 :] - points[x], axis=1) / np.sqrt(2) / (1 + 1e-9)
        close = np.flatnonzero(gaps <= tol * np.maximum(norms[x + 1 :], norms[x]))
        pairs += [(members[x], members[x + 1 + y]) for y in close]
    return pairs


def _near_groups(entries: Sequence[TensorEntry], members: list[int], sketches: Mapping[int, np.ndarray], digests: Mapping[int, Digest], tol: float) -> list[Group]:
    """Near-equal permuted copies among ``members`` (file order): each copy confirmed against the kept tensor of its group."""
    coded: dict[tuple[int, int], permute_match.Codes] = {}  # (member, axis): each computed once, when first needed
    prepared: dict[int, permute_match.Prepared | None] = {}  # None: a degenerate tensor, never kept

    def codes(k: int, axis: int) -> permute_match.Codes:
        if (k, axis) not in coded:
            coded[k, axis] = permute_match.codes(float_values(entries[k].read(), entries[k].dtype), axis)
        return coded[k, axis]

    def prepare(k: int) -> permute_match.Prepared | None:
        if k not in prepared:
            values = float_values(entries[k].read(), entries[k].dtype).astype(np.float64)
            prepared[k] = None if _degenerate(values) else permute_match.prepare(values)
        return prepared[k]

    copies: dict[int, list[tuple[int, Transform, float, float]]] = {}
    placed: set[int] = set()  # tensors that are a copy in some group
    for i, j in _near_pairs(members, sketches, digests, tol):
        if i in placed or j in placed or j in copies:
            continue
        limit = tol * max(digests[i].norm, digests[j].norm)
        read_copy = functools.cache(lambda j=j: float_values(entries[j].read(), entries[j].dtype))  # read once, whichever step needs it first
        if _near_as_it_stands(digests[i], digests[j], entries[i], entries[j], read_copy, tol):
            # The near relation's, with no index to store. j is set aside for good:
            # in a zoo of fine-tunes every copy is near every other, and trying
            # each remaining pair again would cost a full comparison per pair.
            placed.add(j)
            continue
        copy = read_copy()
        if not all(permute_match.code_screen(codes(i, axis), copy, axis, limit) for axis in (0, 1)):
            continue
        kept = prepare(i)
        if kept is None:
            continue
        found = _near_copy(kept, copy, tol)
        if found is not None and index_bytes(found[0]) < entries[j].nbytes:
            copies.setdefault(i, []).append((j, *found))
            placed.add(j)
    groups = []
    for i, found_copies in copies.items():
        members_found = (i, *(j for j, _, _, _ in found_copies))
        transforms = (SAME, *(t for _, t, _, _ in found_copies))
        groups.append(Group("permuted", members_found, transforms=transforms,
                            max_abs_error=max(a for _, _, _, a in found_copies), rel_error=max(r for _, _, r, _ in found_copies)))
    return groups


def _near_as_it_stands(a: Digest, b: Digest, kept: TensorEntry, other: TensorEntry, read_other: Callable[[], np.ndarray], tol: float) -> bool:
    """Whether other is within tol of kept with no permutation: the grid samples first, then the whole tensors (``read_other`` gives other's float values)."""
    if a.grid is not None and b.grid is not None:
        ga, gb = a.grid.astype(np.float64).ravel(), b.grid.astype(np.float64).ravel()
        # Same shape, same sampled positions: unrelated or permuted tensors sit near sqrt(2) apart.
        if float(relative_error(np.linalg.norm(ga - gb), np.linalg.norm(ga), np.linalg.norm(gb))) > _SAMPLE_SLACK * tol:
            return False
    # Large tensors are read through buffers, in the blocks and sums below (a
    # zoo of fine-tunes stops here for most pairs: neither is held whole).
    streamed = streamed_distance(kept, other, _SCAN_ELEMENTS)
    if streamed is not None:
        return streamed.relative <= tol
    values = float_values(kept.read(), kept.dtype)
    copy = read_other()
    # float64 a block of rows at a time: two whole float64 copies cost more than the sums.
    sq = np.zeros(3)
    step = max(1, _SCAN_ELEMENTS // max(1, values.shape[1]))
    for start in range(0, values.shape[0], step):
        x = values[start : start + step].astype(np.float64)
        y = copy[start : start + step].astype(np.float64)
        d = x - y
        # einsum and not a BLAS dot: a threaded dot waits for its threads on a busy machine.
        sq += (np.einsum("ij,ij->", d, d), np.einsum("ij,ij->", x, x), np.einsum("ij,ij->", y, y))
    return float(relative_error(*np.sqrt(sq))) <= tol


def _near_copy(prepared: permute_match.Prepared, copy: np.ndarray, tol: float) -> tuple[Transform, float, float] | None:
    """(transform, relative error, max abs error) with copy ~ kept[rows][:, cols] within tol; None when none is found or no permutation is needed."""
    kept = prepared.a
    norm_kept, norm_copy = float(np.linalg.norm(kept)), float(np.linalg.norm(copy.astype(np.float64)))
    limit = tol * max(norm_kept, norm_copy)
    copy = copy.astype(np.float64)
    if float(relative_error(np.linalg.norm(kept - copy), norm_kept, norm_copy)) <= tol:
        return None  # near as it stands: the near relation's, with no index to store
    found = permute_match.match(prepared, copy, limit)
    if found is None:
        return None
    rows, cols = found
    diff = kept[rows][:, cols] - copy
    rel = float(relative_error(np.linalg.norm(diff), norm_kept, norm_copy))
    if rel > tol:
        return None
    row_order = None if np.array_equal(rows, np.arange(len(rows))) else tuple(int(r) for r in rows)
    col_order = None if np.array_equal(cols, np.arange(len(cols))) else tuple(int(c) for c in cols)
    if row_order is None and col_order is None:
        return None
    return Transform("permute", row_order=row_order, col_order=col_order), rel, float(np.abs(diff).max())


def _norm_neighbours(members: list[int], digests: Mapping[int, Digest], rtol: float) -> list[int]:
    """Members whose norm another member matches within rtol (file order kept)."""
    norms = np.array([digests[i].norm for i in members])
    order = np.argsort(norms, kind="stable")
    s = norms[order]
    close = s[1:] - s[:-1] <= rtol * np.maximum(s[1:], 1e-300)
    keep = np.zeros(len(members), dtype=bool)
    keep[order[1:][close]] = keep[order[:-1][close]] = True
    keep &= norms > 0  # an all-zero tensor is all rows equal
    return [i for i, k in zip(members, keep) if k]


def _mix(x: np.ndarray) -> np.ndarray:
    """splitmix64's finaliser, elementwise on uint64: each value's bits to a well-spread hash."""
    x = x + np.uint64(0x9E3779B97F4A7C15)
    x = (x ^ (x >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    x = (x ^ (x >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return x ^ (x >> np.uint64(31))


def _invariants(entry: TensorEntry, with_sketch: bool) -> tuple[int, np.ndarray | None]:
    """What no row or column permutation changes, in one pass over the tensor.

    The sum (mod 2^64) of the elements' bits, and with ``with_sketch``
    ``permute_match.sketch`` of the values: sorted row norms, then sorted
    column norms. Blocks of rows small enough to stay in cache are widened
    to float64 one at a time, never the whole tensor (nor is a large one
    mapped whole: ``row_blocks`` streams it).
    """
    rows, cols = entry.shape
    total = np.uint64(0)
    row_sq = np.empty(rows)
    col_sq = np.zeros(cols)
    step = max(1, _SCAN_ELEMENTS // max(1, cols))
    start = 0
    for block in row_blocks(entry, step):
        total += bits(block).sum(dtype=np.uint64)
        if with_sketch:
            x = float_values(block, entry.dtype).astype(np.float64)
            x *= x
            row_sq[start : start + len(block)] = x.sum(axis=1)
            col_sq += x.sum(axis=0)
        start += len(block)
    if not with_sketch:
        return int(total), None
    return int(total), np.concatenate([np.sort(np.sqrt(row_sq)), np.sort(np.sqrt(col_sq))])


def _line_sums(entry: TensorEntry) -> tuple[np.ndarray, np.ndarray]:
    """Per-row and per-column sums (mod 2^64) of the elements' mixed bits."""
    rows, cols = entry.shape
    row_sums = np.empty(rows, dtype=np.uint64)
    col_sums = np.zeros(cols, dtype=np.uint64)
    start = 0
    for block in row_blocks(entry, max(1, _CHUNK_ELEMENTS // cols)):
        mixed = _mix(bits(block).astype(np.uint64))
        row_sums[start : start + len(block)] = mixed.sum(axis=1, dtype=np.uint64)
        col_sums += mixed.sum(axis=0, dtype=np.uint64)
        start += len(block)
    return row_sums, col_sums


def _bucket_groups(entries: Sequence[TensorEntry], bucket: list[tuple[int, np.ndarray]]) -> list[Group]:
    """Groups among tensors with one sketch: the first left is kept, each other confirmed against it."""
    groups = []
    left = bucket
    while len(left) > 1:
        (i, cols_i), rest = left[0], left[1:]
        left = []
        kept = bits(entries[i].read())
        if _degenerate(kept):
            left = rest
            continue
        members, transforms = [i], [SAME]
        for j, cols_j in rest:
            transform = _recover(kept, bits(entries[j].read()), cols_i, cols_j)
            if transform is not None and index_bytes(transform) < entries[j].nbytes:
                members.append(j)
                transforms.append(transform)
            elif transform is None:
                left.append((j, cols_j))
        if len(members) > 1:
            groups.append(Group("permuted", tuple(members), transforms=tuple(transforms)))
    return groups


def _degenerate(a: np.ndarray) -> bool:
    """All rows equal or all columns equal: no order to recover."""
    return bool((a == a[:1]).all() or (a == a[:, :1]).all())


def _matching(kept_keys: np.ndarray, copy_keys: np.ndarray) -> np.ndarray | None:
    """order with copy_keys == kept_keys[order], ties matched in order; None when the multisets differ."""
    kept_sorted, copy_sorted = np.argsort(kept_keys, kind="stable"), np.argsort(copy_keys, kind="stable")
    if not np.array_equal(kept_keys[kept_sorted], copy_keys[copy_sorted]):
        return None
    order = np.empty_like(kept_sorted)
    order[copy_sorted] = kept_sorted
    return order


def _row_keys(a: np.ndarray) -> np.ndarray:
    """Each row's bytes as one sortable value."""
    a = np.ascontiguousarray(a)
    return a.view(np.dtype((np.void, a.dtype.itemsize * a.shape[1]))).reshape(-1)


def _recover(kept: np.ndarray, copy: np.ndarray, kept_cols: np.ndarray, copy_cols: np.ndarray) -> Transform | None:
    """The transform with copy == kept[rows][:, cols], bit for bit; None when there is none (or it is the identity)."""
    cols = _matching(kept_cols, copy_cols)
    if cols is None:
        return None
    by_cols = kept[:, cols]
    rows = _matching(_row_keys(by_cols), _row_keys(copy))
    if rows is None or not np.array_equal(by_cols[rows], copy):
        return None
    row_order = None if np.array_equal(rows, np.arange(len(rows))) else tuple(int(r) for r in rows)
    col_order = None if np.array_equal(cols, np.arange(len(cols))) else tuple(int(c) for c in cols)
    if row_order is None and col_order is None:
        return None  # an identical copy: the identical relation's
    return Transform("permute", row_order=row_order, col_order=col_order)


class Permuted(BaseRelation):
    """Rebuilt by ``Gather`` along each permuted axis; the index bytes are charged to the copy."""

    name = "permuted"

    def detect(self, scope: Scope) -> list[Group]:
        return find_permuted(scope.entries, scope.units, scope.digests, scope.tol)

    def reclaimed(self, group: Group, ledger: Ledger) -> tuple[int, ...]:
        return (0, *(max(0, ledger.free(i) - index_bytes(group.transform(k + 1))) for k, i in enumerate(group.members[1:])))

    def member_transform(self, member: Any) -> Transform:
        orders = dict(member.permutation)
        return Transform("permute", row_order=orders.get(0), col_order=orders.get(1))

    def rebuild(self, graph: Any, kept: str, dropped: str, transform: Transform, onnx_dtype: int) -> Rebuild:
        from sharescan.onnx_rewrite.graph import tensor_nbytes
        from sharescan.onnx_rewrite.permute import gather_nodes

        nodes, added = gather_nodes(graph, kept, dropped, transform.permutation)
        kept_tensor = next((t for t in graph.initializer if t.name == kept), None)
        saved = tensor_nbytes(onnx_dtype, kept_tensor.dims) - added if kept_tensor is not None else 0
        axes = " and ".join(("rows", "cols")[axis] for axis, _ in transform.permutation)
        return Rebuild(tuple(nodes), f"Gather({kept}, {axes} permuted)", max(saved, 0))


RELATION = Permuted()
