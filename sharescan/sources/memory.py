"""Models already in memory: an ``nn.Module``, a state dict, an ``onnx.ModelProto``.

For the Python API, so that a model loaded or built in a session need not be
saved before it is scanned. Tensors are read from the objects themselves,
copied only where a detector needs contiguous bytes; parameters tied in a
module share one storage and so stay aliased, as they do in a saved file.

torch and onnx are never imported here: an object can only be one of theirs
if its library is already loaded (``sys.modules``).
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from sharescan.dtypes import DTYPES
from sharescan.errors import InputError
from sharescan.table import LoadedModel, TensorEntry

__all__ = ["is_path", "describe", "load_object"]


def is_path(source: object) -> bool:
    """A model named by a path or repo id (as opposed to one already in memory)."""
    return isinstance(source, (str, os.PathLike))


def _module(obj: object) -> bool:
    torch = sys.modules.get("torch")
    return torch is not None and isinstance(obj, torch.nn.Module)


def _tensor(obj: object) -> bool:
    torch = sys.modules.get("torch")
    return torch is not None and isinstance(obj, torch.Tensor)


def _onnx_model(obj: object) -> bool:
    onnx = sys.modules.get("onnx")
    return onnx is not None and isinstance(obj, onnx.ModelProto)


def describe(obj: object) -> str:
    """How reports name an object: ``<nn.Module Net>``, ``<state dict>``, ``<onnx.ModelProto main>``."""
    if _module(obj):
        return f"<nn.Module {type(obj).__name__}>"
    if _onnx_model(obj):
        graph = obj.graph.name  # type: ignore[attr-defined]
        return f"<onnx.ModelProto {graph}>" if graph else "<onnx.ModelProto>"
    if isinstance(obj, Mapping):
        return "<state dict>"
    return f"<{type(obj).__name__}>"


def load_object(obj: object, model: int, label: str) -> LoadedModel:
    """The parameter table of a model in memory; ``label`` names it in reports and errors."""
    if _module(obj):
        # state_dict() keeps one name per place a parameter is used: tied
        # weights come back as two names of one storage.
        return _from_mapping(obj.state_dict(), model, label, "nn.Module")  # type: ignore[attr-defined]
    if _onnx_model(obj):
        return _from_onnx(obj, model, label)
    if isinstance(obj, Mapping):
        return _from_mapping(obj, model, label, "state dict")
    raise InputError(
        f"{label}: cannot analyse a {type(obj).__module__}.{type(obj).__qualname__}; pass a path, an nn.Module, a state dict (name -> tensor or ndarray) or an onnx.ModelProto"
    )


def _walk(obj: Mapping[Any, Any], label: str) -> Iterator[tuple[str, Any]]:
    """(dotted name, array or tensor) for each array in a nested mapping; other values are left out."""
    stack: list[tuple[str, Any]] = [("", obj)]
    seen: set[int] = set()
    while stack:
        prefix, item = stack.pop()
        if id(item) in seen:
            raise InputError(f"{label}: the state dict contains itself (at {prefix or 'its top'}); pass a flat mapping of name -> tensor")
        seen.add(id(item))
        children = []
        for key, value in item.items():
            name = f"{prefix}.{key}" if prefix else str(key)
            if isinstance(value, Mapping):
                children.append((name, value))
            elif isinstance(value, np.ndarray) or _tensor(value):
                yield name, value
        stack.extend(reversed(children))


def _from_mapping(state: Mapping[Any, Any], model: int, label: str, fmt: str) -> LoadedModel:
    named = list(_walk(state, label))
    torch_named = [(n, t) for n, t in named if _tensor(t)]
    entries: list[TensorEntry] = []
    if torch_named:
        from sharescan.sources.torch_source import _entries

        entries.extend(_entries(torch_named, model, label))
    entries.extend(_array_entry(name, a, model, label) for name, a in named if isinstance(a, np.ndarray))
    return LoadedModel(label, fmt, tuple(entries), _held_bytes(entries))


def _held_bytes(entries: list[TensorEntry]) -> int:
    """Bytes of memory the tensors occupy, each buffer once (in place of a file's size)."""
    return sum({e.buffer_key: e.stored_nbytes for e in entries}.values())


def _array_entry(name: str, array: np.ndarray, model: int, label: str) -> TensorEntry:
    dtype = _dtype_name(array.dtype)
    if dtype is None:
        raise InputError(f"{label}: array {name!r} has dtype {array.dtype}, which sharescan does not read; convert it to a numeric dtype")
    # The buffer is the memory of the array the view was taken from; names
    # reading the same bytes the same way (one array under two names) share
    # a storage key, as tied weights in a file do.
    root = array
    while isinstance(root.base, np.ndarray):
        root = root.base
    low, high = np.lib.array_utils.byte_bounds(array)
    root_low, root_high = np.lib.array_utils.byte_bounds(root)
    buffer = f"ndarray:{root_low}"
    key = f"{buffer}@{low - root_low}:{array.shape}:{array.strides}:{dtype}"
    span = (low - root_low, high - root_low) if array.size else (0, 0)
    return TensorEntry(model, name, tuple(array.shape), dtype, key, _array_reader(array, dtype), root_high - root_low, buffer=buffer, span=span)


def _dtype_name(dt: np.dtype) -> str | None:
    name = "bool" if dt == np.bool_ else dt.name
    return name if name in DTYPES else None


def _array_reader(array: np.ndarray, dtype: str) -> Callable[[], np.ndarray]:
    storage = DTYPES[dtype].storage

    def read() -> np.ndarray:
        return np.ascontiguousarray(array).view(storage)

    return read


def _from_onnx(proto: Any, model: int, label: str) -> LoadedModel:
    from sharescan.sources.onnx_source import proto_entries

    if not proto.HasField("graph") or (not proto.graph.node and not proto.graph.initializer):
        raise InputError(f"{label}: the ModelProto has no graph; pass a loaded model (onnx.load(path))")
    external = [t.name for t in proto.graph.initializer if t.data_location == 1]  # TensorProto.EXTERNAL
    if external:
        raise InputError(
            f"{label}: {len(external)} tensor(s) ({external[0]!r} first) are still in external data; load the model with its data (onnx.load(path)) or pass the path instead"
        )
    # Nothing is read from a file: no path, no folder for external data.
    nowhere = Path(label)
    entries, reused = proto_entries(proto, model, nowhere, nowhere, set())
    return LoadedModel(label, "onnx", tuple(entries), _held_bytes(entries), reused)
