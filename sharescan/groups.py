"""What a detector finds: a group of tensors and how they relate."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

__all__ = ["Group", "Transform", "SAME", "TRANSPOSE", "NEGATE", "RowStats", "Candidate"]


@dataclass(frozen=True)
class Transform:
    """How one member is rebuilt from its group's representative."""

    # "same": the member equals the representative (exactly, or within tol for
    # "near"); "transpose": its transpose; "negate": -representative, bit for
    # bit; "scale": scale * representative, computed in the member's dtype;
    # "permute": representative[row_order][:, col_order], bit for bit.
    kind: Literal["same", "transpose", "negate", "scale", "permute"] = "same"
    scale: float = 1.0  # the factor of a "scale" transform; 1.0 otherwise
    # For "permute": member row i is representative row row_order[i] (None:
    # rows in place); col_order likewise for columns.
    row_order: tuple[int, ...] | None = None
    col_order: tuple[int, ...] | None = None

    @property
    def permutation(self) -> tuple[tuple[int, tuple[int, ...]], ...]:
        """(axis, index) for each permuted axis: what the report shows."""
        return tuple((axis, order) for axis, order in ((0, self.row_order), (1, self.col_order)) if order is not None)


SAME = Transform()
TRANSPOSE = Transform("transpose")
NEGATE = Transform("negate")


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
    relation: str  # the name of the relation (detect.RELATIONS) that found it
    # Indices into the analysis' entry list. members[0] is the representative
    # that stays stored; every other member can be rebuilt from it.
    members: tuple[int, ...]
    # transforms[i] rebuilds member i from the representative; empty: every
    # member is the representative itself (aliases, copies, rows groups).
    transforms: tuple[Transform, ...] = ()
    max_abs_error: float = 0.0  # largest |representative - member| element (0 when exact)
    # Worst relative distance to a member (detect.common.relative_error:
    # ||a - b|| / max(||a||, ||b||), the measure --tol bounds); 0 when exact.
    rel_error: float = 0.0
    rows: RowStats | None = None  # for "rows"
    # For "near": elements a merge turns from +0.0 to -0.0 or back, summed over
    # members. Equal values, so neither error above sees them; an output that
    # divides by them flips between +inf and -inf.
    zero_signs: int = 0

    def transform(self, k: int) -> Transform:
        """How member ``k`` (a position in ``members``) is rebuilt from the representative."""
        return self.transforms[k] if self.transforms else SAME


@dataclass(frozen=True)
class Candidate:
    """Two same-shape tensors that are not near enough to merge: worth tying?"""

    a: int
    b: int
    transposed: bool  # b is compared with a's transpose
    rel_distance: float  # ||a - b|| / max(||a||, ||b||), exact
    max_abs_diff: float
    saved_bytes: int = 0  # what sharing the pair as one tensor would save: one member's bytes

    @property
    def score(self) -> float:
        """Bytes saved per unit of relative distance: what candidates are ranked by."""
        return self.saved_bytes / self.rel_distance if self.rel_distance > 0 else float("inf")
