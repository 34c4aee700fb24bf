"""Where an ONNX file keeps its initializers' bytes, found without parsing them.

Parsing a ModelProto copies every ``raw_data`` field into memory: analysing a
622 MiB export took 1.3 GiB. This walks the protobuf wire format of the file
(memory-mapped) down the one path that holds the bulk, ModelProto.graph ->
GraphProto.initializer -> TensorProto.raw_data, and returns

- the file's bytes with those ``raw_data`` fields left out (a few hundred KB
  for that export), for onnx to parse as usual, and
- for each main-graph initializer, in order, the file offset and length of
  its ``raw_data`` (None where it has none), to be memory-mapped on demand.

Anything unexpected (a group wire type, a length past the end) returns None,
and the caller parses the whole file as before.
"""

from __future__ import annotations

import mmap
from collections.abc import Callable, Iterator
from pathlib import Path

__all__ = ["Layout", "read_layout", "read_varint", "WireError"]

# Field numbers, from onnx.proto.
_MODEL_GRAPH = 7
_GRAPH_INITIALIZER = 5
_TENSOR_RAW_DATA = 9

Layout = tuple[bytes, list[tuple[int, int] | None]]
_UINT64_MASK = (1 << 64) - 1


class WireError(Exception):
    """The bytes are not protobuf wire format as these readers take it: the caller parses with onnx instead."""


def read_layout(path: Path) -> Layout | None:
    with open(path, "rb") as f:
        try:
            data = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
        except ValueError:  # an empty file cannot be mapped
            return None
    try:
        raw: list[tuple[int, int] | None] = []
        stripped = _rewrite(data, 0, len(data), {_MODEL_GRAPH: lambda s, e: _rewrite(data, s, e, {_GRAPH_INITIALIZER: lambda s2, e2: _tensor(data, s2, e2, raw)})})
        return stripped, raw
    except WireError:
        return None
    finally:
        data.close()


def read_varint(data: bytes | mmap.mmap, pos: int, end: int) -> tuple[int, int]:
    """The varint at ``pos`` (before ``end``) and the position after it."""
    value = shift = 0
    while True:
        if pos >= end or shift > 63:
            raise WireError
        byte = data[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        if byte < 0x80:
            return value & _UINT64_MASK, pos  # protobuf keeps the low 64 bits
        shift += 7


def _encode_varint(value: int) -> bytes:
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def _fields(data: mmap.mmap, start: int, end: int) -> Iterator[tuple[int, int, int, int, int, int]]:
    """(number, wire type, field start, key end, payload start, payload end) for each field in [start, end)."""
    pos = start
    while pos < end:
        field_start = pos
        key, pos = read_varint(data, pos, end)
        key_end = pos
        number, wire = key >> 3, key & 7
        if wire == 0:
            _, after = read_varint(data, pos, end)
        elif wire == 1:
            after = pos + 8
        elif wire == 2:
            length, pos = read_varint(data, pos, end)
            after = pos + length
        elif wire == 5:
            after = pos + 4
        else:  # groups (3, 4) are not used by onnx
            raise WireError
        if after > end:
            raise WireError
        yield number, wire, field_start, key_end, pos, after
        pos = after


def _rewrite(data: mmap.mmap, start: int, end: int, inner: dict[int, Callable[[int, int], bytes]]) -> bytes:
    """The message in [start, end) with the length-delimited fields in ``inner`` replaced by what their handler returns."""
    out = bytearray()
    for number, wire, field_start, key_end, payload, after in _fields(data, start, end):
        if wire == 2 and number in inner:
            body = inner[number](payload, after)
            out += data[field_start:key_end]
            out += _encode_varint(len(body))
            out += body
        else:
            out += data[field_start:after]
    return bytes(out)


def _tensor(data: mmap.mmap, start: int, end: int, raw: list[tuple[int, int] | None]) -> bytes:
    """A TensorProto without its raw_data; records where that data was."""
    out = bytearray()
    found = None
    for number, wire, field_start, _, payload, after in _fields(data, start, end):
        if number == _TENSOR_RAW_DATA and wire == 2:
            found = (payload, after - payload)
        else:
            out += data[field_start:after]
    raw.append(found)
    return bytes(out)
