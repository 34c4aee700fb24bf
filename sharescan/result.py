"""The one result type every report renders: terminal, JSON and Markdown."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

__all__ = ["SCHEMA_VERSION", "Member", "GroupReport", "RowsReport", "CandidateReport", "ModelReport", "Totals", "Settings", "AnalysisResult"]

# Bump on any change a JSON consumer could notice (renamed or removed keys).
SCHEMA_VERSION = 1


@dataclass(frozen=True)
class Member:
    model: str  # the model's path as given
    name: str
    shape: tuple[int, ...]
    dtype: str
    scale: float | None = None  # "scaled": this member = scale * representative
    transposed: bool = False  # "near": this member is close to the representative's transpose
    # "permuted": (axis, index) per permuted axis; along it, member[i] = representative[index[i]].
    permutation: tuple[tuple[int, tuple[int, ...]], ...] = ()

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"model": self.model, "name": self.name, "shape": list(self.shape), "dtype": self.dtype}
        if self.scale is not None:
            out["scale"] = self.scale
        if self.transposed:
            out["transposed"] = True
        if self.permutation:
            out["permutation"] = [_permutation_dict(axis, index) for axis, index in self.permutation]
        return out


# Longer index lists are given in JSON as their length and hash: a 50,000-row
# embedding's order would be most of the report.
_LISTED_INDEX = 1024


def _permutation_dict(axis: int, index: tuple[int, ...]) -> dict[str, Any]:
    import numpy as np
    import xxhash

    out: dict[str, Any] = {"axis": axis, "length": len(index)}
    if len(index) <= _LISTED_INDEX:
        out["index"] = list(index)
    else:  # the hash of the int32 index dedup stores, little-endian
        out["index_xxh3_64"] = f"{xxhash.xxh3_64_intdigest(np.asarray(index, dtype='<i4').tobytes()):016x}"
    return out


@dataclass(frozen=True)
class RowsReport:
    n_rows: int
    distinct_rows: int
    row_bytes: int
    index_bytes: int

    def to_dict(self) -> dict[str, Any]:
        return {"n_rows": self.n_rows, "distinct_rows": self.distinct_rows, "row_bytes": self.row_bytes, "index_bytes": self.index_bytes}


@dataclass(frozen=True)
class CandidateReport:
    a: Member
    b: Member
    transposed: bool  # b is compared with a's transpose
    rel_distance: float  # ||a - b|| / max(||a||, ||b||)
    max_abs_diff: float
    saved_bytes: int = 0  # what tying the pair into one tensor would save
    score: float = 0.0  # saved_bytes / rel_distance: candidates are listed by it, highest first

    def to_dict(self) -> dict[str, Any]:
        return {
            "a": self.a.to_dict(),
            "b": self.b.to_dict(),
            "transposed": self.transposed,
            "rel_distance": self.rel_distance,
            "max_abs_diff": self.max_abs_diff,
            "saved_bytes": self.saved_bytes,
            "score": self.score,
        }


@dataclass(frozen=True)
class GroupReport:
    relation: str
    members: tuple[Member, ...]  # members[0] is kept; the others are rebuilt from it
    bytes_each: int  # bytes of one member
    reclaimable_bytes: int
    max_abs_error: float  # largest |kept - member| element over members (0 when exact)
    rel_error: float  # worst ||kept - member|| / ||member|| (0 when exact)
    rows: RowsReport | None = None  # "rows" only

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "relation": self.relation,
            "members": [m.to_dict() for m in self.members],
            "bytes_each": self.bytes_each,
            "reclaimable_bytes": self.reclaimable_bytes,
            "max_abs_error": self.max_abs_error,
            "rel_error": self.rel_error,
        }
        if self.rows is not None:
            out["rows"] = self.rows.to_dict()
        return out


@dataclass(frozen=True)
class ModelReport:
    path: str
    format: str
    n_tensors: int  # named tensors, aliases included
    stored_bytes: int  # every named tensor's bytes; a tensor under two names counts twice
    unique_bytes: int  # each storage once: what the file holds for tensor data
    reclaimable_bytes: int  # bytes of this model's tensors that the groups rebuild from others
    file_bytes: int  # size on disk, external data and shards included
    nonfinite: tuple[str, ...] = ()  # tensors holding NaN or Inf (never merged by value)
    reused_initializers: tuple[tuple[str, int], ...] = ()  # ONNX: (name, number of reading nodes) when > 1
    files: tuple[str, ...] = ()  # every file read for this model

    def to_dict(self) -> dict[str, Any]:
        return {
            "path": self.path,
            "format": self.format,
            "n_tensors": self.n_tensors,
            "stored_bytes": self.stored_bytes,
            "unique_bytes": self.unique_bytes,
            "reclaimable_bytes": self.reclaimable_bytes,
            "file_bytes": self.file_bytes,
            "nonfinite_tensors": list(self.nonfinite),
            "reused_initializers": {n: c for n, c in self.reused_initializers},
            "files": list(self.files),
        }


@dataclass(frozen=True)
class Totals:
    stored_bytes: int
    unique_bytes: int
    reclaimable_bytes: int
    by_relation: tuple[tuple[str, int], ...]  # (relation, reclaimable bytes), every relation listed
    # The same bytes split by where the copies live: a group whose members span
    # several models is "across" (one model in two formats); the rest is "within".
    reclaimable_within_models_bytes: int = 0
    reclaimable_across_models_bytes: int = 0

    @property
    def after_bytes(self) -> int:
        """Unique bytes once every group is shared."""
        return self.unique_bytes - self.reclaimable_bytes

    @property
    def reclaimable_fraction(self) -> float:
        return self.reclaimable_bytes / self.unique_bytes if self.unique_bytes else 0.0

    def to_dict(self) -> dict[str, Any]:
        return {
            "stored_bytes": self.stored_bytes,
            "unique_bytes": self.unique_bytes,
            "reclaimable_bytes": self.reclaimable_bytes,
            "after_sharing_bytes": self.after_bytes,
            "reclaimable_fraction": round(self.reclaimable_fraction, 6),
            "reclaimable_by_relation": dict(self.by_relation),
            "reclaimable_within_models_bytes": self.reclaimable_within_models_bytes,
            "reclaimable_across_models_bytes": self.reclaimable_across_models_bytes,
        }


# Merging tensors within 2e-3 changes each about as much as casting it to
# bfloat16 does (bf16 rounding: about 1.1e-3 relative L2 on typical weights).
# Here, beside the settings it fills, so that reading it imports nothing.
DEFAULT_TOL = 2e-3


@dataclass(frozen=True)
class Settings:
    tol: float | None  # near-equal tensors: relative distance limit (None: exact relations only)
    row_tol: float | None  # near-equal rows: relative distance limit (None: identical rows only)

    def to_dict(self) -> dict[str, Any]:
        return {"tol": self.tol, "row_tol": self.row_tol}


@dataclass(frozen=True)
class AnalysisResult:
    models: tuple[ModelReport, ...]
    groups: tuple[GroupReport, ...]  # sorted by reclaimable bytes, largest first
    totals: Totals
    settings: Settings
    candidates: tuple[CandidateReport, ...] = ()  # pairs worth tying, most bytes saved per unit of distance first
    warnings: tuple[str, ...] = field(default=())

    def to_dict(self) -> dict[str, Any]:
        return {
            "schema_version": SCHEMA_VERSION,
            "settings": self.settings.to_dict(),
            "models": [m.to_dict() for m in self.models],
            "groups": [g.to_dict() for g in self.groups],
            "candidates": [c.to_dict() for c in self.candidates],
            "totals": self.totals.to_dict(),
            "warnings": list(self.warnings),
        }
