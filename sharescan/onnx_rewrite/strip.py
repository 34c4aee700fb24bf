"""``--strip-debug``: drop what exporters write for people reading a trace, not for running.

The dynamo exporter stores a stack trace per node (1-5% of a small model's
file), torch.export's graph signature on the graph, and provenance on every
input, output, value_info and initializer. Model metadata, names and the
values' types stay. Intermediate value_info is dropped only where onnx's
shape inference derives the same type from the graph: onnxruntime's fusions
read these annotations, and dropping all of them changed the bundled dynamo
LM's outputs by 1.9e-6. Fields are cleared, not set to "": an explicitly
empty string is still serialized (onnx's protos are proto2).
"""

from __future__ import annotations

from typing import Any

from sharescan.onnx_rewrite.graph import all_nodes, infer_shapes

__all__ = ["strip_debug"]


def strip_debug(model: Any) -> None:
    graph = model.graph
    for node in all_nodes(graph):
        node.ClearField("doc_string")
        node.ClearField("metadata_props")
    for value in list(graph.input) + list(graph.output) + list(graph.value_info):
        value.ClearField("doc_string")
        value.ClearField("metadata_props")
    for tensor in graph.initializer:
        tensor.ClearField("doc_string")
        tensor.ClearField("metadata_props")
        if tensor.data_location == 0:  # DEFAULT is what an absent field means
            tensor.ClearField("data_location")
    graph.ClearField("metadata_props")
    graph.ClearField("doc_string")
    inferred = infer_shapes(model, value_info=False)
    derived = {} if inferred is None else {v.name: v.type for v in inferred.graph.value_info}
    for value in list(graph.value_info):
        if value.name in derived and derived[value.name] == value.type:
            graph.value_info.remove(value)
