"""Pick the loader for a path. Loaders are imported only when their format is
seen, so that analysing ONNX or safetensors never imports torch (and only a
repo id imports huggingface_hub)."""

from __future__ import annotations

import stat
from dataclasses import dataclass
from pathlib import Path

from sharescan.errors import InputError
from sharescan.sources.files import regular_file
from sharescan.table import LoadedModel, TensorEntry

__all__ = ["LoadOptions", "load_model", "detect_format"]

_TORCH_SUFFIXES = {".pt", ".pth", ".bin", ".ckpt", ".pkl"}


@dataclass(frozen=True)
class LoadOptions:
    key: str | None = None  # dotted path into a nested PyTorch checkpoint
    trust_pickle: bool = False  # allow unpickling arbitrary objects (runs code)


def detect_format(path: Path) -> str:
    """The loader to use: decided by folder layout, suffix and magic bytes."""
    if path.is_dir():
        return "folder"
    suffix = path.suffix.lower()
    if suffix == ".safetensors":
        return "safetensors"
    if suffix == ".onnx":
        return "onnx"
    if suffix == ".pt2":
        return "torch.export"
    if path.name.endswith(".safetensors.index.json"):
        return "safetensors-index"
    with path.open("rb") as f:
        head = f.read(16)
    import zipfile  # here, not at the top: safetensors and ONNX never need it (2 ms of start-up)

    if zipfile.is_zipfile(path):
        from sharescan.sources.torch_source import is_torchscript

        return "torchscript" if is_torchscript(path) else "pytorch"
    if suffix in _TORCH_SUFFIXES or head[:1] == b"\x80":  # pickle protocol marker
        return "pytorch"
    if len(head) >= 9 and head[8:9] == b"{":  # safetensors: u64 header length, then JSON
        return "safetensors"
    raise InputError(f"{path}: unknown model format; sharescan reads .pt/.pth/.bin, .pt2, .safetensors, .onnx and Hugging Face folders")


def load_model(path_text: str, model: int, options: LoadOptions) -> LoadedModel:
    """Load a model file or folder; else, when the text is a repo id, its snapshot in the local Hugging Face cache."""
    path = Path(path_text)
    if "\x00" in path_text:
        raise InputError(f"{path_text!r}: no such file or folder; check the path")  # a NUL byte is shown escaped
    if not path.exists():  # a local path that exists always wins over a repo id
        from sharescan.sources import hf

        ref = hf.repo_ref(path_text)
        if ref is None:
            raise InputError(f"{path_text}: no such file or folder; check the path")
        path, shown = hf.resolve_repo(ref, path_text), path_text
    else:
        shown = str(path)
    try:
        # Before anything is opened: a FIFO blocks open(), /dev/zero never ends.
        if not stat.S_ISDIR(path.stat().st_mode):
            regular_file(path)
        fmt = detect_format(path)
        if fmt == "folder":
            from sharescan.sources import hf

            folder = hf.cache_folder_snapshot(path) if hf.is_cache_folder(path) else path
            return _load_folder(folder, model, options, shown)
        if path.stat().st_size == 0:
            raise InputError(f"{path}: empty file; re-save or re-download it")
        return _load_file(path, fmt, model, options, path_text)
    except PermissionError:
        raise InputError(f"{path}: permission denied; check the file's permissions") from None
    except IsADirectoryError:
        raise InputError(f"{path}: is a folder, not a model file") from None


def _load_file(path: Path, fmt: str, model: int, options: LoadOptions, shown: str) -> LoadedModel:
    regular_file(path)  # also for files found in a folder
    if fmt == "safetensors":
        from sharescan.sources.safetensors_source import load_safetensors

        return load_safetensors(path, model)
    if fmt == "safetensors-index":
        from sharescan.sources.safetensors_source import load_safetensors_index

        return load_safetensors_index(path, model, shown)
    if fmt == "onnx":
        from sharescan.sources.onnx_source import load_onnx

        return load_onnx(path, model)
    from sharescan.sources import torch_source

    if fmt == "torch.export":
        return torch_source.load_torch_export(path, model)
    if fmt == "torchscript":
        return torch_source.load_torchscript(path, model)
    return torch_source.load_pytorch(path, model, options.key, options.trust_pickle)


def _load_folder(path: Path, model: int, options: LoadOptions, shown: str) -> LoadedModel:
    """A Hugging Face model folder, with the output head its config.json ties to the embedding."""
    from sharescan.sources.hf import with_tied_head

    return with_tied_head(_load_folder_weights(path, model, options, shown), path)


def _load_folder_weights(path: Path, model: int, options: LoadOptions, shown: str) -> LoadedModel:
    """The weights of a model folder: sharded or single safetensors, else PyTorch weights."""
    for index in ("model.safetensors.index.json",):
        if (path / index).is_file():
            return _load_file(path / index, "safetensors-index", model, options, shown)
    candidates = ["model.safetensors", "pytorch_model.bin"]
    for name in candidates:
        if (path / name).is_file():
            loaded = _load_file(path / name, detect_format(path / name), model, options, shown)
            return LoadedModel(shown, loaded.format, loaded.tensors, loaded.file_bytes, loaded.reused, loaded.files)
    if (path / "pytorch_model.bin.index.json").is_file():
        return _load_bin_index(path / "pytorch_model.bin.index.json", model, options, shown)
    singles = sorted(path.glob("*.safetensors")) + sorted(path.glob("*.onnx"))
    if len(singles) == 1:
        loaded = _load_file(singles[0], detect_format(singles[0]), model, options, shown)
        return LoadedModel(shown, loaded.format, loaded.tensors, loaded.file_bytes, loaded.reused, loaded.files)
    raise InputError(f"{path}: folder holds no model sharescan recognises (model.safetensors[.index.json], pytorch_model.bin, or one .safetensors/.onnx file)")


def _load_bin_index(index: Path, model: int, options: LoadOptions, shown: str) -> LoadedModel:
    from sharescan.sources.shard_index import read_shard_index

    shards = read_shard_index(index)  # checked before torch is imported
    from sharescan.sources import torch_source

    tensors: list[TensorEntry] = []
    file_bytes = 0
    files = [str(index)]
    for _, shard_path in shards:
        part = torch_source.load_pytorch(shard_path, model, options.key, options.trust_pickle)
        tensors.extend(part.tensors)
        file_bytes += part.file_bytes
        files.extend(part.files)
    return LoadedModel(shown, "pytorch-sharded", tuple(tensors), file_bytes, files=tuple(files))
