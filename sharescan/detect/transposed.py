"""2-D tensors equal to another's transpose.

This is the copy ``torch.onnx.export`` writes for a tied embedding after
constant folding: the embedding [V, D] for Gather, and its transpose [D, V]
for the output MatMul.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from sharescan.detect.identical import same_bytes
from sharescan.digest import Digest
from sharescan.groups import Group
from sharescan.table import TensorEntry

__all__ = ["find_transposed"]


def find_transposed(entries: Sequence[TensorEntry], units: Sequence[int], digests: Mapping[int, Digest]) -> list[Group]:
    by_content: dict[tuple[str, tuple[int, ...], int], list[int]] = {}
    for i in units:
        e = entries[i]
        by_content.setdefault((e.dtype, e.shape, digests[i].content), []).append(i)
    claimed: set[int] = set()
    groups = []
    for i in units:  # file order: the first of a pair is kept
        d = digests[i]
        if d.transposed is None or i in claimed:
            continue
        e = entries[i]
        key = (e.dtype, (e.shape[1], e.shape[0]), d.transposed)
        copies = []
        transposed_bytes: np.ndarray | None = None
        for j in by_content.get(key, []):
            if j == i or j in claimed:
                continue
            if transposed_bytes is None:
                transposed_bytes = np.ascontiguousarray(e.read().T)
            if same_bytes(transposed_bytes, entries[j].read()):
                copies.append(j)
        if copies:
            claimed.update([i, *copies])
            groups.append(Group("transposed", (i, *copies)))
    return groups
