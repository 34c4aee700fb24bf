"""Tensors that already share storage: tied weights, dropped names, Identity aliases.

A PyTorch storage can hold several views (a slice, a transpose, the parts of
a flattened cuDNN weight). Each view is a tensor of its own; only views that
read the same bytes the same way share a storage key and are aliases. The
file holds each buffer once, so removing one view frees only the bytes of its
span that no kept view needs: :class:`FreedBytes` counts those, each once.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence

from sharescan.detect.relation import BaseRelation, Ledger, Scope
from sharescan.groups import Group
from sharescan.table import TensorEntry

__all__ = ["find_aliased", "FreedBytes", "overlapping_views", "Aliased", "RELATION"]


def find_aliased(entries: Sequence[TensorEntry]) -> tuple[list[Group], list[int]]:
    """Alias groups, and the units: one entry index per distinct storage.

    Storage keys are only meaningful inside one model, so the model index is
    part of the key.
    """
    by_storage: dict[tuple[int, str], list[int]] = {}
    for i, e in enumerate(entries):
        by_storage.setdefault((e.model, e.storage), []).append(i)
    groups = []
    units = []
    for ix in by_storage.values():
        if len(ix) > 1:
            groups.append(Group("aliased", tuple(ix)))
        units.append(ix[0])
    units.sort()
    return groups, units


class FreedBytes:
    """Bytes freed by removing tensors: per buffer, the span bytes no kept view needs.

    ``removed`` holds every entry a plan drops; every other view of the same
    buffer is kept, and its span stays needed. A dropped view frees the bytes
    of its span outside the kept spans and outside what an earlier dropped
    view already freed, at most its own size (a strided view's span has gaps).
    Bytes of a buffer that no view covers are never counted: conservative.
    """

    def __init__(self, entries: Sequence[TensorEntry], removed: Collection[int]) -> None:
        self.entries = entries
        dropped = {(entries[i].model, entries[i].storage) for i in removed}
        self.taken: dict[tuple[int, str], list[tuple[int, int]]] = {}
        for e in entries:
            if (e.model, e.storage) not in dropped:
                self._add((e.model, e.buffer_key), e.byte_span)

    def free(self, i: int) -> int:
        """Bytes removing entry ``i`` frees that nothing counted before freed."""
        e = self.entries[i]
        buffer = (e.model, e.buffer_key)
        start, end = e.byte_span
        covered = sum(max(0, min(end, b) - max(start, a)) for a, b in self.taken.get(buffer, ()))
        self._add(buffer, (start, end))
        return min(end - start - covered, e.nbytes)

    def _add(self, buffer: tuple[int, str], span: tuple[int, int]) -> None:
        start, end = span
        if end <= start:
            return
        merged = []
        for a, b in self.taken.get(buffer, []):
            if b < start or a > end:
                merged.append((a, b))
            else:
                start, end = min(a, start), max(b, end)
        merged.append((start, end))
        self.taken[buffer] = sorted(merged)


def overlapping_views(entries: Sequence[TensorEntry], members: Sequence[int]) -> set[int]:
    """Members whose bytes overlap an earlier member's in the same buffer.

    Duplicate rows found between such views (a tensor and a slice of it) may
    be the very same bytes of the file, so they reclaim nothing.
    """
    out = set()
    for k, i in enumerate(members):
        e = entries[i]
        start, end = e.byte_span
        for j in members[:k]:
            f = entries[j]
            a, b = f.byte_span
            if (f.model, f.buffer_key) == (e.model, e.buffer_key) and a < end and start < b:
                out.add(i)
                break
    return out


class Aliased(BaseRelation):
    """Already one storage: nothing to rewrite, nothing to reclaim; listed so reports show the sharing."""

    name = "aliased"
    claims = False  # only the first entry of a storage is a unit: the others were never offered
    drops_members = False

    def detect(self, scope: Scope) -> list[Group]:
        return list(scope.aliases)  # found with the units, from the storage keys

    def reclaimed(self, group: Group, ledger: Ledger) -> tuple[int, ...]:
        return (0,) * len(group.members)


RELATION = Aliased()
