"""One read of every tensor: content hashes and keys that bucket candidates.

Detectors compare these small digests instead of tensors, and read a tensor
again only to confirm a candidate byte for byte.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import xxhash

from sharescan.dtypes import DTYPES, to_float
from sharescan.table import TensorEntry

__all__ = ["Digest", "compute_digests", "content_hash", "transpose_partners"]

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Digest:
    content: int  # xxh3-64 of the tensor's bytes
    transposed: int | None  # xxh3-64 of its transpose's bytes; only for 2-D tensors with a partner shape
    # Float tensors only: hash of the sign pattern (normalised so the first
    # nonzero element is positive) and the index of the largest |value|. Both
    # survive w -> c*w for any c != 0 up to rounding ties, so negated and
    # scaled copies land in one bucket.
    scale_key: tuple[int, int] | None
    nonfinite: bool  # holds NaN or Inf: compared as bytes only, never by value
    has_nan: bool  # NaN in particular: worth a warning (-Inf is common in attention masks)


def content_hash(array: np.ndarray) -> int:
    # xxh3 runs at memory speed; a collision only costs a byte comparison.
    return xxhash.xxh3_64_intdigest(np.ascontiguousarray(array).view(np.uint8).reshape(-1).data)


def transpose_partners(entries: Sequence[TensorEntry], units: Sequence[int]) -> set[int]:
    """2-D units for which some other unit has the transposed shape and same dtype."""
    shapes: dict[tuple[str, tuple[int, ...]], int] = {}
    for i in units:
        e = entries[i]
        if len(e.shape) == 2:
            shapes[(e.dtype, e.shape)] = shapes.get((e.dtype, e.shape), 0) + 1
    out = set()
    for i in units:
        e = entries[i]
        if len(e.shape) != 2 or e.numel == 0:
            continue
        rows, cols = e.shape
        partners = shapes.get((e.dtype, (cols, rows)), 0) - (1 if rows == cols else 0)
        if partners > 0:
            out.add(i)
    return out


def _digest(entry: TensorEntry, want_transpose: bool) -> Digest:
    array = entry.read()
    content = content_hash(array)
    transposed = content_hash(np.ascontiguousarray(array.T)) if want_transpose else None
    dt = DTYPES[entry.dtype]
    nonfinite = has_nan = False
    scale_key = None
    if dt.is_float and entry.numel > 0 and (dt.numpy_native or dt.name == "bfloat16"):
        values = to_float(array, entry.dtype).reshape(-1)
        nonfinite = not bool(np.isfinite(values).all())
        has_nan = nonfinite and bool(np.isnan(values).any())
        # A single element is trivially a multiple of any other: not a finding.
        if not nonfinite and entry.numel > 1:
            signs = np.sign(values).astype(np.int8)
            nz = np.flatnonzero(signs)
            if nz.size:
                if signs[nz[0]] < 0:
                    signs = -signs
                scale_key = (content_hash(signs), int(np.argmax(np.abs(values))))
    return Digest(content, transposed, scale_key, nonfinite, has_nan)


def compute_digests(
    entries: Sequence[TensorEntry],
    units: Sequence[int],
    on_tensor: Callable[[int], None] | None = None,
) -> dict[int, Digest]:
    """Digest every unit (one entry per distinct storage)."""
    partners = transpose_partners(entries, units)
    out: dict[int, Digest] = {}
    for i in units:
        out[i] = _digest(entries[i], i in partners)
        if on_tensor is not None:
            on_tensor(entries[i].nbytes)
    return out
