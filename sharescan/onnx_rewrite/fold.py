"""``--simplify``: fold what the file already determines, where that makes it smaller.

Exporters leave subgraphs whose value is fixed by the file: shape arithmetic
over inputs declared with fixed sizes (Shape -> Gather -> Unsqueeze -> Concat
-> Reshape), position ids built with Range and read through a Gather of the
whole position table, Identity copies of tensors. This pass

1. drops Identity nodes (their readers read the source), merges repeated
   subexpressions, and makes Reshape targets built from the input's own
   dims constant (``reshape.py``),
2. folds Shape and Size of values whose shape shape inference fixes,
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
import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from sharescan.onnx_rewrite.graph import all_nodes, infer_shapes, list_initializers_as_inputs, overridable, replace_input
from sharescan.onnx_rewrite.reshape import constant_reshape_targets

__all__ = ["FoldResult", "simplify"]

logger = logging.getLogger(__name__)

# Never evaluated ahead of time: their value is not fixed by the file.
_NONDETERMINISTIC = {"RandomNormal", "RandomUniform", "RandomNormalLike", "RandomUniformLike", "Multinomial", "Bernoulli", "Dropout"}
# Tensors at most this large do not tie the components that read them
# together (a scalar read by many shape chains must not make one chain's cost
# every chain's), and are the only ones whose values Gather-of-Shape reads.
_SMALL_BYTES = 1024
_ROUNDS = 8
_FLOAT_TYPES = {1, 10, 11, 16}  # float32, float16, float64, bfloat16
# Ops that move values without computing new ones: folding them keeps every bit.
_DATA_MOVEMENT = {"Gather", "GatherElements", "GatherND", "Slice", "Reshape", "Transpose", "Concat", "Squeeze", "Unsqueeze", "Expand", "Flatten", "Split", "Tile", "Identity"}
_REBUILD_PREFIX = "sharescan_"  # dedup's Transpose/Neg/Mul/Gather/alias nodes: the sharing itself


@dataclass(frozen=True)
class FoldResult:
    identities_dropped: int
    repeats_merged: int  # nodes computing what an earlier node computes from the same inputs
    reshapes_constant: int  # Reshape targets rebuilt from the input's own dims, now constants (reshape.py)
    nodes_folded: int  # constant nodes replaced by the tensors they compute
    tensors_added: int
    nodes_pruned: int  # nodes and tensors nothing read any more
    tensors_pruned: int
    bytes_before: int  # serialized model, before and after this pass
    bytes_after: int

    def to_dict(self) -> dict[str, Any]:
        return self.__dict__.copy()


def simplify(model: Any) -> FoldResult:
    """Apply the pass to ``model`` in place (main graph only; subgraphs keep their nodes)."""
    graph = model.graph
    before = _model_bytes(model)
    used_before = _read_names(graph)
    identities = _drop_identities(graph)
    merged = _merge_repeats(graph)
    reshapes = constant_reshape_targets(graph, _static_types(model, {})[1], overridable(model))
    folded = added = 0
    # Rounds: a folded value can fix a shape inference could not see through
    # (Range over a folded length), which makes more nodes foldable.
    for _ in range(_ROUNDS):
        types, _, precomputed = _infer(model)
        n, a = _fold(model, types, precomputed)
        folded, added = folded + n, added + a
        if not n:
            break
    nodes_pruned, tensors_pruned = _prune(graph, used_before)
    names = {o for n in graph.node for o in n.output} | {i.name for i in graph.input} | {t.name for t in graph.initializer}
    for info in list(graph.value_info):
        if info.name not in names:
            graph.value_info.remove(info)
    list_initializers_as_inputs(model)
    return FoldResult(identities, merged, reshapes, folded, added, nodes_pruned, tensors_pruned, before, _model_bytes(model))


def _model_bytes(model: Any) -> int:
    # ByteSize counts tensors kept as external data only by their reference: add their data.
    total = model.ByteSize()
    for t in model.graph.initializer:
        if t.data_location == 1:
            total += _nbytes(t.data_type, t.dims)
    return total


def _nbytes(elem_type: int, dims: Any) -> int:
    from onnx import helper

    itemsize = np.dtype(helper.tensor_dtype_to_np_dtype(elem_type)).itemsize if elem_type not in (0, 8) else 8
    return int(np.prod([int(d) for d in dims], dtype=np.int64)) * itemsize


def _graph_outputs(graph: Any) -> set[str]:
    return {o.name for o in graph.output}


def _subgraph_reads(graph: Any) -> set[str]:
    """Names read inside subgraphs (they may read the outer graph's values)."""
    names: set[str] = set()
    for node in graph.node:
        for attr in node.attribute:
            subs = ([attr.g] if attr.HasField("g") else []) + list(attr.graphs)
            for sub in subs:
                names |= {i for n in all_nodes(sub) for i in n.input}
    return names


def _read_names(graph: Any) -> set[str]:
    return {i for n in graph.node for i in n.input if i} | _subgraph_reads(graph) | _graph_outputs(graph)


def _drop_identities(graph: Any) -> int:
    outputs = _graph_outputs(graph)
    count = 0
    for node in list(graph.node):
        if node.op_type == "Identity" and node.domain in ("", "ai.onnx") and node.output[0] not in outputs:
            graph.node.remove(node)
            replace_input(graph, node.output[0], node.input[0])
            count += 1
    return count


_Types = dict[str, tuple[int, tuple[int, ...]]]
_Dims = dict[str, tuple[int | None, ...]]


def _merge_repeats(graph: Any) -> int:
    """Common subexpressions: a node with the op, inputs and attributes of an earlier one is replaced by it.

    Exporters repeat Shape(x) and the arithmetic on it for every reshape in a
    layer; with dynamic axes nothing folds these, but every repeat can go.
    """
    outputs = _graph_outputs(graph)
    renamed: dict[str, str] = {}
    seen: dict[tuple[Any, ...], list[str]] = {}
    kept = []
    for node in graph.node:
        for k, name in enumerate(node.input):
            if name in renamed:
                node.input[k] = renamed[name]
        pure = node.domain in ("", "ai.onnx") and node.op_type not in _NONDETERMINISTIC and not node.name.startswith(_REBUILD_PREFIX)
        pure = pure and not any(a.HasField("g") or len(a.graphs) for a in node.attribute) and not any(o in outputs for o in node.output)
        if pure:
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


def _infer(model: Any) -> tuple[_Types, _Dims, dict[int, np.ndarray]]:
    """Shapes, and the nodes whose values follow from them, fed back until nothing new is known.

    Shape inference cannot see through Gather(Shape(ids), 1) -> Range; with
    that Gather replaced by its value, it can, and the Range's rows are known.
    """
    known: dict[int, np.ndarray] = {}
    while True:
        types, dims = _static_types(model, known)
        more = _shape_values(model.graph, dims, overridable(model))
        if set(more) <= set(known):
            return types, dims, known
        known = {**known, **more}


def _static_types(model: Any, known: dict[int, np.ndarray]) -> tuple[_Types, _Dims]:
    """Element type and shape of every value whose shape inference pins down; and every known rank's dims (None: unknown)."""
    from onnx import helper, numpy_helper

    nodes = [helper.make_node("Constant", [], [node.output[0]], value=numpy_helper.from_array(known[k])) if k in known else node for k, node in enumerate(model.graph.node)]
    out: _Types = {t.name: (t.data_type, tuple(t.dims)) for t in model.graph.initializer}
    partial: _Dims = {}
    inferred = infer_shapes(model, nodes)
    if inferred is None:  # inference is a help, not a requirement: fold nothing shape-dependent
        return out, partial
    for info in list(inferred.graph.value_info) + list(inferred.graph.input) + list(inferred.graph.output):
        tt = info.type.tensor_type
        if not (info.type.HasField("tensor_type") and tt.elem_type and tt.HasField("shape")):
            continue
        dims = tuple(d.dim_value if d.HasField("dim_value") else None for d in tt.shape.dim)
        partial.setdefault(info.name, dims)
        if None not in dims:
            out.setdefault(info.name, (tt.elem_type, dims))  # type: ignore[arg-type]
    return out, partial


def _constant_value(graph: Any, name: str, fed: set[str]) -> np.ndarray | None:
    """The value of a small initializer (not one a caller may feed) or Constant output, else None."""
    from onnx import numpy_helper

    if name in fed:
        return None
    for t in graph.initializer:
        if t.name == name:
            return numpy_helper.to_array(t) if t.data_location != 1 and _nbytes(t.data_type, t.dims) <= _SMALL_BYTES else None
    for node in graph.node:
        if node.op_type == "Constant" and node.output[0] == name:
            attr = next((a for a in node.attribute if a.name == "value"), None)
            return numpy_helper.to_array(attr.t) if attr is not None else None
    return None


def _shape_values(graph: Any, dims: _Dims, fed: set[str]) -> dict[int, np.ndarray]:
    """Nodes whose result follows from known dims alone: Shape, Size, and Gather or Slice of known entries of a Shape.

    The last matters for a batch-dynamic export: Shape(ids) is not fixed, but
    Shape(ids)[1], the sequence length, is, and position ids follow from it.
    """
    values: dict[int, np.ndarray] = {}
    shape_of: dict[str, tuple[int | None, ...]] = {}  # Shape output -> the dims it holds
    for k, node in enumerate(graph.node):
        if node.domain not in ("", "ai.onnx") or node.op_type not in ("Shape", "Size", "Gather", "Slice") or node.name.startswith(_REBUILD_PREFIX):
            continue
        if node.op_type == "Shape" and node.input[0] in dims:
            attrs = {a.name: a.i for a in node.attribute}
            held = dims[node.input[0]]
            held = held[slice(attrs.get("start", 0), attrs.get("end", len(held)))]
            shape_of[node.output[0]] = held
            if None not in held:
                values[k] = np.array(held, dtype=np.int64)
        elif node.op_type == "Size" and node.input[0] in dims and None not in dims[node.input[0]]:
            values[k] = np.array(math.prod(d or 0 for d in dims[node.input[0]]), dtype=np.int64)
        elif node.op_type == "Gather" and node.input[0] in shape_of and all(a.i == 0 for a in node.attribute if a.name == "axis"):
            index = _constant_value(graph, node.input[1], fed)
            held = shape_of[node.input[0]]
            if index is None or index.dtype.kind not in "iu" or not np.all((index >= -len(held)) & (index < len(held))):
                continue
            picked = np.asarray(np.array(held, dtype=object)[index], dtype=object)  # a scalar index picks one entry
            if picked.ndim == 1:
                shape_of[node.output[0]] = tuple(picked)
            if not any(v is None for v in picked.ravel()):
                values[k] = picked.astype(np.int64)
        elif node.op_type == "Slice" and node.input[0] in shape_of and len(node.input) >= 3:
            # Opset 10+ Slice (starts, ends[, axes, steps] as inputs) over a shape vector: one axis.
            starts, ends, axes, steps = (_constant_value(graph, i, fed) if i else None for i in (list(node.input[1:5]) + ["", ""])[:4])
            if any(v is not None and v.size != 1 for v in (starts, ends, axes, steps)) or starts is None or ends is None:
                continue
            step = int(steps.reshape(-1)[0]) if steps is not None else 1
            sliced = shape_of[node.input[0]][slice(int(starts.reshape(-1)[0]), int(ends.reshape(-1)[0]), step or None)]
            shape_of[node.output[0]] = sliced
            if None not in sliced:
                values[k] = np.array(sliced, dtype=np.int64)
    return values


def _foldable(node: Any, types: _Types, known: set[str], outputs: set[str], from_shapes: bool) -> bool:
    if node.domain not in ("", "ai.onnx") or node.op_type in _NONDETERMINISTIC or node.op_type == "Constant":
        return False
    if node.name.startswith(_REBUILD_PREFIX) or any(a.HasField("g") or len(a.graphs) for a in node.attribute):
        return False
    if any(o in outputs or o not in types for o in node.output if o):
        return False
    if from_shapes:
        return True
    present = [i for i in node.input if i]
    return bool(present) and all(i in known for i in present)


def _moves(node: Any, types: _Types) -> bool:
    """Whether the node only moves values: a data-movement op, or a Cast to the type it already has (exporters write these)."""
    if node.op_type == "Cast":
        return node.input[0] in types and node.output[0] in types and types[node.input[0]][0] == types[node.output[0]][0]
    return node.op_type in _DATA_MOVEMENT


class _Union:
    def __init__(self) -> None:
        self.parent: dict[str, str] = {}

    def find(self, x: str) -> str:
        self.parent.setdefault(x, x)
        while self.parent[x] != x:
            self.parent[x] = self.parent[self.parent[x]]
            x = self.parent[x]
        return x

    def union(self, a: str, b: str) -> None:
        self.parent[self.find(a)] = self.find(b)


def _fold(model: Any, types: _Types, precomputed: dict[int, np.ndarray]) -> tuple[int, int]:
    graph = model.graph
    outputs = _graph_outputs(graph)
    sub_reads = _subgraph_reads(graph)
    fed = overridable(model)
    sources: dict[str, int] = {t.name: (_nbytes(t.data_type, t.dims) if t.data_location == 1 else t.ByteSize()) for t in graph.initializer if t.name not in fed}
    for node in graph.node:
        if node.op_type == "Constant" and node.domain in ("", "ai.onnx"):
            sources[node.output[0]] = node.ByteSize()
    known = set(sources)
    producer: dict[str, int] = {}
    folding: list[int] = []
    for k, node in enumerate(graph.node):
        if _foldable(node, types, known, outputs, k in precomputed):
            folding.append(k)
            for o in node.output:
                producer[o] = k
                known.add(o)
    if not folding:
        return 0, 0
    readers: dict[str, list[int]] = {}
    for k, node in enumerate(graph.node):
        for i in node.input:
            readers.setdefault(i, []).append(k)
    uf = _Union()
    for k in folding:
        node = graph.node[k]
        uf.find(f"n{k}")
        for i in node.input:
            if i in producer:
                uf.union(f"n{k}", f"n{producer[i]}")
            elif i in sources and sources[i] > _SMALL_BYTES and k not in precomputed:  # known dims read no data
                uf.union(f"n{k}", f"s{i}")
    members: dict[str, list[int]] = {}
    for k in folding:
        members.setdefault(uf.find(f"n{k}"), []).append(k)
    chosen: list[int] = []
    frontier: list[str] = []
    for nodes in members.values():
        inside = set(nodes)
        before = sum(graph.node[k].ByteSize() for k in nodes)
        after = 0
        free_sources = set()
        results = []
        for k in nodes:
            node = graph.node[k]
            for o in node.output:
                if o and (o in sub_reads or any(r not in inside for r in readers.get(o, []))):
                    results.append(o)
                    elem, dims = types[o]
                    after += _nbytes(elem, dims) + len(o) + 16
            if k not in precomputed:
                free_sources |= {i for i in node.input if i in sources and i not in outputs and i not in sub_reads and all(r in inside for r in readers[i])}
        before += sum(sources[s] for s in free_sources)
        # A float constant can switch on an onnxruntime fusion that rounds
        # differently (a Div by a constant scale folds into MatMul; Mul(x, 1/W)
        # becomes Div(x, W)): float results are folded only where they are
        # moved, not computed (a position table's rows), and where that frees
        # a stored tensor, not for the few bytes of a scale.
        float_math = any(types[o][0] in _FLOAT_TYPES and not _moves(graph.node[k], types) for k in nodes for o in graph.node[k].output if o in types)
        risky = any(types[o][0] in _FLOAT_TYPES for o in results) and (float_math or not any(sources[s] > _SMALL_BYTES for s in free_sources))
        # A constant If condition makes onnxruntime inline one branch and
        # type-check it anew, which rejects some branches that run fine.
        decides_branch = any(graph.node[r].op_type == "If" and graph.node[r].input[0] == o for o in results for r in readers.get(o, []))
        if after < before and not risky and not decides_branch:
            chosen += nodes
            frontier += results
    if not chosen:
        return 0, 0
    # A chosen component nothing reads any more (a chain a constant Reshape
    # target replaced) has no results: it is only removed.
    values = _evaluate(model, sorted(chosen), frontier, types, precomputed) if frontier else {}
    from onnx import numpy_helper

    chosen_set = set(chosen)
    kept = [n for k, n in enumerate(graph.node) if k not in chosen_set]
    del graph.node[:]
    graph.node.extend(kept)
    seen: dict[tuple[Any, ...], str] = {}
    added = 0
    for name in frontier:
        value = values[name]
        tensor = numpy_helper.from_array(value, name)
        # Strings live in string_data, not raw_data: compare the values themselves.
        content = tuple(value.ravel().tolist()) if value.dtype == object else value.tobytes()
        key = (tensor.data_type, tuple(tensor.dims), content)
        if key in seen:  # shape chains of every layer fold to the same small tensors
            replace_input(graph, name, seen[key])
            continue
        seen[key] = name
        graph.initializer.append(tensor)
        added += 1
    return len(chosen), added


def _evaluate(model: Any, nodes: list[int], wanted: list[str], types: _Types, precomputed: dict[int, np.ndarray]) -> dict[str, np.ndarray]:
    """Run the chosen nodes in onnxruntime, those that follow from known dims replaced by their values."""
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
        if k in precomputed:
            g.node.append(helper.make_node("Constant", [], [node.output[0]], value=numpy_helper.from_array(precomputed[k])))
        else:
            g.node.append(node)
        produced |= set(node.output)
    needed = {i for n in g.node for i in n.input if i and i not in produced}
    for t in graph.initializer:
        if t.name in needed:
            g.initializer.append(t)
            needed.discard(t.name)
    for node in graph.node:
        if node.op_type == "Constant" and node.output[0] in needed:
            g.node.insert(0, node)
    for name in wanted:
        elem, dims = types[name]
        g.output.append(helper.make_tensor_value_info(name, elem, list(dims)))
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    options.log_severity_level = 3
    session = ort.InferenceSession(sub.SerializeToString(), options, providers=["CPUExecutionProvider"])
    return dict(zip(wanted, session.run(wanted, {})))


def _prune(graph: Any, used_before: set[str]) -> tuple[int, int]:
    """Drop nodes whose results nothing reads, then tensors that were read before and are not now."""
    nodes = 0
    while True:
        read = _read_names(graph)
        dead = [n for n in graph.node if n.output and not any(o in read for o in n.output if o) and n.domain in ("", "ai.onnx") and not n.name.startswith(_REBUILD_PREFIX)]
        if not dead:
            break
        for n in dead:
            graph.node.remove(n)
        nodes += len(dead)
    read = _read_names(graph)
    tensors = 0
    for t in list(graph.initializer):
        if t.name in used_before and t.name not in read:
            graph.initializer.remove(t)
            for value in list(graph.input):  # old exporters list initializers as inputs too
                if value.name == t.name:
                    graph.input.remove(value)
            tensors += 1
    return nodes, tensors
