"""PyTorch files: pickled state dicts and checkpoints, TorchScript, torch.export.

Pickles are loaded with ``weights_only=True`` (and memory-mapped where the
file is a zip archive), so a file cannot run code unless the user opts in
with ``trust_pickle``. Tensors that share storage in the file keep one
storage key: they are already shared, not duplicated.
"""

from __future__ import annotations

import logging
import pickle
import warnings
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from sharescan.dtypes import DTYPES
from sharescan.errors import InputError
from sharescan.table import LoadedModel, TensorEntry

__all__ = ["load_pytorch", "load_torchscript", "load_torch_export", "is_torchscript", "torch_load", "walk_tensors"]

logger = logging.getLogger(__name__)

_TRUST_HINT = "pass --trust-pickle only if you trust where the file came from (unpickling can run code)"


def is_torchscript(path: Path) -> bool:
    """TorchScript archives are zip files with serialized code beside the data."""
    try:
        with zipfile.ZipFile(path) as z:
            return any(n.endswith("/constants.pkl") or "/code/" in n for n in z.namelist())
    except (zipfile.BadZipFile, OSError):
        return False


def load_pytorch(path: Path, model: int, key: str | None = None, trust_pickle: bool = False) -> LoadedModel:
    import torch

    obj = torch_load(path, trust_pickle)
    if isinstance(obj, torch.nn.Module):
        obj = obj.state_dict()
    fmt = "pytorch"
    if key:
        for part in key.split("."):
            if isinstance(obj, dict) and part in obj:
                obj = obj[part]
            elif isinstance(obj, (list, tuple)) and part.isdigit() and int(part) < len(obj):
                obj = obj[int(part)]
            else:
                raise InputError(f"{path}: no entry {key!r} in the checkpoint; its top-level keys are {_top_keys(obj)}")
    tensors = list(walk_tensors(obj, ""))
    return LoadedModel(str(path), fmt, tuple(_entries(tensors, model)), path.stat().st_size, files=(str(path),))


def load_torchscript(path: Path, model: int) -> LoadedModel:
    import torch

    try:
        with warnings.catch_warnings():
            # torch deprecates TorchScript; reading existing archives is still the point.
            warnings.simplefilter("ignore", DeprecationWarning)
            module = torch.jit.load(str(path), map_location="cpu")
    except (RuntimeError, ValueError) as e:
        raise InputError(f"{path}: unreadable TorchScript archive ({_first_line(e)}); re-save it with torch.jit.save") from None
    tensors = list(module.state_dict().items())
    return LoadedModel(str(path), "torchscript", tuple(_entries(tensors, model)), path.stat().st_size, files=(str(path),))


def load_torch_export(path: Path, model: int) -> LoadedModel:
    import torch

    previous = logging.root.manager.disable
    logging.disable(logging.WARNING)  # torch logs a traceback of its own for a bad archive
    try:
        program = torch.export.load(str(path))
    except Exception as e:  # torch.export raises many types for a bad archive
        raise InputError(f"{path}: not a readable torch.export program ({e.__class__.__name__}); re-save it with torch.export.save") from None
    finally:
        logging.disable(previous)
    tensors = [(n, t) for n, t in program.state_dict.items() if isinstance(t, torch.Tensor)]
    tensors += [(n, t) for n, t in program.constants.items() if isinstance(t, torch.Tensor)]
    return LoadedModel(str(path), "torch.export", tuple(_entries(tensors, model)), path.stat().st_size, files=(str(path),))


def torch_load(path: Path, trust_pickle: bool) -> Any:
    import torch

    mmap = zipfile.is_zipfile(path)
    try:
        return torch.load(str(path), map_location="cpu", weights_only=not trust_pickle, mmap=mmap)
    except pickle.UnpicklingError as e:
        # torch says "Weights only load failed" for damaged pickles too: only a
        # refused global means the file holds objects that --trust-pickle would load.
        text = str(e)
        if "Unsupported global" in text or "unsupported GLOBAL" in text or "Unsupported class" in text:
            culprit = _unsupported_global(str(e))
            raise InputError(f"{path}: holds pickled Python objects{culprit}, not just tensors; re-save its state_dict(), or {_TRUST_HINT}") from None
        raise InputError(f"{path}: corrupt pickle; the file is damaged or not a PyTorch checkpoint: re-save or re-download it") from None
    except (AttributeError, ImportError) as e:
        # Only with --trust-pickle: the pickle names a class this Python cannot import.
        raise InputError(f"{path}: the pickled objects need code that is not importable here ({e.__class__.__name__}: {_first_line(e)}); import the defining package or re-save the state_dict()") from None
    except Exception as e:  # torch and its unpickler raise many types for a damaged file
        raise InputError(f"{path}: unreadable PyTorch file ({e.__class__.__name__}); it is truncated, corrupt or not a torch.save file: re-save or re-download it") from None


def _unsupported_global(message: str) -> str:
    for marker in ("Unsupported global: GLOBAL ", "unsupported GLOBAL "):
        if marker in message:
            rest = message.split(marker, 1)[1]
            return f" ({rest.split()[0].rstrip('.,')})"
    return ""


def _first_line(e: BaseException) -> str:
    text = str(e).strip().splitlines()
    return text[0][:200] if text else e.__class__.__name__


def _top_keys(obj: Any) -> str:
    if isinstance(obj, dict):
        return ", ".join(repr(k) for k in list(obj)[:10]) or "(none)"
    return f"(none: it is a {type(obj).__name__})"


def walk_tensors(obj: Any, prefix: str) -> Iterator[tuple[str, Any]]:
    """Every tensor in a nested checkpoint, named by its dotted path."""
    import torch

    if isinstance(obj, torch.Tensor):
        yield prefix or "tensor", obj
    elif isinstance(obj, dict):
        for k, v in obj.items():
            yield from walk_tensors(v, f"{prefix}.{k}" if prefix else str(k))
    elif isinstance(obj, (list, tuple)):
        for i, v in enumerate(obj):
            yield from walk_tensors(v, f"{prefix}.{i}" if prefix else str(i))
    elif isinstance(obj, torch.nn.Module):
        yield from walk_tensors(obj.state_dict(), prefix)


def _entries(tensors: list[tuple[str, Any]], model: int) -> list[TensorEntry]:
    entries = []
    for name, t in tensors:
        dtype = str(t.dtype).removeprefix("torch.")
        if dtype not in DTYPES:
            logger.warning("skipping %s: dtype %s is not supported", name, dtype)
            continue
        if t.layout != _strided() or t.is_quantized:
            logger.warning("skipping %s: only dense tensors are analysed", name)
            continue
        t = t.detach()
        storage = t.untyped_storage()
        if t.numel() == 0 or storage.nbytes() == 0:
            key = f"empty:{name}"
        else:
            # Views of one storage (a tensor, its transpose, a slice) are the
            # same bytes in the file, which saves the storage once, whole.
            key = f"storage:{storage.data_ptr()}"
        entries.append(TensorEntry(model, name, tuple(t.shape), dtype, key, _reader(t, dtype), storage.nbytes() or None))
    return entries


def _strided() -> Any:
    import torch

    return torch.strided


def _reader(t: Any, dtype: str):
    def read() -> np.ndarray:
        import torch

        c = t.resolve_conj().resolve_neg().contiguous()
        dt = DTYPES[dtype]
        if not dt.numpy_native:
            c = c.view(torch.int16 if dt.itemsize == 2 else torch.uint8)
        return c.numpy().view(dt.storage)

    return read
