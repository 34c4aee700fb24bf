"""Reshape targets rebuilt from the input's own shape become constants (part of ``--simplify``).

With dynamic axes, exporters compute every ``x.view(x.size()[:-1] + (h, d))``
as Shape(x) -> Gather/Slice -> Unsqueeze -> Concat -> Reshape(x, ...): four to
eight nodes per reshape, repeated in every layer. Reshape already says "keep
input dim i" with a 0 at position i (unless ``allowzero``), so a target whose
entries are either constants or x's own dim at the same position is the
constant ``[0, 0, h, d]``; the chain then has no reader and is pruned. Only
shape bookkeeping changes, so outputs stay bit-identical.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from sharescan.onnx_rewrite.graph import small_constants

__all__ = ["constant_reshape_targets"]

# One entry of a shape vector: a known int, or (value name, axis) = that value's dim.
_Entry = int | tuple[str, int]
_KnownDims = dict[str, tuple[int | None, ...]]


def constant_reshape_targets(model: Any, dims: dict[str, tuple[int | None, ...]]) -> int:
    """Replace each resolvable Reshape target by a constant; returns how many were replaced.

    ``dims``: known ranks and dims of values (None for an unknown dim), from shape inference.
    """
    from onnx import numpy_helper

    from sharescan.onnx_rewrite.graph import unique_name

    graph = model.graph
    # Integer scalars and vectors: indices, axes, slice bounds, fixed parts of a shape.
    consts = {name: v for name, v in small_constants(model).items() if v.dtype.kind in "iu" and v.ndim <= 1}
    producer = {o: n for n in graph.node for o in n.output}
    made: dict[bytes, str] = {}
    count = 0
    for node in graph.node:
        if node.op_type != "Reshape" or node.domain not in ("", "ai.onnx") or len(node.input) < 2 or node.input[1] in consts:
            continue
        if any(a.name == "allowzero" and a.i for a in node.attribute):
            continue  # a 0 would then mean an empty dim, not "keep"
        entries = _vector(node.input[1], producer, consts, dims, depth=0)
        if entries is None:
            continue
        target = _target(entries, node.input[0], dims)
        if not target or target.count(-1) > 1:
            continue
        value = np.array(target, dtype=np.int64)
        key = value.tobytes()
        if key not in made:
            made[key] = unique_name(graph, f"{node.name or 'reshape'}_target".lstrip("/").replace("/", "_"))
            graph.initializer.append(numpy_helper.from_array(value, made[key]))
        node.input[1] = made[key]
        count += 1
    return count


def _target(entries: list[_Entry], data: str, dims: _KnownDims) -> list[int]:
    """The constant target the entries name: a fixed size, 0 for "keep data's dim here"; [] if one is unknown."""
    target = []
    for position, e in enumerate(entries):
        if isinstance(e, int):
            target.append(e)
        elif e == (data, position):
            target.append(0)
        elif e[0] in dims and dims[e[0]][e[1]] is not None:
            target.append(int(dims[e[0]][e[1]]))  # type: ignore[arg-type]
        else:
            return []
    return target


def _vector(name: str, producer: dict[str, Any], consts: dict[str, np.ndarray], dims: _KnownDims, depth: int) -> list[_Entry] | None:
    """The entries of a 1-D shape vector, or None if one cannot be named."""
    if depth > 16:
        return None
    if name in consts:
        return [int(v) for v in np.atleast_1d(consts[name])] if consts[name].ndim == 1 else None
    node = producer.get(name)
    if node is None or node.domain not in ("", "ai.onnx") or node.op_type not in _VECTOR_STEPS:
        return None
    return _VECTOR_STEPS[node.op_type](node, producer, consts, dims, depth)


def _shape_entries(node: Any, producer: dict[str, Any], consts: dict[str, np.ndarray], dims: _KnownDims, depth: int) -> list[_Entry] | None:
    if node.input[0] not in dims:
        return None
    attrs = {a.name: a.i for a in node.attribute}
    rank = len(dims[node.input[0]])
    entries: list[_Entry] = [(node.input[0], axis) for axis in range(rank)]
    return entries[slice(attrs.get("start", 0), attrs.get("end", rank))]


def _concat_entries(node: Any, producer: dict[str, Any], consts: dict[str, np.ndarray], dims: _KnownDims, depth: int) -> list[_Entry] | None:
    axis = next((a.i for a in node.attribute if a.name == "axis"), None)
    if axis not in (0, -1):
        return None
    out: list[_Entry] = []
    for i in node.input:
        part = _vector(i, producer, consts, dims, depth + 1)
        if part is None:
            return None
        out += part
    return out


def _unsqueeze_entries(node: Any, producer: dict[str, Any], consts: dict[str, np.ndarray], dims: _KnownDims, depth: int) -> list[_Entry] | None:
    if len(node.input) != 2 or node.input[1] not in consts or np.atleast_1d(consts[node.input[1]]).tolist() not in ([0], [-1]):
        return None
    entry = _scalar(node.input[0], producer, consts, dims, depth + 1)
    return None if entry is None else [entry]


def _slice_entries(node: Any, producer: dict[str, Any], consts: dict[str, np.ndarray], dims: _KnownDims, depth: int) -> list[_Entry] | None:
    """Slice(x, starts, ends[, axes]) of one vector, no steps."""
    if len(node.input) not in (3, 4) or not all(i in consts for i in node.input[1:]):
        return None
    if len(node.input) == 4 and np.atleast_1d(consts[node.input[3]]).tolist() not in ([0], [-1]):
        return None
    whole = _vector(node.input[0], producer, consts, dims, depth + 1)
    starts, ends = consts[node.input[1]].reshape(-1), consts[node.input[2]].reshape(-1)
    if whole is None or starts.size != 1 or ends.size != 1:
        return None
    return whole[slice(int(starts[0]), int(min(ends[0], len(whole))))]


def _cast_entries(node: Any, producer: dict[str, Any], consts: dict[str, np.ndarray], dims: _KnownDims, depth: int) -> list[_Entry] | None:
    if not any(a.name == "to" and a.i == 7 for a in node.attribute):  # to int64 only
        return None
    return _vector(node.input[0], producer, consts, dims, depth + 1)


_VECTOR_STEPS: dict[str, Callable[[Any, dict[str, Any], dict[str, np.ndarray], _KnownDims, int], list[_Entry] | None]] = {
    "Shape": _shape_entries,
    "Concat": _concat_entries,
    "Unsqueeze": _unsqueeze_entries,
    "Slice": _slice_entries,
    "Cast": _cast_entries,
}


def _scalar(name: str, producer: dict[str, Any], consts: dict[str, np.ndarray], dims: _KnownDims, depth: int) -> _Entry | None:
    if name in consts and consts[name].ndim == 0:
        return int(consts[name])
    node = producer.get(name)
    if node is None or node.domain not in ("", "ai.onnx"):
        return None
    if node.op_type == "Gather" and node.input[1] in consts and consts[node.input[1]].ndim == 0 and all(a.i == 0 for a in node.attribute if a.name == "axis"):
        whole = _vector(node.input[0], producer, consts, dims, depth + 1)
        index = int(consts[node.input[1]])
        if whole is None or not -len(whole) <= index < len(whole):
            return None
        return whole[index]
    if node.op_type == "Cast" and any(a.name == "to" and a.i == 7 for a in node.attribute):
        return _scalar(node.input[0], producer, consts, dims, depth + 1)
    return None
