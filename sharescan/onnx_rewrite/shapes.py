"""What the declared input sizes fix: value shapes, and the nodes whose results follow from them.

Used by ``--simplify`` (fold.py). Shape inference alone stops at
``Gather(Shape(ids), 1) -> Range``: it knows the sequence length is 16 but
not that the Range has 16 rows. Replacing each node whose value follows from
known dims by that value and inferring again, until nothing new is learnt,
carries the known sizes through.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from sharescan.onnx_rewrite.graph import infer_shapes, small_constants

__all__ = ["Shapes", "infer"]

REBUILD_PREFIX = "sharescan_"  # dedup's Transpose/Neg/Mul/Gather/alias nodes: the sharing itself, never rewritten
_Dims = tuple[int | None, ...]


@dataclass(frozen=True)
class Shapes:
    static: dict[str, tuple[int, tuple[int, ...]]]  # value -> (onnx element type, fixed shape), initializers included
    dims: dict[str, _Dims]  # value -> dims of every known rank, None where a dim is not fixed
    known: dict[int, np.ndarray]  # main-graph node index -> its value, for nodes that read only known dims


def infer(model: Any) -> Shapes:
    known: dict[int, np.ndarray] = {}
    consts = small_constants(model)
    while True:
        static, dims = _inferred(model, known)
        more = _shape_values(model.graph, dims, consts)
        if set(more) <= set(known):
            return Shapes(static, dims, known)
        known = {**known, **more}


def _inferred(model: Any, known: dict[int, np.ndarray]) -> tuple[dict[str, tuple[int, tuple[int, ...]]], dict[str, _Dims]]:
    from onnx import helper, numpy_helper

    nodes = [helper.make_node("Constant", [], [node.output[0]], value=numpy_helper.from_array(known[k])) if k in known else node for k, node in enumerate(model.graph.node)]
    static = {t.name: (t.data_type, tuple(t.dims)) for t in model.graph.initializer}
    dims: dict[str, _Dims] = {}
    inferred = infer_shapes(model, nodes)
    if inferred is None:  # inference is a help, not a requirement: nothing shape-dependent is known
        return static, dims
    for info in list(inferred.graph.value_info) + list(inferred.graph.input) + list(inferred.graph.output):
        tt = info.type.tensor_type
        if not (info.type.HasField("tensor_type") and tt.elem_type and tt.HasField("shape")):
            continue
        held = tuple(d.dim_value if d.HasField("dim_value") else None for d in tt.shape.dim)
        dims.setdefault(info.name, held)
        if None not in held:
            static.setdefault(info.name, (tt.elem_type, tuple(int(d or 0) for d in held)))
    return static, dims


def _shape_values(graph: Any, dims: dict[str, _Dims], consts: dict[str, np.ndarray]) -> dict[int, np.ndarray]:
    """Nodes whose result follows from known dims alone: Shape, Size, and Gather or Slice of known entries of a Shape.

    The last two matter for a batch-dynamic export: Shape(ids) is not fixed,
    but Shape(ids)[1], the sequence length, is, and position ids follow from it.
    """
    values: dict[int, np.ndarray] = {}
    held_by: dict[str, _Dims] = {}  # a shape vector's name -> the dims it holds
    for k, node in enumerate(graph.node):
        step = _STEPS.get(node.op_type)
        if step is None or node.domain not in ("", "ai.onnx") or node.name.startswith(REBUILD_PREFIX):
            continue
        held, value = step(node, dims, held_by, consts)
        if value is not None:
            values[k] = value
        if held is not None:
            held_by[node.output[0]] = held
            if None not in held and k not in values:
                values[k] = np.array(held, dtype=np.int64)
    return values


# Each step: (the dims a shape vector holds, or None; the node's value if fixed, or None).
_Step = tuple[_Dims | None, np.ndarray | None]


def _shape(node: Any, dims: dict[str, _Dims], held_by: dict[str, _Dims], consts: dict[str, np.ndarray]) -> _Step:
    if node.input[0] not in dims:
        return None, None
    attrs = {a.name: a.i for a in node.attribute}
    whole = dims[node.input[0]]
    return whole[slice(attrs.get("start", 0), attrs.get("end", len(whole)))], None


def _size(node: Any, dims: dict[str, _Dims], held_by: dict[str, _Dims], consts: dict[str, np.ndarray]) -> _Step:
    if node.input[0] not in dims or None in dims[node.input[0]]:
        return None, None
    return None, np.array(math.prod(d or 0 for d in dims[node.input[0]]), dtype=np.int64)


def _gather(node: Any, dims: dict[str, _Dims], held_by: dict[str, _Dims], consts: dict[str, np.ndarray]) -> _Step:
    if node.input[0] not in held_by or not all(a.i == 0 for a in node.attribute if a.name == "axis"):
        return None, None
    whole, index = held_by[node.input[0]], consts.get(node.input[1])
    if index is None or index.dtype.kind not in "iu" or not np.all((index >= -len(whole)) & (index < len(whole))):
        return None, None
    picked = np.asarray(np.array(whole, dtype=object)[index], dtype=object)  # a scalar index picks one entry
    if any(v is None for v in picked.ravel()):
        return (tuple(picked) if picked.ndim == 1 else None), None
    return (tuple(int(v) for v in picked) if picked.ndim == 1 else None), picked.astype(np.int64)


def _slice(node: Any, dims: dict[str, _Dims], held_by: dict[str, _Dims], consts: dict[str, np.ndarray]) -> _Step:
    """Opset 10+ Slice (starts, ends[, axes, steps] as inputs) over a shape vector: one axis."""
    if node.input[0] not in held_by or len(node.input) < 3:
        return None, None
    starts, ends, axes, steps = (consts.get(i) if i else None for i in (list(node.input[1:5]) + ["", ""])[:4])
    if starts is None or ends is None or any(v is not None and v.size != 1 for v in (starts, ends, axes, steps)):
        return None, None
    step = int(steps.reshape(-1)[0]) if steps is not None else 1
    return held_by[node.input[0]][slice(int(starts.reshape(-1)[0]), int(ends.reshape(-1)[0]), step or None)], None


_STEPS: dict[str, Callable[[Any, dict[str, _Dims], dict[str, _Dims], dict[str, np.ndarray]], _Step]] = {"Shape": _shape, "Size": _size, "Gather": _gather, "Slice": _slice}
