"""Transposed, negated and scaled copies: one node rebuilds the copy from the kept tensor.

The node's output keeps the copy's name, so no reader changes. onnxruntime
folds such a node back into a constant at load time unless constant folding
is disabled; ``ram`` measures both and the report recommends the options.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from sharescan.onnx_rewrite.graph import unique_name

__all__ = ["rebuild_node"]


def rebuild_node(graph: Any, relation: str, keep: str, drop: str, scale: float | None, onnx_dtype: int) -> list[Any]:
    """Nodes (and, for a scale, the initializer they need) producing ``drop`` from ``keep``."""
    from onnx import helper, numpy_helper

    if relation == "transposed":
        return [helper.make_node("Transpose", [keep], [drop], perm=[1, 0], name=f"sharescan_transpose_{drop}")]
    if relation == "negated":
        return [helper.make_node("Neg", [keep], [drop], name=f"sharescan_neg_{drop}")]
    if relation == "scaled":
        dtype = helper.tensor_dtype_to_np_dtype(onnx_dtype)
        factor = unique_name(graph, f"{drop}_scale")
        graph.initializer.append(numpy_helper.from_array(np.array(scale, dtype=dtype), factor))
        return [helper.make_node("Mul", [keep, factor], [drop], name=f"sharescan_scale_{drop}")]
    raise ValueError(relation)
