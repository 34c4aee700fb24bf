"""A tensor with duplicate rows: stored as its unique rows plus an index, rebuilt by Gather."""

from __future__ import annotations

from typing import Any

import numpy as np

from sharescan.onnx_rewrite.graph import unique_name

__all__ = ["unique_rows"]


def unique_rows(graph: Any, init: Any) -> tuple[list[Any], int] | None:
    """Replace an initializer by Gather(unique rows, int32 index); None when it saves nothing.

    Returns the new nodes and the bytes saved. Rows are compared bit for bit.
    """
    from onnx import helper, numpy_helper

    w = numpy_helper.to_array(init)
    if w.ndim < 2 or w.shape[0] < 2 or w.shape[0] >= 2**31:
        return None
    flat = np.ascontiguousarray(w.reshape(w.shape[0], -1))
    keys = flat.view(np.dtype((np.void, flat.dtype.itemsize * flat.shape[1]))).reshape(-1)
    _, first, inverse = np.unique(keys, return_index=True, return_inverse=True)
    order = np.argsort(first)  # keep rows in their first-seen order
    rank = np.empty_like(order)
    rank[order] = np.arange(order.size)
    table = w[np.sort(first)]
    index = rank[inverse.reshape(-1)].astype(np.int32)
    saved = w.nbytes - table.nbytes - index.nbytes
    if saved <= 0:
        return None
    table_name = unique_name(graph, f"{init.name}_unique_rows")
    index_name = unique_name(graph, f"{init.name}_row_index")
    graph.initializer.append(numpy_helper.from_array(table, table_name))
    graph.initializer.append(numpy_helper.from_array(index, index_name))
    node = helper.make_node("Gather", [table_name, index_name], [init.name], axis=0, name=f"sharescan_rows_{init.name}")
    return [node], saved
