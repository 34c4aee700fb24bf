"""The zoo's result: models, cross-model groups, families and totals; every report renders it.

JSON is ``ZooResult.to_dict()``; ``from_dict`` reads it back, which is how a
finished analysis is kept in the store and returned by a rescan of an
unchanged zoo.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

__all__ = ["ZOO_SCHEMA_VERSION", "ZooModel", "ZooMember", "ZooGroup", "ZooFamily", "ZooTotals", "ZooTiming", "ZooResult"]

ZOO_SCHEMA_VERSION = 1


@dataclass(frozen=True)
class ZooModel:
    path: str  # as listed
    format: str  # "" when skipped
    bytes: int  # tensor bytes the model holds, each storage once (analyze's unique_bytes)
    file_bytes: int  # on disk, shards and external data included
    tensors: int  # named tensors, aliases included
    reclaimable_bytes: int  # bytes of this model's tensors the groups rebuild from others
    status: str  # "ok" or "skipped"
    reason: str = ""  # why it was skipped

    def to_dict(self) -> dict[str, Any]:
        return {"path": self.path, "format": self.format, "bytes": self.bytes, "file_bytes": self.file_bytes, "tensors": self.tensors,
                "reclaimable_bytes": self.reclaimable_bytes, "status": self.status, "reason": self.reason}


@dataclass(frozen=True)
class ZooMember:
    model: str
    tensor: str
    shape: tuple[int, ...]
    dtype: str
    transposed: bool = False  # rebuilt from the kept tensor's transpose
    scale: float | None = None  # "scaled": this member = scale * kept

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"model": self.model, "tensor": self.tensor, "shape": list(self.shape), "dtype": self.dtype}
        if self.transposed:
            out["transposed"] = True
        if self.scale is not None:
            out["scale"] = self.scale
        return out

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ZooMember:
        return cls(d["model"], d["tensor"], tuple(d["shape"]), d["dtype"], bool(d.get("transposed", False)), d.get("scale"))


@dataclass(frozen=True)
class ZooGroup:
    relation: str
    bytes_reclaimable: int
    bytes_each: int  # bytes of one member
    members: tuple[ZooMember, ...]  # members[0] is kept
    rel_error: float  # worst ||kept - member|| / max(norms); 0 when exact
    max_abs_error: float
    across_models: bool  # members in more than one model

    def to_dict(self) -> dict[str, Any]:
        return {"relation": self.relation, "bytes_reclaimable": self.bytes_reclaimable, "bytes_each": self.bytes_each,
                "members": [m.to_dict() for m in self.members], "rel_error": self.rel_error, "max_abs_error": self.max_abs_error,
                "across_models": self.across_models}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ZooGroup:
        return cls(d["relation"], d["bytes_reclaimable"], d["bytes_each"], tuple(ZooMember.from_dict(m) for m in d["members"]), d["rel_error"], d["max_abs_error"], d["across_models"])


@dataclass(frozen=True)
class ZooFamily:
    models: tuple[str, ...]  # models linked by groups that span models
    shared_bytes: int  # what those groups reclaim
    groups: tuple[int, ...]  # indices into ZooResult.groups

    def to_dict(self) -> dict[str, Any]:
        return {"models": list(self.models), "shared_bytes": self.shared_bytes, "groups": list(self.groups)}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ZooFamily:
        return cls(tuple(d["models"]), d["shared_bytes"], tuple(d["groups"]))


@dataclass(frozen=True)
class ZooTotals:
    models: int  # listed, skipped ones included
    skipped: int
    input_bytes: int  # tensor bytes of the readable models, each model's storages once
    unique_bytes: int  # what a content-addressed store keeps after every merge: input_bytes - reclaimable_bytes
    exact_unique_bytes: int  # ... after the bit-exact merges only (identical, transposed, negated, scaled, permuted, identical rows)
    reclaimable_bytes: int
    reclaimable_across_models_bytes: int
    file_bytes: int  # on disk
    by_relation: tuple[tuple[str, int], ...]
    content_addressed_bytes: int = 0  # what a store keyed by each tensor's bytes keeps: identical copies merged, nothing else

    def to_dict(self) -> dict[str, Any]:
        return {"models": self.models, "skipped": self.skipped, "input_bytes": self.input_bytes, "unique_bytes": self.unique_bytes,
                "exact_unique_bytes": self.exact_unique_bytes, "content_addressed_bytes": self.content_addressed_bytes, "reclaimable_bytes": self.reclaimable_bytes,
                "reclaimable_across_models_bytes": self.reclaimable_across_models_bytes, "file_bytes": self.file_bytes,
                "reclaimable_by_relation": dict(self.by_relation)}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ZooTotals:
        return cls(d["models"], d["skipped"], d["input_bytes"], d["unique_bytes"], d["exact_unique_bytes"], d["reclaimable_bytes"],
                   d["reclaimable_across_models_bytes"], d["file_bytes"], tuple(d["reclaimable_by_relation"].items()), d["content_addressed_bytes"])


@dataclass(frozen=True)
class ZooTiming:
    seconds: float  # wall time of this run
    digested: int  # models read and digested in this run (skipped ones included)
    from_store: int  # models whose digests (or skip reason) came from the store unread
    result_from_store: bool = False  # the whole analysis came from the store: no model was read
    tensors_read: int = 0  # tensors read again from their files to confirm candidates (repeat reads answered from memory not counted)
    models_reopened: int = 0  # models opened again for those reads
    digest_seconds: float = 0.0  # listing, stat and digesting (the parallel part)
    join_seconds: float = 0.0  # the cross-model search and its confirming reads (in this process)
    pairs_measured: int = 0  # candidate pairs whose exact distance the join measured
    measure_seconds: float = 0.0  # of join_seconds, the time those measurements took
    pairs_on_workers: int = 0  # of pairs_measured, those sent to the cluster's workers (where that was cheaper)

    def to_dict(self) -> dict[str, Any]:
        return {"seconds": round(self.seconds, 3), "digested": self.digested, "from_store": self.from_store, "result_from_store": self.result_from_store,
                "tensors_read": self.tensors_read, "models_reopened": self.models_reopened,
                "digest_seconds": round(self.digest_seconds, 3), "join_seconds": round(self.join_seconds, 3),
                "pairs_measured": self.pairs_measured, "measure_seconds": round(self.measure_seconds, 3), "pairs_on_workers": self.pairs_on_workers}


@dataclass(frozen=True)
class ZooResult:
    models: tuple[ZooModel, ...]  # in listing order
    groups: tuple[ZooGroup, ...]  # largest first, as analyze orders them
    families: tuple[ZooFamily, ...]  # most shared bytes first
    totals: ZooTotals
    settings: dict[str, Any]  # tol, row_tol
    warnings: tuple[str, ...] = ()
    timing: ZooTiming = field(default_factory=lambda: ZooTiming(0.0, 0, 0))

    def to_dict(self) -> dict[str, Any]:
        return {
            "schema_version": ZOO_SCHEMA_VERSION,
            "settings": dict(self.settings),
            "models": [m.to_dict() for m in self.models],
            "groups": [g.to_dict() for g in self.groups],
            "families": [f.to_dict() for f in self.families],
            "totals": self.totals.to_dict(),
            "warnings": list(self.warnings),
            "timing": self.timing.to_dict(),
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ZooResult:
        """A result read back (timing is the caller's: set it with ``with_timing``)."""
        return cls(
            tuple(ZooModel(**m) for m in d["models"]),
            tuple(ZooGroup.from_dict(g) for g in d["groups"]),
            tuple(ZooFamily.from_dict(f) for f in d["families"]),
            ZooTotals.from_dict(d["totals"]),
            dict(d["settings"]),
            tuple(d["warnings"]),
        )

    def with_timing(self, timing: ZooTiming) -> ZooResult:
        return replace(self, timing=timing)
