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
    groups = [Group("aliased", tuple(ix)) for ix in by_storage.values() if len(ix) > 1]
    units = [ix[0] for ix in by_storage.values()]
    return groups, units
