"""Helpers the detectors share: byte comparison, sample points, exact distances."""

from __future__ import annotations

import math
import os
import threading
from collections import OrderedDict
from collections.abc import Callable, Iterator, Mapping, Sequence

import numpy as np
import numpy.typing as npt

from sharescan.digest import Digest, float_values, matrix_view
from sharescan.dtypes import DTYPES
from sharescan.sources.mapped import file_blocks, file_range, pread_exactly
from sharescan.table import TensorEntry

__all__ = ["bits", "same_bytes", "value_units", "MIN_SEARCH_ELEMENTS", "distance", "distance_of", "distances_of", "Distance", "relative_error", "Pair", "PairMeasure", "ArrayCache", "measure_pairs", "pair_chunks", "flat_blocks", "row_blocks", "element_at", "streamed_distance"]


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
        # relative_error for one pair, in plain floats: the same IEEE double
        # division, without numpy's per-call cost (10 us; 75k calls on a zoo).
        scale = max(self.norm_a, self.norm_b)
        if scale > 0:
            return self.diff_norm / scale
        return 0.0 if self.diff_norm == 0 else math.inf


def distance(a: TensorEntry, b: TensorEntry, transposed: bool = False, block: int = 1 << 16) -> Distance:
    """Distance between a (or a's transpose) and b."""
    return distance_of(a.read(), a.dtype, b.read(), b.dtype, transposed, block)


def distance_of(x_stored: np.ndarray, x_dtype: str, y_stored: np.ndarray, y_dtype: str, transposed: bool = False, block: int = 1 << 16) -> Distance:
    """Distance between x (or x's transpose) and y, given as read (storage type and dtype name).

    ``block`` elements at a time: 64 Ki float64 values per array stay in
    cache through the block's passes (a million per block went to memory
    and back for each of them: twice the time).
    """
    if x_stored.size <= _ROW_ELEMENTS:
        return distances_of([(x_stored, x_dtype, y_stored, y_dtype, transposed)])[0]
    x, y = _operands(x_stored, x_dtype, y_stored, y_dtype, transposed)
    rows = max(1, block // max(x.shape[1], 1))

    def blocks() -> Iterator[tuple[np.ndarray, np.ndarray]]:
        for start in range(0, x.shape[0], rows):
            yield x[start : start + rows], y[start : start + rows]

    return _blocked_distance(blocks(), min(rows, x.shape[0]) * x.shape[1], transposed)


def _blocked_distance(blocks: Iterator[tuple[np.ndarray, np.ndarray]], size: int, transposed: bool = False) -> Distance:
    """The distance summed over blocks of rows (x's and y's, float values of at most ``size`` elements, x's a transposed view if ``transposed``)."""
    bx, by, bd = _scratch(size)
    max_abs = sq = sq_a = sq_b = 0.0
    zero_signs = 0
    for xs, ys in blocks:
        xa, yb, diff = bx[: xs.size].reshape(xs.shape), by[: ys.size].reshape(ys.shape), bd[: xs.size].reshape(xs.shape)
        if transposed:
            # A block of x's transpose is a slab of x's columns: copied as it
            # lies first (whole cache lines of each row), then turned in cache.
            # Read across x's rows directly, a 4096x4096 pair took 7x longer.
            slab = _slab(xs.size, xs.dtype)[: xs.size].reshape(xs.T.shape)
            np.copyto(slab, xs.T)
            np.copyto(xa, slab.T)
        else:
            np.copyto(xa, xs)  # float64
        np.copyto(yb, ys)
        np.subtract(xa, yb, out=diff)
        sq += float(np.einsum("ij,ij->", diff, diff))
        sq_a += float(np.einsum("ij,ij->", xa, xa))
        sq_b += float(np.einsum("ij,ij->", yb, yb))
        if diff.size:
            max_abs = max(max_abs, float(np.abs(diff, out=diff).max()))
            # diff == 0 where xa == 0 is yb == 0: only blocks holding a zero can count.
            zero = xa == 0
            if zero.any():
                zero_signs += int(np.count_nonzero(zero & (yb == 0) & (np.signbit(xa) != np.signbit(yb))))
    return Distance(max_abs, math.sqrt(sq), math.sqrt(sq_a), math.sqrt(sq_b), zero_signs)


# Pairs of tensors this large (each), stored in C order in their files, are
# measured by reading both a block of rows at a time into reused buffers:
# mapped whole, both stayed resident through the pair (two fine-tunes'
# 131 MB embeddings: 262 MB of the process's memory for one comparison).
_STREAM_BYTES = 16 << 20


def streamed_distance(a: TensorEntry, b: TensorEntry, block: int = 1 << 16) -> Distance | None:
    """``distance(a, b)`` read through buffers, the same blocks and sums; None when a or b cannot be streamed (or is small)."""
    wa, wb = file_range(a.read), file_range(b.read)
    if wa is None or wb is None or a.shape != b.shape or len(a.shape) < 2 or min(wa.nbytes, wb.nbytes) < _STREAM_BYTES:
        return None
    cols = a.numel // a.shape[0]
    rows = max(1, block // max(cols, 1))
    blocks = ((float_values(x, a.dtype), float_values(y, b.dtype)) for x, y in zip(row_blocks(a, rows), row_blocks(b, rows)))
    return _blocked_distance(blocks, min(rows, a.shape[0]) * cols)


def flat_blocks(entry: TensorEntry, elements: int = 1 << 20) -> Iterator[np.ndarray]:
    """The entry's elements in order (storage dtype, flat), ``elements`` at a time.

    A large tensor stored in C order in its file is read through a buffer of
    its own (each block is overwritten by the next: keep none), so a pass
    over it leaves nothing resident; any other is read once.
    """
    where = file_range(entry.read)
    if where is None or where.nbytes < _STREAM_BYTES:
        flat = entry.read().reshape(-1)
        for start in range(0, flat.size, elements):
            yield flat[start : start + elements]
        return
    storage = np.dtype(DTYPES[entry.dtype].storage)
    for raw in file_blocks(where, elements * storage.itemsize):
        yield raw.view(storage)


def row_blocks(entry: TensorEntry, rows: int) -> Iterator[np.ndarray]:
    """The entry as its (rows, rest) matrix, ``rows`` rows at a time (storage dtype; streamed as ``flat_blocks``)."""
    cols = entry.numel // entry.shape[0] if entry.shape and entry.shape[0] else max(entry.numel, 1)
    per_read = max(1, (1 << 20) // max(cols, 1) // rows) * rows
    for flat in flat_blocks(entry, per_read * cols):
        matrix = flat.reshape(-1, cols)
        for start in range(0, len(matrix), rows):
            yield matrix[start : start + rows]


def element_at(entry: TensorEntry, k: int) -> np.ndarray:
    """Element ``k`` (flat, C order) of the entry, as a one-element array of its storage dtype."""
    where = file_range(entry.read)
    if where is None:
        return entry.read().reshape(-1)[k : k + 1]
    storage = np.dtype(DTYPES[entry.dtype].storage)
    one = np.empty(1, dtype=storage)
    fd = os.open(where.path, os.O_RDONLY)
    try:
        pread_exactly(fd, memoryview(one.view(np.uint8).data), where.offset + k * storage.itemsize, where)
    finally:
        os.close(fd)
    return one


def _operands(x_stored: np.ndarray, x_dtype: str, y_stored: np.ndarray, y_dtype: str, transposed: bool) -> tuple[np.ndarray, np.ndarray]:
    x = float_values(x_stored, x_dtype)
    y = float_values(y_stored, y_dtype)
    return matrix_view(x.T if transposed else x), matrix_view(y)


# Tensors of at most this many elements are measured as rows of a block of
# pairs, one pass of numpy calls per block: a dozen calls per pair cost more
# than the arithmetic below about 10k elements (a zoo's biases and heads:
# 50k of its 74k pairs). A single pair of them is one such row too, so a
# pair's distance is the same bits alone or in a batch.
_ROW_ELEMENTS = 1 << 14


def _table_distances(table: np.ndarray, ia: np.ndarray, ib: np.ndarray, block: int = 1 << 16) -> list[Distance]:
    """Distances between rows ``table[ia[k]]`` and ``table[ib[k]]`` of a float64 table, a block of pairs at a time.

    Each row's squared norm, and whether it holds a zero, is computed once
    for the table (the same reduction over the same row as for a pair).
    """
    n = table.shape[1]
    squares = np.einsum("ij,ij->i", table, table)
    has_zero = (table == 0).any(axis=1) if n else np.zeros(len(table), dtype=bool)
    rows = max(1, block // max(n, 1))
    out: list[Distance] = []
    for start in range(0, len(ia), rows):
        pa, pb = ia[start : start + rows], ib[start : start + rows]
        k = len(pa)
        bx, by, bd = _scratch(k * n)
        xa, yb, diff = bx[: k * n].reshape(k, n), by[: k * n].reshape(k, n), bd[: k * n].reshape(k, n)
        np.take(table, pa, axis=0, out=xa)
        np.take(table, pb, axis=0, out=yb)
        np.subtract(xa, yb, out=diff)
        sq = np.einsum("ij,ij->i", diff, diff)
        # diff == 0 where xa == 0 is yb == 0: only pairs holding a zero can count.
        if (has_zero[pa] & has_zero[pb]).any():
            zero_signs = np.count_nonzero((xa == 0) & (yb == 0) & (np.signbit(xa) != np.signbit(yb)), axis=1)
        else:
            zero_signs = np.zeros(k, dtype=np.int64)
        max_abs = np.abs(diff, out=diff).max(axis=1) if n else np.zeros(k)
        out.extend(
            Distance(float(m), math.sqrt(float(s)), math.sqrt(float(squares[a])), math.sqrt(float(squares[b])), int(z))
            for m, s, a, b, z in zip(max_abs, sq, pa, pb, zero_signs)
        )
    return out


def distances_of(items: Sequence[tuple[np.ndarray, str, np.ndarray, str, bool]]) -> list[Distance]:
    """``distance_of`` for each (x, x_dtype, y, y_dtype, transposed), in order.

    Small tensors are converted once each (a crowd's leader is in many
    pairs: the same array object, or its transpose), into one float64 table
    per element count, and measured a block of pairs at a time.
    """
    out: list[Distance | None] = [None] * len(items)
    tables: dict[int, tuple[dict[tuple[int, bool], int], list[np.ndarray], list[int], list[int], list[int]]] = {}
    for k, (x_stored, x_dtype, y_stored, y_dtype, transposed) in enumerate(items):
        if x_stored.size > _ROW_ELEMENTS:
            out[k] = distance_of(x_stored, x_dtype, y_stored, y_dtype, transposed)
            continue
        rows, arrays, ia, ib, ks = tables.setdefault(x_stored.size, ({}, [], [], [], []))
        x, y = _operands(x_stored, x_dtype, y_stored, y_dtype, transposed)
        for key, operand, side in (((id(x_stored), transposed), x, ia), ((id(y_stored), False), y, ib)):
            row = rows.get(key)
            if row is None:  # the item keeps the array alive, so its id names it for the whole call
                row = rows[key] = len(arrays)
                arrays.append(operand)
            side.append(row)
        ks.append(k)
    for size, (_, arrays, ia, ib, ks) in tables.items():
        table = np.empty((len(arrays), size))
        for r, operand in enumerate(arrays):
            np.copyto(table[r].reshape(operand.shape), operand)  # float64, read through a transposed view's strides if need be
        for k, d in zip(ks, _table_distances(table, np.asarray(ia, dtype=np.intp), np.asarray(ib, dtype=np.intp))):
            out[k] = d
    return [d for d in out if d is not None]


_buffers = threading.local()


def _scratch(size: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Three float64 blocks of at least ``size``, kept by each thread from call to call.

    A block is 512 KiB: allocated per pair it is mapped and unmapped by
    malloc each time where the mmap threshold is fixed (Dask's workers set
    MALLOC_TRIM_THRESHOLD_, which fixes it), and a zoo's distances ran 5x
    slower there than in one process.
    """
    held: tuple[np.ndarray, np.ndarray, np.ndarray] | None = getattr(_buffers, "blocks", None)
    if held is None or held[0].size < size:
        held = (np.empty(size), np.empty(size), np.empty(size))
        _buffers.blocks = held
    return held


def _slab(size: int, dtype: np.dtype) -> np.ndarray:
    """A block of at least ``size`` elements of ``dtype``, kept by each thread (see ``_scratch``)."""
    slabs: dict[np.dtype, np.ndarray] = getattr(_buffers, "slabs", None) or {}
    _buffers.slabs = slabs
    held = slabs.get(dtype)
    if held is None or held.size < size:
        held = slabs[dtype] = np.empty(size, dtype=dtype)
    return held


# (a, b, transposed): entry b against entry a, or against a's transpose.
Pair = tuple[int, int, bool]
# Exact distances of many pairs at once. Detectors hand over their candidate
# pairs in batches, so that a caller may spread one batch over several
# processes (the zoo, over its workers); the answer must not depend on how.
PairMeasure = Callable[[Sequence[TensorEntry], Sequence[Pair]], list[Distance]]

# Tensors kept while one batch is measured: a crowd's leader is in every
# pair of its crowd, and reading it again for each pair (a file opened and
# mapped each time) cost more than the distances on a zoo of fine-tunes.
_BATCH_CACHE_BYTES = 64 << 20
# Chunks of a batch measured at once, each on a thread: numpy's arithmetic
# and the reads release the GIL. On 2 cores the zoo benchmark's 76,189 pairs
# took 1.8-2.0 s instead of 2.5 s, the same bits (each chunk is measured as
# it is alone).
MEASURE_THREADS = min(4, len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1)  # the cores this process may use


class ArrayCache:
    """Arrays recently read, by key, up to ``limit`` bytes (the least recently used go first); safe across threads."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.arrays: OrderedDict[object, np.ndarray] = OrderedDict()
        self.held = 0
        self.lock = threading.Lock()

    def get(self, key: object) -> np.ndarray | None:
        with self.lock:
            array = self.arrays.get(key)
            if array is not None:
                self.arrays.move_to_end(key)
            return array

    def keep(self, key: object, array: np.ndarray) -> None:
        with self.lock:
            if key not in self.arrays:  # another thread may have read it meanwhile
                self.arrays[key] = array
                self.held += array.nbytes
            while self.held > self.limit:
                self.held -= self.arrays.popitem(last=False)[1].nbytes


class _BatchReads:
    """Reads of a batch's tensors, the recent ones kept (``_BATCH_CACHE_BYTES``); safe across threads."""

    def __init__(self, entries: Sequence[TensorEntry] | Mapping[int, TensorEntry]) -> None:
        self.entries = entries
        self.cache = ArrayCache(_BATCH_CACHE_BYTES)

    def __call__(self, i: int) -> np.ndarray:
        array = self.cache.get(i)
        if array is None:
            array = self.entries[i].read()
            if array.nbytes <= _BATCH_CACHE_BYTES // 4:
                self.cache.keep(i, array)
        return array


def measure_pairs(entries: Sequence[TensorEntry] | Mapping[int, TensorEntry], pairs: Sequence[Pair], threads: int = MEASURE_THREADS) -> list[Distance]:
    """The exact distance of each pair, in this process (``PairMeasure``; ``entries`` may hold only the pairs' entries).

    ``threads``: chunks measured at once (1 where each core already runs a task).
    """
    out: list[Distance | None] = [None] * len(pairs)
    rest: list[int] = []
    for k, (a, b, t) in enumerate(pairs):
        d = None if t else streamed_distance(entries[a], entries[b])
        if d is None:
            rest.append(k)
        else:
            out[k] = d
    read = _BatchReads(entries)

    def measure(chunk: Sequence[Pair]) -> list[Distance]:
        with np.errstate(all="ignore"):  # per thread: huge or tiny values are handled where they matter
            return distances_of([(read(a), entries[a].dtype, read(b), entries[b].dtype, t) for a, b, t in chunk])

    # Chunks measured at once share the elements a chunk may hold: the batch's
    # tables stay within 64 MiB whatever the threads (4 chunks of 64 MiB each
    # held 256 MiB at once).
    chunks = list(pair_chunks([pairs[k] for k in rest], lambda i: entries[i].numel, _ELEMENTS_AT_ONCE // max(1, threads)))
    if threads > 1 and len(chunks) > 1:
        from concurrent.futures import ThreadPoolExecutor

        with ThreadPoolExecutor(min(threads, len(chunks))) as pool:
            measured = [d for ds in pool.map(measure, chunks) for d in ds]
    else:
        measured = [d for chunk in chunks for d in measure(chunk)]
    for k, d in zip(rest, measured):
        out[k] = d
    return [d for d in out if d is not None]


# Pairs measured together: their small tensors are converted to float64 at
# once, so a chunk holds at most this many pairs and elements (64 MiB).
_PAIRS_AT_ONCE = 4096
_ELEMENTS_AT_ONCE = 8 << 20


def pair_chunks(pairs: Sequence[Pair], numel: Callable[[int], int], most: int | None = None) -> Iterator[Sequence[Pair]]:
    """``pairs`` in consecutive chunks of at most ``_PAIRS_AT_ONCE`` pairs and ``most`` elements (``_ELEMENTS_AT_ONCE``; one pair at least)."""
    most = _ELEMENTS_AT_ONCE if most is None else most
    start = elements = 0
    for k, (a, b, _) in enumerate(pairs):
        size = numel(a) + numel(b)
        if k > start and (k - start >= _PAIRS_AT_ONCE or elements + size > most):
            yield pairs[start:k]
            start, elements = k, 0
        elements += size
    if start < len(pairs):
        yield pairs[start:]
