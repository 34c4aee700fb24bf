"""Transposed, negated and scaled copies: one node rebuilds the copy from the kept tensor.

The node's output keeps the copy's name, so no reader changes. onnxruntime
folds such a node back into a constant at load time unless constant folding
is disabled; ``ram`` measures both and the report recommends the options.
Which relation uses which node is the relation's choice (``detect/``).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from sharescan.onnx_rewrite.graph import unique_name

__all__ = ["ARITHMETIC_TYPES", "transpose_node", "neg_node", "mul_nodes"]

ARITHMETIC_TYPES = frozenset({1, 10, 11})  # float32, float16, float64: Neg and Mul run on onnxruntime's CPU


def transpose_node(keep: str, drop: str) -> Any:
    from onnx import helper

    return helper.make_node("Transpose", [keep], [drop], perm=[1, 0], name=f"sharescan_transpose_{drop}")


def neg_node(keep: str, drop: str) -> Any:
    from onnx import helper

    return helper.make_node("Neg", [keep], [drop], name=f"sharescan_neg_{drop}")


def mul_nodes(graph: Any, keep: str, drop: str, scale: float, onnx_dtype: int) -> list[Any]:
    """Mul by a scalar initializer (added to ``graph``) of the tensor's own type."""
    from onnx import helper, numpy_helper

    dtype = helper.tensor_dtype_to_np_dtype(onnx_dtype)
    factor = unique_name(graph, f"{drop}_scale")
    graph.initializer.append(numpy_helper.from_array(np.array(scale, dtype=dtype), factor))
    return [helper.make_node("Mul", [keep, factor], [drop], name=f"sharescan_scale_{drop}")]
