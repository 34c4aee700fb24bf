"""Graph tidying for ``--simplify``: Identity nodes, repeated subexpressions, what nothing reads.

Each keeps every output bit-identical: a reader of an Identity reads its
source, a repeat reads the earlier node's result, an unread node computes
nothing anyone sees. Graph outputs keep their names; initializers a caller
may override stay listed.
"""

from __future__ import annotations

from typing import Any

from sharescan.onnx_rewrite.graph import all_nodes, overridable, rename_inputs
from sharescan.onnx_rewrite.shapes import REBUILD_PREFIX

__all__ = ["NONDETERMINISTIC", "drop_identities", "graph_outputs", "merge_repeats", "prune", "read_names", "subgraph_reads"]

# Never merged or evaluated ahead of time: two calls need not agree.
NONDETERMINISTIC = {"RandomNormal", "RandomUniform", "RandomNormalLike", "RandomUniformLike", "Multinomial", "Bernoulli", "Dropout"}


def graph_outputs(graph: Any) -> set[str]:
    return {o.name for o in graph.output}


def subgraph_reads(graph: Any) -> set[str]:
    """Names read inside If/Loop/Scan bodies (they may read the outer graph's values)."""
    names: set[str] = set()
    for node in graph.node:
        for attr in node.attribute:
            for sub in ([attr.g] if attr.HasField("g") else []) + list(attr.graphs):
                names |= {i for n in all_nodes(sub) for i in n.input}
    return names


def read_names(graph: Any) -> set[str]:
    """Every name something reads: main-graph nodes, subgraph nodes, graph outputs."""
    return {i for n in all_nodes(graph) for i in n.input if i} | graph_outputs(graph)


def drop_identities(graph: Any) -> int:
    """Readers of an Identity read its source; an Identity that writes a graph output stays (it holds the name)."""
    outputs = graph_outputs(graph)
    source_of = {}
    kept = []
    for node in graph.node:
        if node.op_type == "Identity" and node.domain in ("", "ai.onnx") and node.output[0] not in outputs:
            source_of[node.output[0]] = node.input[0]
        else:
            kept.append(node)
    if source_of:
        del graph.node[:]
        graph.node.extend(kept)
        rename_inputs(graph, source_of)
    return len(source_of)


def _pure(node: Any, outputs: set[str]) -> bool:
    if node.domain not in ("", "ai.onnx") or node.op_type in NONDETERMINISTIC or node.name.startswith(REBUILD_PREFIX):
        return False
    return not any(a.HasField("g") or len(a.graphs) for a in node.attribute) and not any(o in outputs for o in node.output)


def merge_repeats(graph: Any) -> int:
    """Common subexpressions: a node with the op, inputs and attributes of an earlier one is replaced by it.

    Exporters repeat Shape(x) and the arithmetic on it for every reshape in a
    layer; with dynamic axes nothing folds these, but every repeat can go.
    """
    outputs = graph_outputs(graph)
    renamed: dict[str, str] = {}
    seen: dict[tuple[Any, ...], list[str]] = {}
    kept = []
    for node in graph.node:
        for k, name in enumerate(node.input):
            if name in renamed:
                node.input[k] = renamed[name]
        if _pure(node, outputs):
            key = (node.op_type, tuple(node.input), len(node.output), tuple(sorted(a.SerializeToString() for a in node.attribute)))
            earlier = seen.get(key)
            # The earlier twin must name every output this one names (an omitted optional output has no value to read).
            if earlier is not None and all(e for o, e in zip(node.output, earlier) if o):
                renamed.update({o: e for o, e in zip(node.output, earlier) if o})
                continue
            seen.setdefault(key, list(node.output))
        kept.append(node)
    merged = len(graph.node) - len(kept)
    if merged:
        del graph.node[:]
        graph.node.extend(kept)
        for node in all_nodes(graph):  # subgraphs may read the merged names
            for k, name in enumerate(node.input):
                if name in renamed:
                    node.input[k] = renamed[name]
    return merged


def prune(model: Any, read_before: set[str]) -> tuple[int, int]:
    """Drop nodes whose results nothing reads, then tensors that were read before and are not now.

    A tensor nothing read before this pass stays: removing it would not be
    this pass's doing. One a caller may override stays with its input entry.
    """
    graph = model.graph
    nodes = 0
    while True:
        read = read_names(graph)
        dead = [n for n in graph.node if n.output and not any(o in read for o in n.output if o) and n.domain in ("", "ai.onnx") and not n.name.startswith(REBUILD_PREFIX)]
        if not dead:
            break
        for n in dead:
            graph.node.remove(n)
        nodes += len(dead)
    read, fed = read_names(graph), overridable(model)
    tensors = 0
    for t in list(graph.initializer):
        if t.name in read_before and t.name not in read and t.name not in fed:
            graph.initializer.remove(t)
            for value in list(graph.input):  # before IR 4 every initializer is listed as an input too
                if value.name == t.name:
                    graph.input.remove(value)
            tensors += 1
    return nodes, tensors
