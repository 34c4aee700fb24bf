"""Byte-identical tensors: same dtype, same shape, same bits.

Bitwise identity is what a merge can promise without changing any output:
-0.0 and 0.0 differ, and NaN payloads compare as bytes.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from sharescan.detect.common import same_bytes
from sharescan.detect.relation import BaseRelation, Scope
from sharescan.digest import Digest
from sharescan.groups import Group
from sharescan.table import TensorEntry

__all__ = ["find_identical", "Identical", "RELATION"]


def find_identical(entries: Sequence[TensorEntry], units: Sequence[int], digests: Mapping[int, Digest]) -> list[Group]:
    buckets: dict[tuple[str, tuple[int, ...], int], list[int]] = {}
    for i in units:
        e = entries[i]
        if e.numel == 0:
            continue  # nothing to share
        buckets.setdefault((e.dtype, e.shape, digests[i].content), []).append(i)
    groups = []
    for members in buckets.values():
        # A hash collision splits a bucket into several confirmed groups.
        pending = list(members)
        while len(pending) > 1:
            rep, rest = pending[0], pending[1:]
            rep_bytes = entries[rep].read()
            same = [j for j in rest if same_bytes(rep_bytes, entries[j].read())]
            if same:
                groups.append(Group("identical", (rep, *same)))
            taken = set(same)  # a list here made 20,000 copies cost 200 million comparisons
            pending = [j for j in rest if j not in taken]
    return groups


class Identical(BaseRelation):
    """Copies: each dropped one's readers read the kept tensor (``onnx_rewrite.rename``)."""

    name = "identical"

    def detect(self, scope: Scope) -> list[Group]:
        return find_identical(scope.entries, scope.units, scope.digests)


RELATION = Identical()
