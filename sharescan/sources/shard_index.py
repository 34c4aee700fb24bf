"""Hugging Face shard indexes (``model.safetensors.index.json``,
``pytorch_model.bin.index.json``): the shard files they name, checked.

Both formats share one layout, ``{"weight_map": {tensor name: shard file}}``,
so one reader serves both loaders. A shard must be a plain relative path
inside the index's folder: a NUL byte, an absolute path, a ``..`` part, or a
symlink that resolves outside the folder is refused, so an index cannot make
sharescan read arbitrary files; a FIFO or device is refused before it is
opened.
"""

from __future__ import annotations

import os
from pathlib import Path, PurePosixPath, PureWindowsPath

from sharescan.errors import InputError
from sharescan.sources.files import regular_file, strict_json

__all__ = ["read_shard_index", "read_weight_map", "check_shards_hold"]

# Real indexes are a few MB for the largest models (one line per tensor).
_MAX_INDEX_BYTES = 64 * 1024 * 1024


def read_shard_index(index: Path) -> list[tuple[str, Path]]:
    """(name in the index, resolved path) of each distinct shard, sorted by name."""
    weight_map = read_weight_map(index)
    folder = index.parent.resolve()
    return [(shard, _shard_path(index, folder, shard)) for shard in sorted(set(weight_map.values()))]


def check_shards_hold(index: Path, weight_map: dict[str, str], held: dict[str, set[str]]) -> None:
    """Every tensor the index places in a shard must be in that shard: a
    mismatch means the folder mixes files of different downloads."""
    for tensor, shard in weight_map.items():
        if tensor not in held.get(shard, ()):
            raise InputError(f"{index}: lists tensor {tensor!r} in shard {shard!r}, which does not hold it; re-download the index or the whole folder")


def read_weight_map(index: Path) -> dict[str, str]:
    """The index's tensor name -> shard file map, checked."""
    size = regular_file(index).st_size
    advice = "re-download the index or the whole folder"
    if size > _MAX_INDEX_BYTES:
        raise InputError(f"{index}: index is {size:,} bytes, over the {_MAX_INDEX_BYTES:,}-byte limit for a shard index; {advice}")
    data = strict_json(index.read_bytes(), str(index), "shard index", advice)
    weight_map = data.get("weight_map") if isinstance(data, dict) else None
    if not isinstance(weight_map, dict):
        raise InputError(f"{index}: not a valid shard index (needs a 'weight_map' object of tensor name -> shard file); {advice}")
    wrong = [v for v in weight_map.values() if not isinstance(v, str)]
    if wrong:
        raise InputError(f"{index}: not a valid shard index ('weight_map' values must be shard file names, found {type(wrong[0]).__name__}); {advice}")
    return weight_map


def _shard_path(index: Path, folder: Path, shard: str) -> Path:
    plain = shard and "\x00" not in shard and not os.path.isabs(shard) and not PureWindowsPath(shard).is_absolute()
    if not plain or ".." in PurePosixPath(shard.replace("\\", "/")).parts:
        raise InputError(f"{index}: shard path {shard!r} is not a file name inside the model folder; refusing to read it: re-download the index")
    path = Path(os.path.realpath(folder / shard))
    # A snapshot in the Hugging Face cache links each file into its repo's blobs/.
    blobs = folder.parent.parent / "blobs" if folder.parent.name == "snapshots" and folder.parent.parent.name.startswith("models--") else None
    if folder not in path.parents and (blobs is None or path.parent != blobs):
        raise InputError(f"{index}: shard {shard!r} leaves the model folder (through a symlink); refusing to read it: copy the shard into the folder")
    if not path.exists():
        raise InputError(f"{index}: shard {shard!r} is missing; download the whole folder")
    regular_file(path, f"{index}: shard {shard!r}")
    return path
