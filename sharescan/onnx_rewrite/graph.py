"""Small helpers over an ONNX ModelProto's main graph."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

__all__ = ["all_nodes", "replace_input", "stored_tensors", "unique_name"]


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
    count = 0
    for node in all_nodes(graph):
        for k, name in enumerate(node.input):
            if name == old:
                node.input[k] = new
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
