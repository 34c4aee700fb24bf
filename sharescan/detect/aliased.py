"""Tensors that already share storage: tied weights, dropped names, Identity aliases."""

from __future__ import annotations

from collections.abc import Sequence

from sharescan.groups import Group
from sharescan.table import TensorEntry

__all__ = ["find_aliased"]


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
        # The largest view of a storage stands for it (the others are parts of it).
        first = max(ix, key=lambda i: (entries[i].nbytes, -i))
        if len(ix) > 1:
            groups.append(Group("aliased", (first, *(i for i in ix if i != first))))
        units.append(first)
    units.sort()
    return groups, units
