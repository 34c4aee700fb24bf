"""One read of every tensor: its hash, norm, and small samples.

Detectors work from these digests and read a tensor again only to confirm a
candidate. Samples are taken at positions that depend only on the axis
lengths, so two tensors of one shape are sampled at the same elements, and a
tensor's transpose at the transposed elements.
"""

from __future__ import annotations

import bisect
import logging
import math
import os
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import xxhash

from sharescan.dtypes import DTYPES, to_float
from sharescan.neighbors import axis_sample
from sharescan.sources.mapped import FileRange, file_range, pread_exactly
from sharescan.table import TensorEntry

__all__ = ["Digest", "compute_digests", "content_hash", "matrix_view", "GRID", "ROW_SAMPLE", "float_values"]

logger = logging.getLogger(__name__)

GRID = 32  # grid sample: GRID x GRID elements of the (rows, rest) view
ROW_SAMPLE = 32  # elements sampled from every row, for duplicate-row search
_VECTOR_SAMPLE = GRID * GRID  # a 1-row view samples this many elements instead
_CHUNK_ELEMENTS = 1 << 22  # rows are processed in chunks of about this many elements


@dataclass(frozen=True, eq=False)
class Digest:
    content: int  # xxh3-64 of the tensor's bytes
    nonfinite: bool  # holds NaN or Inf: compared as bytes only, never by value
    has_nan: bool  # NaN in particular: worth a warning (-Inf is common in attention masks)
    # Float tensors: L2 norm (float64). 0 for other dtypes.
    norm: float
    # Grid sample of the (rows, rest) view, in the storage dtype; None when empty.
    grid: np.ndarray | None
    # Rows of the (rows, rest) view: ROW_SAMPLE elements of each (storage
    # dtype). None when rows are not worth indexing.
    row_sample: np.ndarray | None


def content_hash(array: np.ndarray) -> int:
    # xxh3 runs at memory speed; a collision only costs a byte comparison.
    return xxhash.xxh3_64_intdigest(np.ascontiguousarray(array).reshape(-1).view(np.uint8).data)


def matrix_view(array: np.ndarray) -> np.ndarray:
    """The (rows, rest) view every sample and row relation uses."""
    if array.ndim == 0:
        return array.reshape(1, 1)
    if array.ndim == 1:
        return array.reshape(1, -1)
    return array.reshape(array.shape[0], -1)


def float_values(array: np.ndarray, dtype: str) -> np.ndarray:
    """Values as float32/float64 for arithmetic (float16 and bfloat16 widened)."""
    values = to_float(array, dtype)
    return values.astype(np.float32) if values.dtype == np.float16 else values


def grid_index(shape: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    rows, cols = shape
    if rows == 1:
        return np.zeros(1, dtype=np.intp), axis_sample(cols, _VECTOR_SAMPLE)
    return axis_sample(rows, GRID), axis_sample(cols, GRID)


def rows_worth_indexing(entry: TensorEntry) -> bool:
    """Row dedup stores an int32 index per row: pointless for short rows or one row."""
    if len(entry.shape) < 2 or entry.shape[0] < 2:
        return False
    return entry.nbytes // entry.shape[0] > 4


def _digest(entry: TensorEntry) -> Digest:
    with np.errstate(all="ignore"):  # per thread: overflow is detected and handled below
        return _digest_values(entry)


def _digest_values(entry: TensorEntry) -> Digest:
    where = file_range(entry.read)
    if where is not None and entry.nbytes >= _STREAM_BYTES and entry.numel > 0:
        streamed = _digest_streamed(entry, where)
        if streamed is not None:
            return streamed
    return _digest_array(entry, entry.read())


def _digest_array(entry: TensorEntry, array: np.ndarray) -> Digest:
    content = content_hash(array)
    if entry.numel == 0:
        return Digest(content, False, False, 0.0, None, None)
    dt = DTYPES[entry.dtype]
    view = matrix_view(array)
    ri, ci = grid_index(view.shape)
    grid = np.ascontiguousarray(view[np.ix_(ri, ci)])
    with_rows = rows_worth_indexing(entry)
    row_sample = np.ascontiguousarray(view[:, axis_sample(view.shape[1], ROW_SAMPLE)]) if with_rows else None
    if not dt.is_float:
        return Digest(content, False, False, 0.0, grid, row_sample)
    flat = array.reshape(-1)
    # One BLAS pass gives the norm and, through NaN/Inf propagation, whether
    # any element is not finite; only then is the tensor looked at closely.
    # float64 sums in float64, and so do small tensors (as their batches do,
    # so a norm does not depend on which path computed it); float32 squares
    # of tiny values underflow, so a zero sum over a grid with nonzero values
    # is redone in float64 as well.
    total = _sum_squares(flat, entry.dtype, _accumulator(entry))
    if total == 0.0 and np.any(grid):
        total = _sum_squares(flat, entry.dtype, np.float64)
    nonfinite = has_nan = False
    if not math.isfinite(total):
        values = float_values(flat, entry.dtype)
        nonfinite = not bool(np.isfinite(values).all())
        has_nan = nonfinite and bool(np.isnan(values).any())
        if not nonfinite:  # squares overflowed: redo in float64, scaled by the largest magnitude
            peak = float(np.max(np.abs(values)))
            total = _sum_squares(flat, entry.dtype, np.float64, peak) * peak * peak
    norm = math.sqrt(total) if not nonfinite else math.nan
    return Digest(content, nonfinite, has_nan, norm, grid, row_sample)


def _accumulator(entry: TensorEntry) -> type:
    return np.float64 if entry.dtype == "float64" or entry.nbytes <= _SMALL_BYTES else np.float32


# Tensors of at least this size, stored contiguously in a file, are streamed:
# read block by block into a buffer each thread reuses, and hashed, summed
# and sampled while the block is in cache. One pass over memory instead of
# three (hash, norm, row samples), and resident memory stays at the buffer.
_STREAM_BYTES = 1 << 20
_BLOCK_BYTES = 1 << 20
_buffers = threading.local()


def _buffer(nbytes: int) -> np.ndarray:
    buf = getattr(_buffers, "buf", None)
    if buf is None or buf.nbytes < nbytes:
        buf = _buffers.buf = np.empty(nbytes, dtype=np.uint8)
    return buf


def _digest_streamed(entry: TensorEntry, where: FileRange) -> Digest | None:
    """``_digest_array``'s digest from one streamed read; None when the tensor
    needs the close look (a sum that is not finite, or zero with a nonzero
    grid), which the caller then takes on the mapped array."""
    dt = DTYPES[entry.dtype]
    storage = np.dtype(dt.storage)
    rows, rest = matrix_view(np.empty(entry.shape, dtype=np.uint8)).shape
    row_bytes = rest * storage.itemsize
    ri, ci = grid_index((rows, rest))
    with_rows = rows_worth_indexing(entry)
    sample_cols = axis_sample(rest, ROW_SAMPLE) if with_rows else None
    grid = np.empty((len(ri), len(ci)), dtype=storage)
    row_sample = np.empty((rows, len(sample_cols)), dtype=storage) if sample_cols is not None else None
    acc = _accumulator(entry) if dt.is_float else None
    hasher = xxhash.xxh3_64()
    total = 0.0
    # Whole rows per block when a row fits one; else the rows are few, and
    # the samples are taken from a mapping that only touches their pages.
    per_block = _BLOCK_BYTES // row_bytes if row_bytes <= _BLOCK_BYTES else 0
    step = per_block * row_bytes if per_block else _BLOCK_BYTES - _BLOCK_BYTES % storage.itemsize
    buf = _buffer(step)
    whole = memoryview(buf.data)  # a plain buffer for preadv and the hasher
    # Per block, only what differs between blocks is computed: the loop runs
    # once per MiB, and its Python steps hold the GIL the other thread needs.
    full = whole[:step]
    values_of = None if acc is None or (dt.numpy_native and storage == acc) else _block_values(entry.dtype, acc)
    grid_rows = ri.tolist()
    fd = os.open(where.path, os.O_RDONLY)
    try:
        for start in range(0, where.nbytes, step):
            n = min(step, where.nbytes - start)
            chunk = full if n == step else whole[:n]
            pread_exactly(fd, chunk, where.offset + start, where)
            hasher.update(chunk)
            block = buf[:n].view(storage)
            if acc is not None:
                values = block if values_of is None else values_of(block)
                total += float(np.dot(values, values))
            if per_block:
                r0 = start // row_bytes
                r1 = r0 + n // row_bytes
                block_rows = block.reshape(-1, rest)
                lo, hi = bisect.bisect_left(grid_rows, r0), bisect.bisect_left(grid_rows, r1)
                if hi > lo:
                    grid[lo:hi] = block_rows[ri[lo:hi] - r0][:, ci]
                if row_sample is not None and sample_cols is not None:
                    np.take(block_rows, sample_cols, axis=1, out=row_sample[r0:r1])
    finally:
        os.close(fd)
    if not per_block:
        view = matrix_view(entry.read(populate=False))  # type: ignore[call-arg]
        grid[:] = view[np.ix_(ri, ci)]
        if row_sample is not None:
            row_sample[:] = view[:, sample_cols]
        del view
    if acc is None:
        return Digest(hasher.intdigest(), False, False, 0.0, grid, row_sample)
    if not math.isfinite(total) or (total == 0.0 and np.any(grid)):
        return None
    return Digest(hasher.intdigest(), False, False, math.sqrt(total), grid, row_sample)


def _block_values(dtype: str, acc: type) -> Callable[[np.ndarray], np.ndarray]:
    """A streamed block's values in the accumulator's type (float_values, widened where needed)."""

    def values(block: np.ndarray) -> np.ndarray:
        out = float_values(block, dtype)
        return out if out.dtype == acc else out.astype(acc)

    return values


def _sum_squares(flat: np.ndarray, dtype: str, acc: type = np.float32, scale: float = 1.0) -> float:
    """Sum of squares of flat / scale, chunked so no full-size temporary is made."""
    total = 0.0
    for start in range(0, flat.size, _CHUNK_ELEMENTS):
        block = float_values(flat[start : start + _CHUNK_ELEMENTS], dtype)
        if block.dtype != acc:
            block = block.astype(acc)
        if scale != 1.0:
            block = block / acc(scale)
        total += float(np.dot(block, block))
    return total


def compute_digests(
    entries: Sequence[TensorEntry],
    units: Sequence[int],
    on_tensor: Callable[[int], None] | None = None,
    workers: int = 2,
) -> dict[int, Digest]:
    """Digest every unit (one entry per distinct storage), reading each once.

    Two threads overlap one tensor's page faults and hashing (which release
    the GIL) with another's numpy work. Units go to the threads in chunks of
    about _TASK_BYTES: a task per tiny tensor costs more in thread hand-offs
    than the digest itself.
    """
    out: dict[int, Digest] = {}
    if workers <= 1 or len(units) < 4:
        for i in units:
            out[i] = _digest(entries[i])
            if on_tensor is not None:
                on_tensor(entries[i].nbytes)
        return out
    from concurrent.futures import ThreadPoolExecutor

    def digest_chunk(chunk: list[int]) -> list[Digest]:
        with np.errstate(all="ignore"):
            return _digest_chunk(entries, chunk)

    chunks = _chunks(entries, units)
    with ThreadPoolExecutor(workers) as pool:
        for chunk, digests in zip(chunks, pool.map(digest_chunk, chunks)):
            for i, d in zip(chunk, digests):
                out[i] = d
                if on_tensor is not None:
                    on_tensor(entries[i].nbytes)
    return out


_TASK_BYTES = 4 << 20  # a chunk of units holds about this many bytes ...
_TASK_UNITS = 512  # ... or this many units, whichever comes first


def _chunks(entries: Sequence[TensorEntry], units: Sequence[int]) -> list[list[int]]:
    chunks: list[list[int]] = []
    chunk: list[int] = []
    size = 0
    for i in units:
        chunk.append(i)
        size += entries[i].nbytes
        if size >= _TASK_BYTES or len(chunk) >= _TASK_UNITS:
            chunks.append(chunk)
            chunk, size = [], 0
    if chunk:
        chunks.append(chunk)
    return chunks



# Tensors up to this size are digested together with the others of their
# dtype and shape in a chunk: per tensor, numpy's call overhead is most of
# the work, and a model of a million tiny tensors spends seconds in it.
_SMALL_BYTES = 4096
_MIN_BATCH = 8


def _digest_chunk(entries: Sequence[TensorEntry], chunk: list[int]) -> list[Digest]:
    """Digests of a chunk of units, in order; small tensors of one dtype and shape in one batch."""
    out: dict[int, Digest] = {}
    batches: dict[tuple[str, tuple[int, ...]], list[int]] = {}
    for u in chunk:
        e = entries[u]
        if 0 < e.nbytes <= _SMALL_BYTES:
            batches.setdefault((e.dtype, e.shape), []).append(u)
    for (dtype, shape), members in batches.items():
        if len(members) >= _MIN_BATCH:
            out.update(_digest_batch(entries, members, dtype, shape))
    return [out[u] if u in out else _digest(entries[u]) for u in chunk]


def _digest_batch(entries: Sequence[TensorEntry], members: list[int], dtype: str, shape: tuple[int, ...]) -> dict[int, Digest]:
    """What ``_digest_values`` gives each member, computed on their stack.

    A member whose values are not all finite is left out (and digested
    alone), so the close look at NaN and overflow stays in one place.
    """
    stack = np.stack([entries[u].read() for u in members])
    m = len(members)
    rows, rest = matrix_view(np.empty(shape, dtype=np.uint8)).shape
    view = stack.reshape(m, rows, rest)
    ri, ci = grid_index((rows, rest))
    grids = np.ascontiguousarray(view[:, ri][:, :, ci])
    with_rows = rows_worth_indexing(entries[members[0]])
    samples = np.ascontiguousarray(view[:, :, axis_sample(rest, ROW_SAMPLE)]) if with_rows else None
    flat = np.ascontiguousarray(stack.reshape(m, -1))
    raw = flat.view(np.uint8)
    dt = DTYPES[dtype]
    norms = np.zeros(m)
    finite = np.ones(m, dtype=bool)
    if dt.is_float and (dt.numpy_native or dt.name == "bfloat16"):
        values = float_values(flat, dtype).astype(np.float64)
        totals = np.einsum("ij,ij->i", values, values)
        finite = np.isfinite(totals)
        norms = np.sqrt(np.where(finite, totals, 0.0))
    out = {}
    for k, u in enumerate(members):
        if finite[k]:
            row_sample = samples[k] if samples is not None else None
            out[u] = Digest(xxhash.xxh3_64_intdigest(raw[k].data), False, False, float(norms[k]), grids[k], row_sample)
    return out
