"""A permuted copy rebuilt by Gather: one per permuted axis, with an int32 index initializer."""

from __future__ import annotations

from typing import Any

import numpy as np

from sharescan.onnx_rewrite.graph import unique_name

__all__ = ["gather_nodes"]


def gather_nodes(graph: Any, keep: str, drop: str, orders: tuple[tuple[int, tuple[int, ...]], ...]) -> tuple[list[Any], int]:
    """Nodes producing ``drop`` = ``keep`` gathered along each (axis, index); returns them and the index bytes added to ``graph``."""
    from onnx import helper, numpy_helper

    nodes = []
    source = keep
    index_bytes = 0
    for k, (axis, order) in enumerate(orders):
        index = np.asarray(order, dtype=np.int32)
        name = unique_name(graph, f"{drop}_{('row', 'col')[axis]}_order")
        graph.initializer.append(numpy_helper.from_array(index, name))
        index_bytes += index.nbytes
        out = drop if k == len(orders) - 1 else unique_name(graph, f"{drop}_rows_permuted")
        nodes.append(helper.make_node("Gather", [source, name], [out], axis=axis, name=f"sharescan_permute{axis}_{drop}"))
        source = out
    return nodes, index_bytes
