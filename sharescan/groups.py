"""What a detector finds: a group of tensors and how they relate."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

__all__ = ["Group", "Relation", "RELATIONS"]

Relation = Literal["aliased", "identical", "transposed", "negated", "scaled"]

# The order detectors run in, and the order of the per-relation totals: a
# tensor claimed by an earlier relation is not offered to a later one, so no
# byte is reclaimed twice.
RELATIONS: tuple[Relation, ...] = ("aliased", "identical", "transposed", "negated", "scaled")


@dataclass(frozen=True)
class Group:
    relation: Relation
    # Indices into the analysis' entry list. members[0] is the representative
    # that stays stored; every other member can be rebuilt from it.
    members: tuple[int, ...]
    # For "scaled": member i equals scales[i] * representative, exactly in its
    # dtype (scales[0] == 1.0). Empty for the other relations.
    scales: tuple[float, ...] = ()
    max_abs_error: float = 0.0  # largest |rebuilt - original| over members (0 when exact)
    rel_error: float = 0.0  # ||rebuilt - original||_2 / ||original||_2, worst member
