"""safetensors files and sharded Hugging Face folders, memory-mapped.

The header is parsed here rather than through ``safetensors.safe_open`` so
that bfloat16 stays readable without torch and nothing is read until a
detector asks for a tensor's bytes.
"""

from __future__ import annotations

import json
import logging
import struct
from pathlib import Path


from sharescan.dtypes import DTYPES
from sharescan.errors import InputError
from sharescan.sources.mapped import mapped_reader
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


def read_header(path: Path) -> tuple[dict[str, dict], dict[str, str], int]:
    """Tensor records, metadata and the offset where tensor data starts."""
    size = path.stat().st_size
    with path.open("rb") as f:
        head = f.read(8)
        if len(head) < 8:
            raise InputError(f"{path}: truncated safetensors file (no header); re-save or re-download it")
        (n,) = struct.unpack("<Q", head)
        if n == 0 or n > _MAX_HEADER or 8 + n > size:
            raise InputError(f"{path}: not a valid safetensors file (header length {n} does not fit a {size}-byte file); it is truncated or corrupt: re-save or re-download it")
        raw = f.read(n)
    try:
        header = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise InputError(f"{path}: corrupt safetensors header ({e.__class__.__name__}); re-save or re-download it") from None
    if not isinstance(header, dict):
        raise InputError(f"{path}: corrupt safetensors header (not a JSON object); re-save or re-download it")
    metadata = header.pop("__metadata__", None) or {}
    if not isinstance(metadata, dict):
        raise InputError(f"{path}: corrupt safetensors header (__metadata__ is not an object); re-save or re-download it")
    return header, metadata, 8 + n


def _entries(path: Path, model: int, prefix: str) -> list[TensorEntry]:
    header, metadata, data_start = read_header(path)
    size = path.stat().st_size
    entries: list[TensorEntry] = []
    by_name: dict[str, TensorEntry] = {}
    for name, info in header.items():
        try:
            code = info["dtype"]
            shape = tuple(int(d) for d in info["shape"])
            begin, end = (int(x) for x in info["data_offsets"])
        except (KeyError, TypeError, ValueError):
            raise InputError(f"{path}: tensor {name!r} has a malformed header entry; the file is corrupt: re-save or re-download it") from None
        if code not in _DTYPE_CODES:
            raise InputError(f"{path}: tensor {name!r} has dtype {code!r}, which sharescan does not read ({', '.join(_DTYPE_CODES)})")
        dtype = _DTYPE_CODES[code]
        dt = DTYPES[dtype]
        expected = dt.itemsize
        for d in shape:
            expected *= d
        if any(d < 0 for d in shape) or end - begin != expected or begin < 0:
            raise InputError(f"{path}: tensor {name!r} declares {end - begin} bytes for shape {list(shape)} {dtype}; the file is corrupt: re-save or re-download it")
        if data_start + end > size:
            raise InputError(f"{path}: truncated file: tensor {name!r} ends at byte {data_start + end} of {size}; re-save or re-download it")
        entry = TensorEntry(
            model=model,
            name=name,
            shape=shape,
            dtype=dtype,
            # Zero-size tensors all sit at one offset; they share no bytes.
            storage=f"{prefix}{path.name}:{begin}:{end}" if end > begin else f"empty:{name}",
            read=mapped_reader(path, data_start + begin, dt.storage, shape),
        )
        entries.append(entry)
        by_name[name] = entry
    # safetensors.torch.save_model drops the second name of a tied tensor and
    # records it as metadata {dropped_name: kept_name}: restore it as an alias.
    for dropped, kept in metadata.items():
        if dropped not in by_name and isinstance(kept, str) and kept in by_name:
            src = by_name[kept]
            entries.append(TensorEntry(model, dropped, src.shape, src.dtype, src.storage, src.read))
    return entries


def load_safetensors(path: Path, model: int) -> LoadedModel:
    entries = _entries(path, model, "")
    return LoadedModel(str(path), "safetensors", tuple(entries), path.stat().st_size, files=(str(path),))


def load_safetensors_index(index: Path, model: int, shown: str) -> LoadedModel:
    """A sharded model: ``model.safetensors.index.json`` and its shard files."""
    try:
        weight_map = json.loads(index.read_text())["weight_map"]
    except (OSError, ValueError, KeyError, TypeError):
        raise InputError(f"{index}: not a valid safetensors index (needs a 'weight_map' object)") from None
    folder = index.parent.resolve()
    shards = sorted(set(weight_map.values()))
    entries: list[TensorEntry] = []
    file_bytes = 0
    for shard in shards:
        shard_path = (folder / shard).resolve()
        if folder not in shard_path.parents:
            raise InputError(f"{index}: shard path {shard!r} leaves the model folder; refusing to read it")
        if not shard_path.is_file():
            raise InputError(f"{index}: shard {shard!r} is missing; download the whole folder")
        file_bytes += shard_path.stat().st_size
        entries.extend(_entries(shard_path, model, f"{shard}/"))
    files = (str(index), *(str((folder / s).resolve()) for s in shards))
    return LoadedModel(shown, "safetensors-sharded", tuple(entries), file_bytes, files=files)
