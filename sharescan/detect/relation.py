"""What a relation is: its detector, its ONNX rewrite, its byte accounting.

A relation is one module under ``sharescan/detect/`` holding one object that
follows :class:`Relation`; ``detect.RELATIONS`` lists them in the order they
run. ``analysis`` detects, ``plan`` accounts and ``onnx_rewrite.dedup``
rewrites by looping over that list, so adding a relation touches its own
module and the list, nothing else.

Protocols rather than abstract classes, as in onnx-ir: a relation needs no
ancestor, only these attributes. :class:`BaseRelation` holds the common
answers (a relation that drops whole tensors and reports no transform), so a
module states only where it differs.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from sharescan.detect.common import PairMeasure
from sharescan.digest import Digest
from sharescan.groups import Group, Transform
from sharescan.table import TensorEntry

__all__ = ["Scope", "Rebuild", "Ledger", "Relation", "BaseRelation"]


@dataclass(frozen=True)
class Scope:
    """What a detector sees: the tensors not yet claimed, and the search settings."""

    entries: Sequence[TensorEntry]
    units: Sequence[int]  # one entry per storage, none claimed by an earlier relation
    digests: Mapping[int, Digest]  # for every unit
    tol: float | None  # near-equal tensors within this relative distance; None: exact only
    row_tol: float | None  # near-equal rows within this; None: identical rows only
    aliases: Sequence[Group] = ()  # storages several entries share, found while choosing the units
    # Measures candidate pairs in batches (None: in this process, one after
    # another); the zoo spreads them over its workers.
    measure: PairMeasure | None = None


@dataclass(frozen=True)
class Rebuild:
    """How a rewritten graph produces a dropped tensor."""

    nodes: tuple[Any, ...]  # nodes whose output keeps the tensor's name; empty: readers read ``kept`` instead
    how: str  # for the report, e.g. "Transpose(emb)"
    # Bytes the rewrite saves, for a whole-tensor rewrite (rows), or when the
    # rebuild stores something itself (a permutation's index); 0: the dropped tensor's bytes.
    saved: int = 0


class Ledger(Protocol):
    """Byte accounting across groups (``plan``): every byte is reclaimed once."""

    def free(self, i: int) -> int:
        """Bytes dropping entry ``i`` whole frees, that no earlier drop freed."""
        ...

    def shared_views(self, members: Sequence[int]) -> set[int]:
        """Members whose bytes overlap an earlier member's (the same bytes, not copies)."""
        ...


class Relation(Protocol):
    name: str  # as in reports and JSON
    # Verification: a lossless rewrite must leave every output bit for bit;
    # a lossy one may move outputs by at most --max-error (relative).
    lossless: bool
    # Whether members a group rebuilds stop being offered to later relations
    # (a tensor stored as unique rows stays stored, so rows claims nothing).
    claims: bool
    # Whether a merge removes members[1:] whole (and dedup rebuilds each from
    # members[0]); aliases are already one storage, rows groups keep every tensor.
    drops_members: bool

    def detect(self, scope: Scope) -> list[Group]:
        """Groups among ``scope.units``; pure: reads tensors only through the entries."""
        ...

    def reclaimed(self, group: Group, ledger: Ledger) -> tuple[int, ...]:
        """Bytes each member gives back (aligned with ``group.members``)."""
        ...

    def member_fields(self, transform: Transform) -> tuple[float | None, bool]:
        """A member's transform as the report's (scale, transposed) fields."""
        ...

    def rebuild(self, graph: Any, kept: str, dropped: str, transform: Transform, onnx_dtype: int) -> Rebuild:
        """How an ONNX graph produces ``dropped`` from ``kept`` (only where ``supports``)."""
        ...

    def supports(self, transform: Transform, onnx_dtype: int) -> bool:
        """Whether onnxruntime can run the rebuild for this element type."""
        ...

    def transform_of(self, scale: float | None, transposed: bool) -> Transform:
        """The transform behind a report member's (scale, transposed) fields: ``member_fields`` reversed."""
        ...

    def rewrite_tensor(self, graph: Any, initializer: Any) -> Rebuild | None:
        """A rewrite of one stored tensor on its own (``dedup --rows``); None: none."""
        ...

    def member_transform(self, member: Any) -> Transform:
        """The transform behind a report member (``result.Member``): its fields, and any permutation."""
        ...


class BaseRelation:
    """Defaults: members dropped whole, rebuilt by reading the kept tensor, no report fields."""

    name = ""
    lossless = True
    claims = True
    drops_members = True

    def detect(self, scope: Scope) -> list[Group]:
        raise NotImplementedError

    def reclaimed(self, group: Group, ledger: Ledger) -> tuple[int, ...]:
        return (0, *(ledger.free(i) for i in group.members[1:]))

    def member_fields(self, transform: Transform) -> tuple[float | None, bool]:
        return None, False

    def transform_of(self, scale: float | None, transposed: bool) -> Transform:
        return Transform()

    def supports(self, transform: Transform, onnx_dtype: int) -> bool:
        return True

    def rebuild(self, graph: Any, kept: str, dropped: str, transform: Transform, onnx_dtype: int) -> Rebuild:
        return Rebuild((), f"reads {kept}")

    def rewrite_tensor(self, graph: Any, initializer: Any) -> Rebuild | None:
        return None

    def member_transform(self, member: Any) -> Transform:
        return self.transform_of(member.scale, member.transposed)
