"""How few bits each float tensor needs when its values are stored as codebook indices.

A codebook of 2^bits floats (k-means centers) plus one index per element
replaces the tensor. For each tensor (or each group of N output channels,
one codebook per group) this finds the fewest bits, 1 to 8, whose relative
L2 error ``||w - codebook[index]|| / ||w||`` stays within the asked error, and
the bytes that takes: indices packed at that width plus the codebooks in the
tensor's own dtype. Pure: parameter table in, results out.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from sharescan.codebook.kmeans import histogram, kmeans, sse
from sharescan.errors import InputError
from sharescan.table import LoadedModel, TensorEntry

__all__ = ["CodebookOptions", "TensorCodebook", "CodebookReport", "codebook_tensor", "codebook_models", "check_bits", "palettized_bytes", "group_rows", "DEFAULT_ERROR"]

logger = logging.getLogger(__name__)

DEFAULT_ERROR = 1e-2  # relative L2 error a codebook may add to a tensor


def check_bits(bits: int, option: str = "--codebook-bits") -> None:
    """Indices are stored in at most one byte: 1 to 8 bits."""
    if isinstance(bits, bool) or not isinstance(bits, int) or not 1 <= bits <= 8:
        raise InputError(f"{option} {bits}: a codebook index takes 1 to 8 bits; choose a width in 1-8")


@dataclass(frozen=True)
class CodebookOptions:
    max_error: float = DEFAULT_ERROR  # relative L2 error allowed per tensor
    bits: int | None = None  # a fixed width: report its error instead of searching 1-8
    group_channels: int | None = None  # one codebook per this many output channels (axis 0); None: per tensor

    def __post_init__(self) -> None:
        if not 0 < self.max_error < 1:  # NaN too
            raise InputError(f"--codebook-error {self.max_error}: a relative error must lie strictly between 0 and 1")
        if self.bits is not None:
            check_bits(self.bits)
        if self.group_channels is not None and self.group_channels < 1:
            raise InputError(f"--group-channels {self.group_channels}: must be a whole number of channels >= 1")


@dataclass(frozen=True)
class TensorCodebook:
    model: int
    name: str
    dtype: str
    shape: tuple[int, ...]
    bytes_before: int
    bits: int | None  # None: left as it is (see note)
    codebooks: int  # one per group of channels (1 per tensor)
    bytes_after: int  # indices packed at ``bits`` + codebooks in ``dtype``; bytes_before when left as it is
    rel_error: float | None  # relative L2 error at ``bits``; None when not clustered
    note: str = ""  # why it was left as it is

    def to_dict(self) -> dict[str, Any]:
        return {**self.__dict__, "shape": list(self.shape)}


@dataclass(frozen=True)
class CodebookReport:
    options: CodebookOptions
    models: tuple[str, ...]
    tensors: tuple[TensorCodebook, ...]
    totals: dict[int, dict[str, int]] = field(default_factory=dict)  # per model: float_bytes, bytes_after, tensors_coded

    def to_dict(self) -> dict[str, Any]:
        o = self.options
        return {
            "settings": {"max_rel_error": o.max_error, "bits": o.bits, "group_channels": o.group_channels, "codebook_dtype": "the tensor's dtype"},
            "totals": [{"model": self.models[k], **t} for k, t in sorted(self.totals.items())],
            "tensors": [t.to_dict() for t in self.tensors],
        }


def palettized_bytes(numel: int, bits: int, codebook_entries: int, itemsize: int) -> int:
    """Bytes of a palettized tensor: its indices packed at ``bits`` each, plus its codebooks."""
    return math.ceil(numel * bits / 8) + codebook_entries * itemsize


def group_rows(rows: int, groups: int) -> list[slice]:
    """The rows of each group: ``ceil(rows / groups)`` each, the last one possibly fewer.

    With N channels a group, ``groups = ceil(rows / N)``: every group then has
    at most N rows, and the split is found again from ``rows`` and ``groups``
    alone (a checkpoint or a graph need not store N).
    """
    per = -(-rows // groups)
    return [slice(s, min(s + per, rows)) for s in range(0, rows, per)]


def _groups(w: np.ndarray, group_channels: int | None) -> list[np.ndarray]:
    if group_channels is None or w.ndim < 2:
        return [w.reshape(-1)]
    return [w[rows].reshape(-1) for rows in group_rows(w.shape[0], -(-w.shape[0] // group_channels))]


def codebook_tensor(entry: TensorEntry, options: CodebookOptions) -> TensorCodebook:
    """The fewest bits (or the fixed ones) that keep ``entry`` within the error, and the bytes after."""
    from sharescan.dtypes import DTYPES

    dt = DTYPES[entry.dtype]

    def left(note: str) -> TensorCodebook:
        return TensorCodebook(entry.model, entry.name, entry.dtype, entry.shape, entry.nbytes, None, 0, entry.nbytes, None, note)

    if not dt.is_float:
        return left(f"{dt.kind} tensor: only float tensors get a codebook")
    if entry.numel == 0:
        return left("empty")
    w = np.asarray(entry.read()).view(dt.values).reshape(entry.shape).astype(np.float64)
    if not np.isfinite(w).all():
        return left("holds NaN or Inf: never clustered")
    groups = _groups(w, options.group_channels)
    hists = [histogram(g) for g in groups]
    norm_sq = sum(h.norm_sq for h in hists)
    widths = [options.bits] if options.bits is not None else list(range(1, 9))
    for bits in widths:
        centers = [kmeans(h, 2**bits) for h in hists]
        err = math.sqrt(sum(sse(h, c) for h, c in zip(hists, centers)) / norm_sq) if norm_sq > 0 else 0.0
        if err <= options.max_error or options.bits is not None:
            after = palettized_bytes(entry.numel, bits, sum(c.size for c in centers), dt.itemsize)
            if after >= entry.nbytes:
                return left(f"smaller than its codebook at {bits} bits ({after:,} B)")
            return TensorCodebook(entry.model, entry.name, entry.dtype, entry.shape, entry.nbytes, bits, len(groups), after, err, "")
    return left(f"needs more than 8 bits for relative error {options.max_error:g}")


def codebook_models(models: Sequence[LoadedModel], options: CodebookOptions) -> CodebookReport:
    """Every stored tensor of every model (a storage several names share counted once)."""
    out: list[TensorCodebook] = []
    totals: dict[int, dict[str, int]] = {}
    for k, m in enumerate(models):
        seen: set[str] = set()
        t = totals.setdefault(k, {"float_bytes": 0, "bytes_after": 0, "tensors_coded": 0})
        for e in m.tensors:
            if e.storage in seen:
                continue
            seen.add(e.storage)
            r = codebook_tensor(e, options)
            out.append(r)
            if r.bits is not None or not r.note.endswith("only float tensors get a codebook"):
                t["float_bytes"] += r.bytes_before
                t["bytes_after"] += r.bytes_after
                t["tensors_coded"] += r.bits is not None
    return CodebookReport(options, tuple(m.path for m in models), tuple(out), totals)
