"""ONNX models: initializers and Constant tensors, raw and external data memory-mapped.

The protobuf is parsed without its external data and without the main
graph's raw tensor bytes (``onnx_layout``); each tensor is mapped from its
file only when a detector reads it. An external-data path
that leaves the model's folder is refused: a model file must not be able to
make sharescan read arbitrary files.
"""

from __future__ import annotations

import logging
import os
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from sharescan.dtypes import DTYPES
from sharescan.errors import InputError
from sharescan.sources.files import MAX_ELEMENTS, regular_file
from sharescan.sources.mapped import FileWindow, mapped_reader
from sharescan.sources.onnx_layout import Layout, read_layout
from sharescan.sources.onnx_wire import parse_model
from sharescan.table import LoadedModel, TensorEntry

__all__ = ["load_onnx", "proto_entries", "ONNX_DTYPES"]

logger = logging.getLogger(__name__)

# onnx.TensorProto.DataType -> canonical dtype name (strings and 4-bit types are skipped).
ONNX_DTYPES = {
    1: "float32",
    2: "uint8",
    3: "int8",
    4: "uint16",
    5: "int16",
    6: "int32",
    7: "int64",
    9: "bool",
    10: "float16",
    11: "float64",
    12: "uint32",
    13: "uint64",
    14: "complex64",
    15: "complex128",
    16: "bfloat16",
    17: "float8_e4m3fn",
    19: "float8_e5m2",
}


def load_onnx(path: Path, model: int) -> LoadedModel:
    # The main graph's raw tensor bytes stay in the file, mapped when read:
    # parsing them would hold the whole model in memory twice over.
    regular_file(path)
    layout = read_layout(path)
    proto = _read_light(layout)
    if proto is None:
        proto = _read_with_onnx(path, layout)
    if not proto.HasField("graph") or (not proto.graph.node and not proto.graph.initializer):
        raise InputError(f"{path}: not an ONNX model (no graph found); check the file")
    raw_at = layout[1] if layout is not None and len(layout[1]) == len(proto.graph.initializer) else [None] * len(proto.graph.initializer)
    external_files: set[Path] = set()
    entries, reused = proto_entries(proto, model, path, path.resolve().parent, external_files, raw_at, FileWindow(path))
    file_bytes = path.stat().st_size
    for extra in external_files:
        file_bytes += extra.stat().st_size
    return LoadedModel(str(path), "onnx", tuple(entries), file_bytes, reused, (str(path), *sorted(str(p) for p in external_files)))


def _read_with_onnx(path: Path, layout: Layout | None) -> Any:
    import onnx
    from google.protobuf.message import DecodeError

    try:
        return onnx.load_model_from_string(layout[0]) if layout is not None else onnx.load(str(path), load_external_data=False)
    except (DecodeError, RuntimeError, ValueError, UnicodeDecodeError) as e:
        raise InputError(f"{path}: not a readable ONNX model ({e.__class__.__name__}); check that the file is complete and is an .onnx export") from None


def _read_light(layout: Layout | None) -> Any:
    """The graph read without importing onnx (``onnx_wire``), where every tensor's bytes are raw or external; else None."""
    if layout is None:
        return None
    proto = parse_model(layout[0])
    if proto is None or proto.graph is None:
        return None
    graph = proto.graph
    in_file = layout[1] if len(layout[1]) == len(graph.initializer) else [None] * len(graph.initializer)
    # A tensor with neither (typed values, or none at all) is read by onnx's numpy_helper.
    for k, tensor in enumerate(graph.initializer):
        if tensor.data_location != 1 and not tensor.raw_data and in_file[k] is None:
            return None
    for _, sub in _graphs(graph, ""):
        tensors = [a.t for n in sub.node for a in n.attribute if a.t is not None]
        if sub is not graph:
            tensors += sub.initializer
        if any(t.data_location != 1 and not t.raw_data for t in tensors):
            return None
    return proto


def proto_entries(proto: Any, model: int, path: Path, folder: Path, external_files: set[Path], raw_at: Sequence[tuple[int, int] | None] | None = None, window: FileWindow | None = None) -> tuple[list[TensorEntry], tuple[tuple[str, int], ...]]:
    """The tensors of a parsed model (initializers, Constants, Identity aliases) and the initializers read more than once.

    ``raw_at``: where the main graph's raw bytes lie in ``path`` (left out of
    ``proto`` by read_layout); None: they are in the proto itself.
    """
    entries: list[TensorEntry] = []
    uses: Counter[str] = Counter()
    files = _ExternalFiles(external_files)
    for scope, graph in _graphs(proto.graph, ""):
        known: dict[str, TensorEntry] = {}
        for k, init in enumerate(graph.initializer):
            at = raw_at[k] if raw_at is not None and graph is proto.graph else None
            entry = _entry(init, f"{scope}{init.name}", f"{scope}{init.name}", model, path, folder, files, at, window)
            if entry is not None:
                entries.append(entry)
                known[init.name] = entry
        for node in graph.node:
            for name in node.input:
                if name in known:
                    uses[name] += 1
            if node.op_type == "Constant" and node.output:
                entry = _constant(node, scope, model, path, folder, files)
                if entry is not None:
                    entries.append(entry)
                    known[node.output[0]] = entry
            # An Identity of a stored tensor is the same bytes under a second name.
            elif node.op_type == "Identity" and node.input and node.input[0] in known:
                if not node.output:
                    raise InputError(f"{path}: Identity node {node.name or node.input[0]!r} in {scope or 'the main graph'} has no output; the graph is malformed: re-download or re-export the model")
                src = known[node.input[0]]
                alias = TensorEntry(model, f"{scope}{node.output[0]}", src.shape, src.dtype, src.storage, src.read)
                entries.append(alias)
                known[node.output[0]] = alias
    return entries, tuple(sorted((n, c) for n, c in uses.items() if c > 1))


def _graphs(graph: Any, scope: str) -> Iterator[tuple[str, Any]]:
    """The main graph and every subgraph (If/Loop/Scan bodies), with a name scope."""
    yield scope, graph
    for node in graph.node:
        for attr in node.attribute:
            label = f"{scope}{node.name or node.op_type}/{attr.name}"
            if attr.HasField("g"):
                yield from _graphs(attr.g, label + "/")
            for i, sub in enumerate(attr.graphs):
                yield from _graphs(sub, f"{label}[{i}]/")


def _constant(node: Any, scope: str, model: int, path: Path, folder: Path, external: _ExternalFiles) -> TensorEntry | None:
    name = node.output[0]
    for attr in node.attribute:
        if attr.name == "value" and attr.HasField("t"):
            return _entry(attr.t, f"{scope}{name}", f"const:{scope}{name}", model, path, folder, external)
        if attr.name in ("value_float", "value_floats", "value_int", "value_ints"):
            import onnx  # onnx_wire leaves these nodes to onnx's parse

            value = onnx.helper.get_attribute_value(attr)
            array = np.asarray(value, dtype=np.float32 if "float" in attr.name else np.int64)
            array = np.ascontiguousarray(array)

            # A def, not a lambda: mypy cannot infer a lambda's default-argument type.
            def read(a: np.ndarray = array) -> np.ndarray:
                return a

            return TensorEntry(model, f"{scope}{name}", tuple(array.shape), str(array.dtype), f"const:{scope}{name}", read)
    return None


# Where a tensor without raw_data keeps its values, by element type, and how
# many field entries each element takes (complex: real and imaginary).
_TYPED_FIELD = {1: ("float_data", 1), 14: ("float_data", 2), 11: ("double_data", 1), 15: ("double_data", 2), 7: ("int64_data", 1), 12: ("uint64_data", 1), 13: ("uint64_data", 1)}


def _checked_shape(tensor: Any, name: str, path: Path) -> tuple[int, ...]:
    shape = tuple(int(d) for d in tensor.dims)
    bound = 1
    for d in shape:
        bound *= max(d, 1)
        # Checked at each dim: the product of 100,000 huge dims grows one big
        # integer per step (16 s on a 900 KB file, quadratic in its size).
        if d < 0 or bound > MAX_ELEMENTS:
            shown = list(shape) if len(shape) <= 8 else f"[{', '.join(map(str, shape[:8]))}, ... ({len(shape)} dims)]"
            raise InputError(f"{path}: tensor {name!r} has impossible dims {shown}; the file is corrupt: re-download or re-export the model")
    return shape


def _held_bytes(tensor: Any, itemsize: int, count: int, raw_at: tuple[int, int] | None) -> int | None:
    """The bytes the tensor holds inline (raw or typed), in the units of
    ``count * itemsize``; None when they match the shape."""
    if raw_at is not None:
        held = raw_at[1]
    elif tensor.HasField("raw_data"):
        held = len(tensor.raw_data)
    else:
        field, per = _TYPED_FIELD.get(tensor.data_type, ("int32_data", 1))
        entries = len(getattr(tensor, field))
        return None if entries == count * per else entries * itemsize // per
    return None if held == count * itemsize else held


def _check_defined_type(tensor: Any, name: str, path: Path, raw_in_file: bool) -> None:
    """A tensor sharescan skips must still be one ONNX can hold: an undefined
    element type, or a string tensor with raw bytes, means a damaged file."""
    from onnx import TensorProto

    code = tensor.data_type
    if code == TensorProto.UNDEFINED or code not in TensorProto.DataType.values():
        raise InputError(f"{path}: tensor {name!r} has element type {code}, which ONNX does not define; the file is corrupt: re-export or re-download it")
    if code == TensorProto.STRING and (raw_in_file or tensor.HasField("raw_data")):
        raise InputError(f"{path}: string tensor {name!r} holds raw bytes, which ONNX does not allow for strings; the file is corrupt: re-export or re-download it")


def _entry(tensor: Any, name: str, storage: str, model: int, path: Path, folder: Path, external: _ExternalFiles, raw_at: tuple[int, int] | None = None, window: FileWindow | None = None) -> TensorEntry | None:
    dtype = ONNX_DTYPES.get(tensor.data_type)
    if dtype is None:
        _check_defined_type(tensor, name, path, raw_at is not None)
        logger.info("%s: skipping %s (element type %d is not numeric)", path, name, tensor.data_type)
        return None
    shape = _checked_shape(tensor, name, path)
    dt = DTYPES[dtype]
    if tensor.data_location == 1:  # TensorProto.EXTERNAL
        return TensorEntry(model, name, shape, dtype, storage, _external_reader(tensor, name, shape, dt.storage, path, folder, external))
    # Every tensor's bytes are checked against its shape here, before any read.
    itemsize = np.dtype(dt.storage).itemsize
    held = _held_bytes(tensor, itemsize, _count(shape), raw_at)
    if held is not None:
        raise InputError(f"{path}: tensor {name!r} holds {held} bytes for shape {list(shape)} {dtype} ({_count(shape) * itemsize} bytes); the file is corrupt: re-download or re-export the model")
    if raw_at is not None:  # raw bytes left in the file by read_layout
        mapped = window.reader(raw_at[0], dt.storage, shape) if window is not None else mapped_reader(path, raw_at[0], dt.storage, shape)
        return TensorEntry(model, name, shape, dtype, storage, mapped)

    def read() -> np.ndarray:
        if tensor.raw_data:
            array = np.frombuffer(tensor.raw_data, dtype=dt.storage)
        else:
            from onnx import numpy_helper

            try:
                array = np.asarray(numpy_helper.to_array(tensor))
            except (ValueError, TypeError):
                raise InputError(f"{path}: tensor {name!r} holds data that does not fit its shape {list(shape)}; the file is corrupt") from None
            if not dt.numpy_native:
                array = array.view(dt.storage)
        if array.size != _count(shape):
            raise InputError(f"{path}: tensor {name!r} holds {array.size} elements for shape {list(shape)}; the file is corrupt")
        return array.reshape(shape)

    return TensorEntry(model, name, shape, dtype, storage, read)


def _count(shape: tuple[int, ...]) -> int:
    n = 1
    for d in shape:
        n *= d
    return n


def _external_reader(tensor: Any, name: str, shape: tuple[int, ...], storage: str, path: Path, folder: Path, external: _ExternalFiles) -> Callable[[], np.ndarray]:
    info = {kv.key: kv.value for kv in tensor.external_data}
    location = info.get("location", "")
    target, size = external.checked(location, name, path, folder)
    nbytes = _count(shape) * np.dtype(storage).itemsize
    try:
        offset = int(info.get("offset", 0))
        length = int(info.get("length", nbytes))
    except ValueError:
        raise InputError(f"{path}: external data of tensor {name!r} has a malformed offset or length; re-export the model") from None
    if offset < 0 or length < 0:
        raise InputError(f"{path}: external data of tensor {name!r} has a negative offset or length; re-export the model")
    if length != nbytes or offset + nbytes > size:
        raise InputError(f"{path}: external data of tensor {name!r} ({location}, offset {offset}, {length} bytes) does not fit the {size}-byte file; it is truncated or corrupt: copy {location} again or re-export the model")
    external.paths.add(target)
    return mapped_reader(target, offset, storage, shape)


class _ExternalFiles:
    """The external-data files one model's tensors name: the caller's set of them, and each location checked once.

    A model names one file for hundreds of tensors; resolving it (a realpath
    is a stat per path component) for every tensor was most of loading GPT-2.
    """

    def __init__(self, paths: set[Path]) -> None:
        self.paths = paths
        self._checked: dict[str, tuple[Path, int]] = {}

    def checked(self, location: str, name: str, path: Path, folder: Path) -> tuple[Path, int]:
        """The file ``location`` names, checked (inside the model's folder, a regular file), and its size."""
        known = self._checked.get(location)
        if known is not None:
            return known
        if not isinstance(location, str):  # onnx's parse gives bytes for a location that is not UTF-8
            raise InputError(f"{path}: external data path {location!r} of tensor {name!r} is not UTF-8; refusing to read it: re-export the model")
        if "\x00" in location:
            raise InputError(f"{path}: external data path {location!r} of tensor {name!r} holds a NUL byte; refusing to read it: re-export the model")
        try:
            target = Path(os.path.realpath(folder / location))
            exists = target.exists()
        except OSError as e:  # a name too long for the file system, a loop of links
            raise InputError(f"{path}: external data path {location[:80]!r} of tensor {name!r} cannot be resolved ({e.strerror}); re-export the model") from None
        if not location or os.path.isabs(location) or (folder != target.parent and folder not in target.parents):
            raise InputError(f"{path}: external data path {location!r} of tensor {name!r} leaves the model's folder; refusing to read it")
        if not exists:
            raise InputError(f"{path}: external data file {location!r} of tensor {name!r} is missing; copy it next to the model")
        regular_file(target, f"{path}: external data file {location!r} of tensor {name!r}")
        self._checked[location] = found = (target, target.stat().st_size)
        return found
