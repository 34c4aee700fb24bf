"""Small helpers over an ONNX ModelProto's main graph."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Any

__all__ = [
    "SMALL_BYTES",
    "all_nodes",
    "infer_shapes",
    "is_external",
    "list_initializers_as_inputs",
    "overridable",
    "rename_inputs",
    "replace_input",
    "small_constants",
    "stored_tensors",
    "tensor_nbytes",
    "unique_name",
]

logger = logging.getLogger(__name__)

# Tensors up to this size are "small": shape inference gets their contents
# (shapes, axes; larger ones enter as typed inputs, which keeps its copy under
# protobuf's 2 GB), and the shape arithmetic reads their values.
SMALL_BYTES = 1024


def all_nodes(graph: Any) -> Iterator[Any]:
    """Every node of the graph and of its subgraphs (which may read outer names)."""
    for node in graph.node:
        yield node
        for attr in node.attribute:
            if attr.HasField("g"):
                yield from all_nodes(attr.g)
            for sub in attr.graphs:
                yield from all_nodes(sub)


def replace_input(graph: Any, old: str, new: str) -> int:
    """Point every reader of ``old`` (subgraphs included) at ``new``; returns the count."""
    return rename_inputs(graph, {old: new})


def rename_inputs(graph: Any, renamed: dict[str, str]) -> int:
    """Point every reader of each key at its value, in one walk over the graph and its subgraphs.

    Chains resolve (a -> b and b -> c read c). One walk matters: a model with
    a thousand small identical constants would otherwise be walked a thousand times.
    """

    def final(name: str) -> str:
        seen = set()
        while name in renamed and name not in seen:
            seen.add(name)
            name = renamed[name]
        return name

    count = 0
    for node in all_nodes(graph):
        for k, name in enumerate(node.input):
            if name in renamed:
                node.input[k] = final(name)
                count += 1
    return count


def stored_tensors(graph: Any) -> dict[str, tuple[str, Any]]:
    """Main-graph tensors a rewrite may drop: initializers and Constant outputs."""
    out: dict[str, tuple[str, Any]] = {}
    for init in graph.initializer:
        out[init.name] = ("initializer", init)
    for node in graph.node:
        if node.op_type == "Constant" and len(node.output) == 1:
            out[node.output[0]] = ("constant", node)
    return out


def unique_name(graph: Any, base: str) -> str:
    taken = {i.name for i in graph.initializer} | {o for n in all_nodes(graph) for o in n.output} | {i.name for i in graph.input}
    name, k = base, 0
    while name in taken:
        k += 1
        name = f"{base}_{k}"
    return name


def tensor_nbytes(elem_type: int, dims: Any) -> int:
    """Bytes of a tensor's data from its onnx element type and dims (strings count 8 bytes each)."""
    import numpy as np
    from onnx import TensorProto, helper

    numel = int(np.prod([int(d) for d in dims], dtype=np.int64))
    if elem_type in (TensorProto.INT4, TensorProto.UINT4, TensorProto.FLOAT4E2M1):
        return (numel + 1) // 2  # packed two a byte (numpy holds them one a byte)
    itemsize = 8 if elem_type in (TensorProto.UNDEFINED, TensorProto.STRING) else np.dtype(helper.tensor_dtype_to_np_dtype(elem_type)).itemsize
    return numel * itemsize


def is_external(tensor: Any) -> bool:
    return bool(tensor.data_location == 1)  # onnx.TensorProto.EXTERNAL: the data lives in another file


def small_constants(model: Any, max_bytes: int = SMALL_BYTES) -> dict[str, Any]:
    """Values of the main graph's small constants: initializers no caller may override, and Constant outputs."""
    from onnx import numpy_helper

    fed = overridable(model)
    out = {}
    for t in model.graph.initializer:
        if t.name not in fed and not is_external(t) and tensor_nbytes(t.data_type, t.dims) <= max_bytes:
            out[t.name] = numpy_helper.to_array(t)
    for node in model.graph.node:
        if node.op_type == "Constant" and node.domain in ("", "ai.onnx"):
            attr = next((a for a in node.attribute if a.name == "value"), None)
            if attr is not None and tensor_nbytes(attr.t.data_type, attr.t.dims) <= max_bytes:
                out[node.output[0]] = numpy_helper.to_array(attr.t)
    return out


def infer_shapes(model: Any, nodes: list[Any] | None = None, value_info: bool = True) -> Any | None:
    """onnx shape inference (with data propagation) over a copy holding only small tensors; None if it fails.

    ``nodes`` replaces the main graph's nodes in the copy; ``value_info=False``
    leaves out the model's own annotations, to see what inference derives alone.
    Initializers a caller may override enter as typed inputs only: their
    default value must not become a shape.
    """
    import onnx
    from onnx import helper

    light = onnx.ModelProto()
    light.ir_version = model.ir_version
    light.opset_import.extend(model.opset_import)
    light.functions.extend(model.functions)
    g = light.graph
    g.node.extend(model.graph.node if nodes is None else nodes)
    g.input.extend(model.graph.input)
    g.output.extend(model.graph.output)
    if value_info:
        g.value_info.extend(model.graph.value_info)
    listed = {i.name for i in g.input}
    fed = overridable(model)
    for t in model.graph.initializer:
        if t.name not in fed and not is_external(t) and tensor_nbytes(t.data_type, t.dims) <= SMALL_BYTES:
            g.initializer.append(t)
        elif t.name not in listed:
            g.input.append(helper.make_tensor_value_info(t.name, t.data_type, list(t.dims)))
    try:
        return onnx.shape_inference.infer_shapes(light, data_prop=True)
    except Exception as e:  # onnx raises several types for graphs it cannot type
        logger.info("shape inference failed: %s", e)
        return None


def overridable(model: Any) -> set[str]:
    """Initializers a caller may replace: from IR 4 on, one also listed as a graph input is only a default.

    Before IR 4 every initializer had to be listed as an input, so the listing says nothing.
    """
    if model.ir_version < 4:
        return set()
    listed = {i.name for i in model.graph.input}
    return {t.name for t in model.graph.initializer if t.name in listed}


def list_initializers_as_inputs(model: Any) -> None:
    """Before IR 4 every initializer must also be a graph input: list those a rewrite added."""
    from onnx import helper

    if model.ir_version >= 4:
        return
    graph = model.graph
    listed = {v.name for v in graph.input}
    for init in graph.initializer:
        if init.name not in listed:
            graph.input.append(helper.make_tensor_value_info(init.name, init.data_type, list(init.dims)))
