"""``--simplify``: fold what the file already determines, where that makes it smaller.

Exporters leave subgraphs whose value is fixed by the file: shape arithmetic
over inputs declared with fixed sizes (Shape -> Gather -> Unsqueeze -> Concat
-> Reshape), position ids built with Range and read through a Gather of the
whole position table, Identity copies of tensors. This pass

1. drops Identity nodes and repeated subexpressions (``tidy.py``), and makes
   Reshape targets built from the input's own dims constant (``reshape.py``),
2. learns what the declared input sizes fix (``shapes.py``),
3. folds every constant component whose results take fewer bytes than the
   nodes and source tensors it frees, evaluating it with onnxruntime itself
   (the kernels that would compute it at run time, so outputs stay
   bit-identical), and
4. drops nodes and tensors nothing reads any more.

The byte rule is what keeps sharing intact: folding ``Transpose(W)`` where
``W`` is also read elsewhere would store ``W`` twice, so it never pays; the
rebuild nodes that dedup writes are never folded. Opt-in, because it
specialises the graph to the declared input sizes: a model whose input dims
are later edited must be folded again.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import numpy as np

from sharescan.onnx_rewrite.graph import SMALL_BYTES, list_initializers_as_inputs, overridable, rename_inputs, tensor_nbytes
from sharescan.onnx_rewrite.reshape import constant_reshape_targets
from sharescan.onnx_rewrite.shapes import REBUILD_PREFIX, Shapes, infer
from sharescan.onnx_rewrite.tidy import NONDETERMINISTIC, drop_identities, graph_outputs, merge_repeats, prune, read_names, subgraph_reads

__all__ = ["FoldResult", "simplify"]

logger = logging.getLogger(__name__)

# Each round can fix shapes the previous one could not see (a Range over a
# folded length); exporters' chains settle in two or three.
_ROUNDS = 8
# Bytes an initializer costs beyond its data, name and dims: field tags, type, lengths.
_TENSOR_OVERHEAD = 16
_FLOAT_TYPES = {1, 10, 11, 16}  # onnx FLOAT, FLOAT16, DOUBLE, BFLOAT16
# Ops that move values without computing new ones: folding them keeps every bit.
_DATA_MOVEMENT = {"Gather", "GatherElements", "GatherND", "Slice", "Reshape", "Transpose", "Concat", "Squeeze", "Unsqueeze", "Expand", "Flatten", "Split", "Tile", "Identity"}


@dataclass(frozen=True)
class FoldResult:
    identities_dropped: int
    repeats_merged: int  # nodes computing what an earlier node computes from the same inputs
    reshapes_constant: int  # Reshape targets rebuilt from the input's own dims, now constants (reshape.py)
    nodes_folded: int  # nodes replaced by the tensors they compute
    tensors_added: int
    nodes_pruned: int  # nodes nothing read any more
    tensors_pruned: int  # tensors nothing reads any more
    # The serialized model (external data included) before and after this pass,
    # initializers estimated from their fields; the file sizes in the dedup
    # result also count the merges and --strip-debug.
    model_bytes_before: int
    model_bytes_after: int

    def to_dict(self) -> dict[str, Any]:
        return self.__dict__.copy()


def simplify(model: Any) -> FoldResult:
    """Apply the pass to ``model`` in place (main graph only; subgraphs keep their nodes)."""
    graph = model.graph
    before = _model_bytes(model)
    read_before = read_names(graph)
    identities = drop_identities(graph)
    merged = merge_repeats(graph)
    reshapes = constant_reshape_targets(model, infer(model).dims)
    folded = added = unread = 0
    for _ in range(_ROUNDS):
        step = _fold(model, infer(model))
        folded, added, unread = folded + step[0], added + step[1], unread + step[2]
        if not any(step):
            break
    nodes_pruned, tensors_pruned = prune(model, read_before)
    names = {o for n in graph.node for o in n.output} | {i.name for i in graph.input} | {t.name for t in graph.initializer}
    for info in list(graph.value_info):
        if info.name not in names:
            graph.value_info.remove(info)
    list_initializers_as_inputs(model)
    return FoldResult(identities, merged, reshapes, folded, added, nodes_pruned + unread, tensors_pruned, before, _model_bytes(model))


def _initializer_bytes(name: str, elem_type: int, dims: Any) -> int:
    """An initializer's serialized size: data, name, dims and type fields.

    protobuf's ByteSize would encode the tensor to measure it (1.6 s per call
    on a 500 MB model); this counts the same fields without touching the data.
    """
    return tensor_nbytes(elem_type, dims) + len(name) + 8 * len(dims) + _TENSOR_OVERHEAD


def _stored_bytes(tensor: Any) -> int:
    return _initializer_bytes(tensor.name, tensor.data_type, tensor.dims)


def _model_bytes(model: Any) -> int:
    """The model's serialized size (external data included), from its parts; the initializers' estimated as above."""
    graph = model.graph
    infos = list(graph.input) + list(graph.output) + list(graph.value_info)
    return sum(n.ByteSize() for n in graph.node) + sum(v.ByteSize() for v in infos) + sum(_stored_bytes(t) for t in graph.initializer)


def _moves(node: Any, shapes: Shapes) -> bool:
    """Whether the node only moves values: a data-movement op, or a Cast to the type it already has (exporters write these)."""
    if node.op_type == "Cast":
        source, result = shapes.static.get(node.input[0]), shapes.static.get(node.output[0])
        return source is not None and result is not None and source[0] == result[0]
    return node.op_type in _DATA_MOVEMENT


class _Graph:
    """One round's view of the main graph: sources, readers, and the nodes that could fold."""

    def __init__(self, model: Any, shapes: Shapes) -> None:
        graph = self.graph = model.graph
        self.shapes = shapes
        self.outputs = graph_outputs(graph)
        self.sub_reads = subgraph_reads(graph)
        fed = overridable(model)
        # Stored constants and what dropping each would save; a caller may override the fed ones.
        self.sources = {t.name: _stored_bytes(t) for t in graph.initializer if t.name not in fed}
        self.sources.update({n.output[0]: n.ByteSize() for n in graph.node if n.op_type == "Constant" and n.domain in ("", "ai.onnx")})
        self.readers: dict[str, list[int]] = {}
        for k, node in enumerate(graph.node):
            for i in node.input:
                self.readers.setdefault(i, []).append(k)
        known = set(self.sources)
        self.producer: dict[str, int] = {}
        for k, node in enumerate(graph.node):
            if self._foldable(node, known, k in shapes.known):
                for o in node.output:
                    self.producer[o] = k
                    known.add(o)

    def _foldable(self, node: Any, known: set[str], from_dims: bool) -> bool:
        if node.domain not in ("", "ai.onnx") or node.op_type in NONDETERMINISTIC or node.op_type == "Constant":
            return False
        if node.name.startswith(REBUILD_PREFIX) or any(a.HasField("g") or len(a.graphs) for a in node.attribute):
            return False
        if any(o in self.outputs or o not in self.shapes.static for o in node.output if o):
            return False
        present = [i for i in node.input if i]
        return from_dims or (bool(present) and all(i in known for i in present))

    def components(self) -> list[list[int]]:
        """Foldable nodes joined by the values they pass and the large sources they share.

        A small source (a scalar read by every shape chain) does not join:
        one chain's cost must not become every chain's.
        """
        parent: dict[int, int] = {}

        def root(k: int) -> int:
            while parent.setdefault(k, k) != k:
                parent[k] = parent[parent[k]]
                k = parent[k]
            return k

        by_source: dict[str, int] = {}
        folding = sorted(set(self.producer.values()))
        for k in folding:
            root(k)
            for i in self.graph.node[k].input:
                if i in self.producer:
                    parent[root(k)] = root(self.producer[i])
                elif i in self.sources and self.sources[i] > SMALL_BYTES and k not in self.shapes.known:  # known dims read no data
                    parent[root(k)] = root(by_source.setdefault(i, k))
        groups: dict[int, list[int]] = {}
        for k in folding:
            groups.setdefault(root(k), []).append(k)
        return list(groups.values())

    def results(self, nodes: list[int]) -> list[str]:
        """Values the component computes that something outside it reads."""
        inside = set(nodes)
        return [o for k in nodes for o in self.graph.node[k].output if o and (o in self.sub_reads or any(r not in inside for r in self.readers.get(o, [])))]

    def worth_folding(self, nodes: list[int], results: list[str]) -> bool:
        graph, static, inside = self.graph, self.shapes.static, set(nodes)
        freed = {
            i
            for k in nodes
            if k not in self.shapes.known
            for i in graph.node[k].input
            if i in self.sources and i not in self.outputs and i not in self.sub_reads and all(r in inside for r in self.readers[i])
        }
        before = sum(graph.node[k].ByteSize() for k in nodes) + sum(self.sources[s] for s in freed)
        after = sum(_initializer_bytes(o, *static[o]) for o in results)
        # A float constant can switch on an onnxruntime fusion that rounds
        # differently (a Div by a constant scale folds into MatMul; Mul(x, 1/W)
        # becomes Div(x, W)): float results are folded only where they are
        # moved, not computed (a position table's rows), and where that frees
        # a stored tensor, not for the few bytes of a scale.
        computes_floats = any(static[o][0] in _FLOAT_TYPES and not _moves(graph.node[k], self.shapes) for k in nodes for o in graph.node[k].output if o in static)
        floats_out = any(static[o][0] in _FLOAT_TYPES for o in results)
        if floats_out and (computes_floats or not any(self.sources[s] > SMALL_BYTES for s in freed)):
            return False
        # A constant If condition makes onnxruntime inline one branch and
        # type-check it anew, which rejects some branches that run fine.
        if any(graph.node[r].op_type == "If" and graph.node[r].input[0] == o for o in results for r in self.readers.get(o, [])):
            return False
        return after < before


def _fold(model: Any, shapes: Shapes) -> tuple[int, int, int]:
    """One round: (nodes folded, tensors added, nodes removed because nothing read them)."""
    view = _Graph(model, shapes)
    chosen: list[int] = []
    results: list[str] = []
    unread = 0
    for nodes in view.components():
        out = view.results(nodes)
        if view.worth_folding(nodes, out):
            chosen += nodes
            results += out
            unread += 0 if out else len(nodes)  # a chain a constant Reshape target replaced
    if not chosen:
        return 0, 0, 0
    try:
        values = _evaluate(model, sorted(chosen), results, shapes) if results else {}
    except Exception as e:  # onnxruntime rejects the subgraph (e.g. an index out of range): leave it to run, and fail, as before
        logger.info("not folded: onnxruntime could not evaluate the constant nodes (%s)", e)
        return 0, 0, 0
    return len(chosen) - unread, _splice(model.graph, set(chosen), results, values), unread


def _splice(graph: Any, chosen: set[int], results: list[str], values: dict[str, np.ndarray]) -> int:
    """Replace the chosen nodes by their results as initializers; equal results are stored once."""
    from onnx import numpy_helper

    kept = [n for k, n in enumerate(graph.node) if k not in chosen]
    del graph.node[:]
    graph.node.extend(kept)
    seen: dict[tuple[Any, ...], str] = {}
    same_as: dict[str, str] = {}
    added = 0
    for name in results:
        value = values[name]
        tensor = numpy_helper.from_array(value, name)
        # Strings live in string_data, not raw_data: compare the values themselves.
        content = tuple(value.ravel().tolist()) if value.dtype == object else value.tobytes()
        key = (tensor.data_type, tuple(tensor.dims), content)
        if key in seen:  # shape chains of every layer fold to the same small tensors
            same_as[name] = seen[key]
            continue
        seen[key] = name
        graph.initializer.append(tensor)
        added += 1
    rename_inputs(graph, same_as)
    return added


def _evaluate(model: Any, nodes: list[int], wanted: list[str], shapes: Shapes) -> dict[str, np.ndarray]:
    """Run the chosen nodes in onnxruntime, those that read only known dims replaced by their values."""
    import onnx
    import onnxruntime as ort
    from onnx import helper, numpy_helper

    graph = model.graph
    sub = onnx.ModelProto()
    sub.ir_version = model.ir_version
    sub.opset_import.extend(model.opset_import)
    g = sub.graph
    g.name = "sharescan_fold"
    produced: set[str] = set()
    for k in nodes:
        node = graph.node[k]
        if k in shapes.known:
            g.node.append(helper.make_node("Constant", [], [node.output[0]], value=numpy_helper.from_array(shapes.known[k])))
        else:
            g.node.append(node)
        produced |= set(node.output)
    needed = {i for n in g.node for i in n.input if i and i not in produced}
    g.initializer.extend(t for t in graph.initializer if t.name in needed)
    for node in graph.node:
        if node.op_type == "Constant" and node.output[0] in needed:
            g.node.insert(0, node)
    for name in wanted:
        elem, dims = shapes.static[name]
        g.output.append(helper.make_tensor_value_info(name, elem, list(dims)))
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    options.log_severity_level = 4  # failures come back as exceptions; the log would add a second line
    session = ort.InferenceSession(sub.SerializeToString(), options, providers=["CPUExecutionProvider"])
    return dict(zip(wanted, session.run(wanted, {})))
