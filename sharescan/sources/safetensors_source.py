"""safetensors files and sharded Hugging Face folders, memory-mapped.

The header is parsed here rather than through ``safetensors.safe_open`` so
that bfloat16 stays readable without torch and nothing is read until a
detector asks for a tensor's bytes.
"""

from __future__ import annotations

import logging
import struct
from pathlib import Path

from sharescan.dtypes import DTYPES
from sharescan.errors import InputError
from sharescan.sources.files import MAX_ELEMENTS, regular_file, strict_json
from sharescan.sources.mapped import FileWindow
from sharescan.sources.shard_index import check_shards_hold, read_shard_index, read_weight_map
from sharescan.table import LoadedModel, TensorEntry

__all__ = ["load_safetensors", "load_safetensors_index", "read_header"]

logger = logging.getLogger(__name__)

_DTYPE_CODES = {
    "F64": "float64",
    "F32": "float32",
    "F16": "float16",
    "BF16": "bfloat16",
    "F8_E4M3": "float8_e4m3fn",
    "F8_E5M2": "float8_e5m2",
    "I64": "int64",
    "I32": "int32",
    "I16": "int16",
    "I8": "int8",
    "U64": "uint64",
    "U32": "uint32",
    "U16": "uint16",
    "U8": "uint8",
    "BOOL": "bool",
    "C64": "complex64",
}

# A header larger than this is not a safetensors header (the format caps it at 100 MB).
_MAX_HEADER = 100 * 1024 * 1024
# More tensors than this in one file is no model (the 100 MB header fits
# about 1.5 million short records anyway); the limit bounds the work.
MAX_TENSORS = 10_000_000
_MAX_RANK = 32  # numpy's limit on dimensions

_ADVICE = "the file is corrupt: re-save or re-download it"


def read_header(path: Path) -> tuple[dict[str, dict], dict[str, str], int]:
    """Tensor records, metadata and the offset where tensor data starts.

    Only the header's shape is checked here (an object of objects, string
    metadata); each record is checked by ``_entries``.
    """
    size = regular_file(path).st_size
    with path.open("rb") as f:
        head = f.read(8)
        if len(head) < 8:
            raise InputError(f"{path}: truncated safetensors file (no header); re-save or re-download it")
        (n,) = struct.unpack("<Q", head)
        if n == 0 or n > _MAX_HEADER or 8 + n > size:
            raise InputError(f"{path}: not a valid safetensors file (header length {n} does not fit a {size}-byte file); it is truncated or corrupt: re-save or re-download it")
        raw = f.read(n)
    header = strict_json(raw, str(path), "safetensors header", "re-save or re-download it")
    if not isinstance(header, dict):
        raise InputError(f"{path}: corrupt safetensors header (not a JSON object); re-save or re-download it")
    metadata = header.pop("__metadata__", None) or {}
    if not isinstance(metadata, dict) or not all(isinstance(v, str) for v in metadata.values()):
        raise InputError(f"{path}: corrupt safetensors header (__metadata__ is not an object of strings); re-save or re-download it")
    if len(header) > MAX_TENSORS:
        raise InputError(f"{path}: header lists {len(header):,} tensors, over the limit of {MAX_TENSORS:,}; {_ADVICE}")
    return header, metadata, 8 + n


def _record(path: Path, name: str, info: object, data_bytes: int) -> tuple[str, tuple[int, ...], int, int]:
    """dtype, shape and data offsets of one header record, each checked:
    plain ints (not bools or floats), a known dtype, a sane shape whose
    bytes are exactly the offsets' span, inside the file's data."""
    if not isinstance(info, dict):
        raise InputError(f"{path}: tensor {name!r} has a malformed header entry (not an object); {_ADVICE}")
    code, shape, offsets = info.get("dtype"), info.get("shape"), info.get("data_offsets")
    if not isinstance(code, str):
        raise InputError(f"{path}: tensor {name!r} has a malformed header entry (dtype is not a string); {_ADVICE}")
    if not isinstance(shape, list) or len(shape) > _MAX_RANK or not all(type(d) is int and d >= 0 for d in shape):
        raise InputError(f"{path}: tensor {name!r} has a malformed header entry (shape must be a list of at most {_MAX_RANK} non-negative integers); {_ADVICE}")
    if not isinstance(offsets, list) or len(offsets) != 2 or not all(type(x) is int for x in offsets):
        raise InputError(f"{path}: tensor {name!r} has a malformed header entry (data_offsets must be two integers); {_ADVICE}")
    if code not in _DTYPE_CODES:
        raise InputError(f"{path}: tensor {name!r} has dtype {code!r}, which sharescan does not read ({', '.join(_DTYPE_CODES)})")
    dtype = _DTYPE_CODES[code]
    begin, end = offsets
    bound = count = 1
    for d in shape:
        count *= d
        bound *= max(d, 1)
    if bound > MAX_ELEMENTS:
        raise InputError(f"{path}: tensor {name!r} declares an impossible shape {shape}; {_ADVICE}")
    expected = count * DTYPES[dtype].itemsize
    if not 0 <= begin <= end or end - begin != expected:
        raise InputError(f"{path}: tensor {name!r} declares {end - begin} bytes for shape {shape} {dtype}; {_ADVICE}")
    if end > data_bytes:
        raise InputError(f"{path}: truncated file: tensor {name!r} ends at byte {end} of the {data_bytes}-byte data section; re-save or re-download it")
    return dtype, tuple(shape), begin, end


def _entries(path: Path, model: int, prefix: str) -> list[TensorEntry]:
    header, metadata, data_start = read_header(path)
    size = path.stat().st_size
    window = FileWindow(path)
    entries: list[TensorEntry] = []
    by_name: dict[str, TensorEntry] = {}
    for name, info in header.items():
        dtype, shape, begin, end = _record(path, name, info, size - data_start)
        dt = DTYPES[dtype]
        entry = TensorEntry(
            model=model,
            name=name,
            shape=shape,
            dtype=dtype,
            # Zero-size tensors all sit at one offset; they share no bytes.
            storage=f"{prefix}{path.name}:{begin}:{end}" if end > begin else f"empty:{name}",
            read=window.reader(data_start + begin, dt.storage, shape),
        )
        entries.append(entry)
        by_name[name] = entry
    # safetensors.torch.save_model drops the second name of a tied tensor and
    # records it as metadata {dropped_name: kept_name}: restore it as an alias.
    for dropped, kept in metadata.items():
        if dropped not in by_name and kept in by_name:
            src = by_name[kept]
            entries.append(TensorEntry(model, dropped, src.shape, src.dtype, src.storage, src.read))
    return entries


def load_safetensors(path: Path, model: int) -> LoadedModel:
    entries = _entries(path, model, "")
    return LoadedModel(str(path), "safetensors", tuple(entries), path.stat().st_size, files=(str(path),))


def load_safetensors_index(index: Path, model: int, shown: str) -> LoadedModel:
    """A sharded model: ``model.safetensors.index.json`` and its shard files."""
    shards = read_shard_index(index)
    entries: list[TensorEntry] = []
    file_bytes = 0
    held: dict[str, set[str]] = {}
    for shard, shard_path in shards:
        file_bytes += shard_path.stat().st_size
        part = _entries(shard_path, model, f"{shard}/")
        held[shard] = {e.name for e in part}
        entries.extend(part)
    check_shards_hold(index, read_weight_map(index), held)
    files = (str(index), *(str(p) for _, p in shards))
    return LoadedModel(shown, "safetensors-sharded", tuple(entries), file_bytes, files=files)
