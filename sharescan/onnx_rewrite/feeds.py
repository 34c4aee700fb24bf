"""What verification feeds a graph: read from the graph, never from the user's guess.

Real models refuse the naive feed (every symbolic dim 1, integers 0..7):
token-type ids index a two-row table, a detector concatenates feature maps
that only line up at multiples of its stride, a VAD model branches on a
sample rate. So:

- an integer input that reaches a Gather's indices (through Cast, Unsqueeze,
  Reshape...) stays below that table's row count;
- symbolic dims are tried at several sizes (``dim_trials``): metadata first,
  then small powers of two and common image sizes; the caller runs each
  candidate in one onnxruntime session and keeps the first that runs;
- an input compared with constants (``Equal(sr, 16000)`` selecting an If
  branch) is fed each of those constants in turn (``branch_values``).

``load_samples`` reads real inputs from .npz files instead.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from sharescan.errors import InputError, one_line
from sharescan.onnx_rewrite.graph import all_nodes

__all__ = [
    "MAX_FEED_ELEMENTS",
    "TRIAL_SIZES",
    "FeedSet",
    "branch_values",
    "declared_inputs",
    "dim_trials",
    "failing_node",
    "fill",
    "index_bounds",
    "load_samples",
    "random_array",
    "settled_dims",
    "upstream_inputs",
]

# The most elements one feed set may hold: an --input of 10^12 elements, or a
# trial of 640 x 3 x 640 x 640, would exhaust memory before onnxruntime says a word.
MAX_FEED_ELEMENTS = 2**26
# Sizes a symbolic dim is tried at, after what the metadata says: small powers
# of two, then the input sizes image models are trained at.
TRIAL_SIZES = (2, 4, 8, 16, 32, 64, 128, 224, 256, 320, 512, 640, 1024)
# Ops whose output holds the values of their (first) input: an index that
# passes through them still indexes the same table; a value compared after
# them is still the input's value.
_PASS_THROUGH = {"Cast", "Identity", "Unsqueeze", "Squeeze", "Reshape", "Flatten", "Expand", "Transpose", "Slice", "Concat", "Tile", "Gather", "Split", "CastLike"}
_COMPARE = {"Equal", "Less", "Greater", "LessOrEqual", "GreaterOrEqual"}
_MAX_BRANCH_VALUES = 8
_DEFAULT_INT_BOUND = 8  # integers that index nothing known: small, like counts and ids


@dataclass(frozen=True)
class Declared:
    name: str
    dtype: np.dtype[Any]
    dims: tuple[int | str, ...] | None  # int: fixed; str: a symbolic dim's key; None: rank unknown


@dataclass(frozen=True)
class FeedSet:
    label: str  # what this set exercises, e.g. "symbolic dims at 32, sr=16000"
    feeds: dict[str, np.ndarray]


def _np_dtype(elem_type: int) -> np.dtype[Any]:
    from onnx import helper

    return np.dtype(helper.tensor_dtype_to_np_dtype(elem_type))


def declared_inputs(model: Any) -> list[Declared]:
    """The graph inputs a caller feeds (initializers listed as inputs are defaults, not inputs)."""
    stored = {i.name for i in model.graph.initializer}
    result = []
    for value in model.graph.input:
        if value.name in stored:
            continue
        if not value.type.HasField("tensor_type"):
            raise InputError(f"graph input {value.name!r} is not a tensor; pass --inputs with a sample for it")
        t = value.type.tensor_type
        dims: tuple[int | str, ...] | None = None
        if t.HasField("shape"):
            # A dim without a name gets a key of its own: two unnamed dims need not agree.
            dims = tuple(d.dim_value if d.HasField("dim_value") and d.dim_value > 0 else (d.dim_param or f"{value.name}[{axis}]") for axis, d in enumerate(t.shape.dim))
        result.append(Declared(value.name, _np_dtype(t.elem_type), dims))
    return result


def _constants(model: Any) -> dict[str, Any]:
    """Name -> TensorProto of every initializer and Constant node, subgraphs included."""
    found = {t.name: t for t in model.graph.initializer}
    for node in all_nodes(model.graph):
        for attr in node.attribute:
            if attr.HasField("g"):
                found.update({t.name: t for t in attr.g.initializer})
        if node.op_type == "Constant":
            tensor = next((a.t for a in node.attribute if a.name == "value" and a.HasField("t")), None)
            if tensor is not None:
                found[node.output[0]] = tensor
    return found


def _readers(model: Any) -> dict[str, list[tuple[Any, int]]]:
    readers: dict[str, list[tuple[Any, int]]] = {}
    for node in all_nodes(model.graph):
        for slot, name in enumerate(node.input):
            readers.setdefault(name, []).append((node, slot))
    return readers


def _reached(start: str, readers: dict[str, list[tuple[Any, int]]]) -> Iterator[tuple[Any, int]]:
    """(node, slot) reading ``start``'s values, directly or through pass-through ops."""
    seen, todo = {start}, [start]
    while todo:
        name = todo.pop()
        for node, slot in readers.get(name, []):
            yield node, slot
            # Gather passes values through from its data input only; its indices select.
            if node.op_type in _PASS_THROUGH and not (node.op_type == "Gather" and slot != 0):
                for out in node.output:
                    if out and out not in seen:
                        seen.add(out)
                        todo.append(out)


def index_bounds(model: Any) -> dict[str, int]:
    """Integer input -> the row count of the smallest constant table it indexes (Gather indices)."""
    constants, readers = _constants(model), _readers(model)
    bounds: dict[str, int] = {}
    for value in declared_inputs(model):
        if value.dtype.kind not in "iu":
            continue
        for node, slot in _reached(value.name, readers):
            if node.op_type != "Gather" or slot != 1 or node.input[0] not in constants:
                continue
            axis = next((a.i for a in node.attribute if a.name == "axis"), 0)
            dims = list(constants[node.input[0]].dims)
            if dims and -len(dims) <= axis < len(dims) and dims[axis] > 0:
                bounds[value.name] = min(bounds.get(value.name, dims[axis]), int(dims[axis]))
    return bounds


def branch_values(model: Any) -> dict[str, tuple[float | int, ...]]:
    """Input -> the constants it is compared with (Equal/Less/... against a one-element constant).

    Those comparisons select If branches (a sample rate picking a filter bank);
    feeding each constant, and each side of an ordering, runs each branch once.
    """
    from onnx import numpy_helper

    constants, readers = _constants(model), _readers(model)
    found: dict[str, tuple[float | int, ...]] = {}
    for value in declared_inputs(model):
        if value.dims is None or len(value.dims) > 1 or (value.dims and value.dims[0] != 1):
            continue  # only scalars (or one-element vectors) choose a branch for the whole graph
        picked: list[float | int] = []
        for node, slot in _reached(value.name, readers):
            if node.op_type not in _COMPARE or len(node.input) != 2:
                continue
            other = constants.get(node.input[1 - slot])
            if other is None or int(np.prod(other.dims)) != 1:
                continue
            c = numpy_helper.to_array(other).reshape(()).item()
            step = 1 if value.dtype.kind in "iub" else 0.5
            sides = [c] if node.op_type == "Equal" else [c - step, c, c + step]
            picked += [v for v in sides if v not in picked]
        if picked:
            found[value.name] = tuple(picked[:_MAX_BRANCH_VALUES])
    return found


def _metadata_sizes(model: Any) -> dict[str, int]:
    """Dim name -> size the model's metadata states (``batch: 1``; ultralytics' ``imgsz: [320, 320]``)."""
    sizes: dict[str, int] = {}
    for prop in model.metadata_props:
        key = prop.key.lower()
        try:
            value = json.loads(prop.value)
        except ValueError:
            continue
        if isinstance(value, int) and value > 0:
            sizes[key] = value
        elif key == "imgsz" and isinstance(value, list) and len(value) == 2 and all(isinstance(v, int) and v > 0 for v in value):
            sizes["height"], sizes["width"] = value
    return sizes


def _is_batch(key: str, values: list[Declared]) -> bool:
    """A dim named like a batch, or one only ever seen first in a tensor of rank 2 or more."""
    if "batch" in key.lower():
        return True
    places = [(len(v.dims), axis) for v in values if v.dims for axis, d in enumerate(v.dims) if d == key]
    return bool(places) and all(rank >= 2 and axis == 0 for rank, axis in places)


def dim_trials(model: Any, fixed: dict[str, int]) -> Iterator[tuple[str, dict[str, int]]]:
    """(label, symbolic dim -> size) to try in order; ``fixed`` holds dims that given inputs settle.

    First what the metadata says (other dims 1), then each size in
    TRIAL_SIZES for every non-batch dim (batch dims 1), then each size for
    every dim. Candidates over MAX_FEED_ELEMENTS are skipped.
    """
    values = declared_inputs(model)
    keys = list(dict.fromkeys(d for v in values if v.dims for d in v.dims if isinstance(d, str) and d not in fixed))
    meta = _metadata_sizes(model)

    def named(key: str) -> int | None:
        low = key.lower()
        return meta.get(low) or next((size for word, size in meta.items() if word in ("height", "width") and low.endswith(word)), None)

    def elements(sizes: dict[str, int]) -> int:
        return sum(int(np.prod([d if isinstance(d, int) else sizes[d] for d in v.dims], dtype=np.float64)) for v in values if v.dims)

    batch = {k for k in keys if _is_batch(k, values)}
    candidates = [("symbolic dims at 1" + (" (sizes from metadata)" if any(named(k) for k in keys) else ""), {k: named(k) or 1 for k in keys})]
    if keys:
        candidates += [(f"symbolic dims at {s} (batch 1)", {k: 1 if k in batch else s for k in keys}) for s in TRIAL_SIZES if batch != set(keys)]
        candidates += [(f"symbolic dims at {s}", {k: s for k in keys}) for s in TRIAL_SIZES if batch]
    seen: list[dict[str, int]] = []
    for label, sizes in candidates:
        sizes = {**fixed, **sizes}
        if sizes in seen or elements(sizes) > MAX_FEED_ELEMENTS:
            continue
        seen.append(sizes)
        yield label, sizes


def fill(
    model: Any,
    sizes: dict[str, int],
    given: dict[str, np.ndarray] | None = None,
    branch: dict[str, float | int] | None = None,
    specs: dict[str, tuple[tuple[int, ...], str]] | None = None,
    seed: int = 0,
) -> dict[str, np.ndarray]:
    """A feed for every graph input: given arrays, branch values, else random data.

    Random data takes the shape and dtype of ``specs`` (--input) where named,
    else the declared shape with symbolic dims from ``sizes``.
    """
    given, branch, specs = given or {}, branch or {}, specs or {}
    rng = np.random.default_rng(seed)
    bounds = index_bounds(model)
    feeds: dict[str, np.ndarray] = {}
    for value in declared_inputs(model):
        if value.name in given:
            feeds[value.name] = given[value.name]
            continue
        if value.name in specs:
            shape, dtype = specs[value.name][0], np.dtype(specs[value.name][1])
        else:
            shape, dtype = tuple(d if isinstance(d, int) else sizes.get(d, 1) for d in value.dims or ()), value.dtype
        if value.name in branch:
            feeds[value.name] = np.full(shape, branch[value.name], dtype=dtype)
        else:
            feeds[value.name] = random_array(rng, value.name, shape, dtype, bounds.get(value.name, _DEFAULT_INT_BOUND))
    return feeds


def random_array(rng: np.random.Generator, name: str, shape: tuple[int, ...], dtype: np.dtype[Any], int_bound: int = _DEFAULT_INT_BOUND) -> np.ndarray:
    """Random data for input ``name``: standard normal floats, integers in [0, int_bound), fair booleans.

    The one sampler of model inputs: verification feeds and export's example inputs draw alike.
    """
    if dtype.kind == "f" or dtype.name in ("bfloat16",):
        return np.asarray(rng.standard_normal(shape)).astype(dtype)
    if dtype.kind in "iu":
        return np.asarray(rng.integers(0, int_bound, size=shape)).astype(dtype)
    if dtype.kind == "b":
        return np.asarray(rng.random(shape) > 0.5)
    raise InputError(f"graph input {name!r} has dtype {dtype}; pass --inputs with a sample for it")


def settled_dims(model: Any, shapes: dict[str, tuple[int, ...]]) -> dict[str, int]:
    """Symbolic dim -> size, as the shapes of given inputs fix them."""
    fixed: dict[str, int] = {}
    for value in declared_inputs(model):
        if value.name in shapes and value.dims is not None and len(value.dims) == len(shapes[value.name]):
            fixed.update({d: n for d, n in zip(value.dims, shapes[value.name]) if isinstance(d, str)})
    return fixed


def load_samples(paths: tuple[str, ...], model: Any) -> list[FeedSet]:
    """Samples from .npz files: arrays named after graph inputs.

    Each file is one sample, or several: when every array in a file has one
    dim more than its graph input declares, the leading axis counts samples
    (all arrays must agree on the count). Inputs a file does not name are
    filled as usual, with the symbolic dims the named arrays fix.
    """
    declared = {v.name: v for v in declared_inputs(model)}
    sets: list[FeedSet] = []
    for path in paths:
        try:
            with np.load(path, allow_pickle=False) as data:
                arrays = {k: data[k] for k in data.files}
        except (OSError, ValueError, EOFError) as e:
            raise InputError(f"--inputs {path}: not a readable .npz of arrays ({one_line(e) or e.__class__.__name__}); write it with numpy.savez(path, input_name=array, ...)") from None
        unknown = sorted(set(arrays) - set(declared))
        if unknown:
            raise InputError(f"--inputs {path}: array {unknown[0]!r} names no graph input; the model's inputs: {', '.join(declared) or 'none'}")
        if not arrays:
            raise InputError(f"--inputs {path}: holds no arrays; write it with numpy.savez(path, input_name=array, ...)")
        for name, array in arrays.items():
            want = declared[name].dtype
            if array.dtype != want:
                raise InputError(f"--inputs {path}: array {name!r} is {array.dtype}, the graph input is {want}; convert it with .astype({str(want)!r})")
            if array.size > MAX_FEED_ELEMENTS:
                raise InputError(f"--inputs {path}: array {name!r} holds {array.size:,} elements (more than {MAX_FEED_ELEMENTS:,}); pass a smaller sample")
        stacked = all(declared[n].dims is not None and a.ndim == len(declared[n].dims or ()) + 1 for n, a in arrays.items())
        if stacked:
            counts = {a.shape[0] for a in arrays.values()}
            if len(counts) != 1:
                raise InputError(f"--inputs {path}: arrays with a leading sample axis disagree on the sample count ({sorted(counts)}); give each the same count")
            count = counts.pop()
            for k in range(count):
                sets.append(FeedSet(f"{Path(path).name} sample {k + 1}/{count}", {n: np.ascontiguousarray(a[k]) for n, a in arrays.items()}))
        else:
            sets.append(FeedSet(Path(path).name, arrays))
    return sets


_NODE = re.compile(r"[Nn]ode\.? ?Name:\s*'([^']*)'")


def failing_node(message: str) -> str | None:
    """The node an onnxruntime error names, if any."""
    m = _NODE.search(message)
    return m.group(1) if m else None


def upstream_inputs(model: Any, node_name: str) -> list[str]:
    """Graph inputs the named node reads, directly or through earlier nodes."""
    producer = {out: node for node in all_nodes(model.graph) for out in node.output}
    declared = {v.name for v in declared_inputs(model)}
    start = next((n for n in all_nodes(model.graph) if n.name == node_name), None)
    if start is None:
        return []
    found: list[str] = []
    seen: set[str] = set()
    todo = list(start.input)
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        if name in declared:
            found.append(name)
        elif name in producer:
            todo.extend(producer[name].input)
    return sorted(found)
