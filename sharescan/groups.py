"""What a detector finds: a group of tensors and how they relate."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

__all__ = ["Group", "Relation", "RELATIONS", "RowStats", "Candidate"]

Relation = Literal["aliased", "identical", "transposed", "negated", "scaled", "near", "rows"]

# The order detectors run in, and the order of the per-relation totals: a
# tensor claimed by an earlier relation is not offered to a later one, so no
# byte is reclaimed twice.
RELATIONS: tuple[Relation, ...] = ("aliased", "identical", "transposed", "negated", "scaled", "near", "rows")


@dataclass(frozen=True)
class RowStats:
    """Duplicate rows of the member tensors, stored as unique rows plus an index."""

    n_rows: int  # rows of all member tensors together
    distinct_rows: int  # rows left once duplicates (and near rows, with --row-tol) are merged
    row_bytes: int  # bytes of one row
    index_bytes: int  # the int32 index (one per row of each rebuilt tensor) the unique-rows form needs
    # Bytes each member gives back: its merged rows minus its share of the index.
    reclaimed: tuple[int, ...]

    @property
    def reclaimable_bytes(self) -> int:
        return sum(self.reclaimed)


@dataclass(frozen=True)
class Group:
    relation: Relation
    # Indices into the analysis' entry list. members[0] is the representative
    # that stays stored; every other member can be rebuilt from it.
    members: tuple[int, ...]
    # For "scaled": member i equals scales[i] * representative, exactly in its
    # dtype (scales[0] == 1.0). Empty for the other relations.
    scales: tuple[float, ...] = ()
    # For "near": member i is close to the representative's transpose.
    transposed: tuple[bool, ...] = ()
    max_abs_error: float = 0.0  # largest |representative - member| element (0 when exact)
    # Worst relative distance to a member (detect.common.relative_error:
    # ||a - b|| / max(||a||, ||b||), the measure --tol bounds); 0 when exact.
    rel_error: float = 0.0
    rows: RowStats | None = None  # for "rows"
    # For "near": elements a merge turns from +0.0 to -0.0 or back, summed over
    # members. Equal values, so neither error above sees them; an output that
    # divides by them flips between +inf and -inf.
    zero_signs: int = 0


@dataclass(frozen=True)
class Candidate:
    """Two same-shape tensors that are not near enough to merge: worth tying?"""

    a: int
    b: int
    transposed: bool  # b is compared with a's transpose
    rel_distance: float  # ||a - b|| / max(||a||, ||b||), exact
    max_abs_diff: float
