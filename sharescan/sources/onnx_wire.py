"""The parts of an ONNX model that the loader reads, parsed from the protobuf wire format without the onnx package.

Importing onnx (and its protobuf runtime) takes about 40 ms, longer than
reading the tensor table of a GPT-2 export takes in pure Python. This reads
what ``onnx_source.proto_entries`` asks of a ModelProto (the graph, its
subgraphs, nodes, attributes holding a tensor or a graph, and tensors with
their raw or external bytes) into small objects that answer the same
attribute names and ``HasField``.

It reads only well-formed files of the usual shape. Anything else (a wire
type a field should not have, a singular field given twice, a tensor whose
values are in typed fields, a non-numeric element type, a Constant given by
``value_float(s)`` or ``value_int(s)``, names that are not UTF-8, no graph)
returns None, and the caller parses the file with onnx as before, which
reads the rest and gives its own errors.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from sharescan.sources.onnx_layout import WireError, read_varint

__all__ = ["parse_model", "NUMERIC_TYPES"]

# TensorProto.DataType codes the loader turns into tensors (onnx_source.ONNX_DTYPES).
NUMERIC_TYPES = frozenset({1, 2, 3, 4, 5, 6, 7, 9, 10, 11, 12, 13, 14, 15, 16, 17, 19})

_VARINT, _FIXED64, _BYTES, _FIXED32 = 0, 1, 2, 5
_INT64_SIGN = 1 << 63
_UINT64 = 1 << 64
_EXTERNAL = 1  # TensorProto.DataLocation.EXTERNAL


class _Unread(Exception):
    """Outside what this reader handles: onnx parses the file instead."""


class _Message:
    __slots__ = ("_has",)

    def __init__(self) -> None:
        self._has: set[str] = set()

    def HasField(self, name: str) -> bool:  # noqa: N802 (protobuf's name)
        return name in self._has


class Entry(_Message):
    """StringStringEntryProto."""

    __slots__ = ("key", "value")

    def __init__(self) -> None:
        super().__init__()
        self.key = ""
        self.value = ""


class Tensor(_Message):
    """TensorProto: shape, element type, name, and where its bytes are."""

    __slots__ = ("dims", "data_type", "name", "raw_data", "data_location", "external_data")
    # Typed values are left to onnx (see _tensor); a tensor read here has none.
    float_data = int32_data = int64_data = double_data = uint64_data = ()

    def __init__(self) -> None:
        super().__init__()
        self.dims: list[int] = []
        self.data_type = 0
        self.name = ""
        self.raw_data = b""
        self.data_location = 0
        self.external_data: list[Entry] = []


class Attribute(_Message):
    __slots__ = ("name", "t", "g", "graphs")

    def __init__(self) -> None:
        super().__init__()
        self.name = ""
        self.t: Tensor | None = None
        self.g: Graph | None = None
        self.graphs: list[Graph] = []


class Node(_Message):
    __slots__ = ("input", "output", "name", "op_type", "attribute")

    def __init__(self) -> None:
        super().__init__()
        self.input: list[str] = []
        self.output: list[str] = []
        self.name = ""
        self.op_type = ""
        self.attribute: list[Attribute] = []


class Graph(_Message):
    __slots__ = ("node", "initializer")

    def __init__(self) -> None:
        super().__init__()
        self.node: list[Node] = []
        self.initializer: list[Tensor] = []


class Model(_Message):
    __slots__ = ("graph",)

    def __init__(self) -> None:
        super().__init__()
        self.graph: Graph | None = None


def parse_model(data: bytes) -> Model | None:
    """The model's graph as the loader reads it; None when onnx must parse the file."""
    try:
        model = Model()
        for number, wire, value in _fields(data, 0, len(data)):
            if number == 7:  # graph
                _once(model, "graph", wire)
                model.graph = _graph(data, *value)
        if model.graph is None:
            return None
        return model
    except (_Unread, WireError, IndexError, UnicodeDecodeError, RecursionError):
        return None


def _fields(data: bytes, start: int, end: int) -> Iterator[tuple[int, int, Any]]:
    """(field number, wire type, value) of each field in [start, end): an int, or (start, end) of a length-delimited payload."""
    pos = start
    while pos < end:
        key, pos = read_varint(data, pos, end)
        number, wire = key >> 3, key & 7
        if number == 0:
            raise _Unread
        value: Any
        if wire == _VARINT:
            value, pos = read_varint(data, pos, end)
        elif wire == _BYTES:
            length, pos = read_varint(data, pos, end)
            value = (pos, pos + length)
            pos += length
        elif wire == _FIXED64:
            value, pos = None, pos + 8
        elif wire == _FIXED32:
            value, pos = None, pos + 4
        else:  # groups: not in onnx.proto
            raise _Unread
        if pos > end:
            raise _Unread
        yield number, wire, value


def _once(message: _Message, name: str, wire: int) -> None:
    """A message field may be given once (protobuf would merge a second occurrence: left to onnx)."""
    if wire != _BYTES or name in message._has:
        raise _Unread
    message._has.add(name)


def _span(wire: int, value: Any) -> tuple[int, int]:
    """A length-delimited field's (start, end) in the data; a field of another wire type is left to onnx."""
    if wire != _BYTES:
        raise _Unread
    start, end = value
    return start, end


def _text(data: bytes, wire: int, value: Any) -> str:
    start, end = _span(wire, value)
    return data[start:end].decode("utf-8")


def _int(wire: int, value: Any) -> int:
    """An int32 or int64 field (a negative one is sign-extended to 64 bits)."""
    if wire != _VARINT:
        raise _Unread
    return value - _UINT64 if value >= _INT64_SIGN else value


def _graph(data: bytes, start: int, end: int) -> Graph:
    graph = Graph()
    for number, wire, value in _fields(data, start, end):
        if number == 1:  # node
            graph.node.append(_node(data, *_span(wire, value)))
        elif number == 5:  # initializer
            graph.initializer.append(_tensor(data, *_span(wire, value)))
        elif number == 15:  # sparse_initializer: what onnx's loader does with them is not repeated here
            raise _Unread
    return graph


def _node(data: bytes, start: int, end: int) -> Node:
    node = Node()
    for number, wire, value in _fields(data, start, end):
        if number == 1:
            node.input.append(_text(data, wire, value))
        elif number == 2:
            node.output.append(_text(data, wire, value))
        elif number == 3:
            node.name = _text(data, wire, value)
        elif number == 4:
            node.op_type = _text(data, wire, value)
        elif number == 5:
            node.attribute.append(_attribute(data, *_span(wire, value)))
    if node.op_type == "Constant" and any(a.name in ("value_float", "value_floats", "value_int", "value_ints") for a in node.attribute):
        raise _Unread  # their values are read through onnx.helper
    return node


def _attribute(data: bytes, start: int, end: int) -> Attribute:
    attr = Attribute()
    for number, wire, value in _fields(data, start, end):
        if number == 1:
            attr.name = _text(data, wire, value)
        elif number == 5:
            _once(attr, "t", wire)
            attr.t = _tensor(data, *value)
        elif number == 6:
            _once(attr, "g", wire)
            attr.g = _graph(data, *value)
        elif number == 10:  # tensors
            _tensor(data, *_span(wire, value))  # read only to hold it to the same rules
        elif number == 11:
            attr.graphs.append(_graph(data, *_span(wire, value)))
    return attr


def _tensor(data: bytes, start: int, end: int) -> Tensor:
    tensor = Tensor()
    for number, wire, value in _fields(data, start, end):
        if number == 1:  # dims, packed or not
            if wire == _BYTES:
                pos, stop = value
                while pos < stop:
                    dim, pos = read_varint(data, pos, stop)
                    tensor.dims.append(dim - _UINT64 if dim >= _INT64_SIGN else dim)
            else:
                tensor.dims.append(_int(wire, value))
        elif number == 2:
            tensor.data_type = _int(wire, value)
        elif number == 8:
            tensor.name = _text(data, wire, value)
        elif number == 9:
            first, stop = _span(wire, value)
            tensor.raw_data = data[first:stop]
            tensor._has.add("raw_data")
        elif number == 13:
            tensor.external_data.append(_entry(data, *_span(wire, value)))
        elif number == 14:
            tensor.data_location = _int(wire, value)
        elif number in (3, 4, 5, 6, 7, 10, 11):  # segment and the typed value fields
            raise _Unread
    if tensor.data_type not in NUMERIC_TYPES or tensor.data_location not in (0, _EXTERNAL):
        raise _Unread  # onnx's loader checks and skips these
    return tensor


def _entry(data: bytes, start: int, end: int) -> Entry:
    entry = Entry()
    for number, wire, value in _fields(data, start, end):
        if number == 1:
            entry.key = _text(data, wire, value)
        elif number == 2:
            entry.value = _text(data, wire, value)
    return entry
