"""PyTorch files: pickled state dicts and checkpoints, TorchScript, torch.export.

Pickles are loaded with ``weights_only=True`` (and memory-mapped where the
file is a zip archive), so a file cannot run code unless the user opts in
with ``trust_pickle``. TorchScript and .pt2 archives are read from their
records by :mod:`sharescan.sources.torch_archive`, never run. Each view of a
storage is a tensor of its own; views that read the same bytes the same way
keep one storage key: they are already shared, not duplicated.
"""

from __future__ import annotations

import logging
import pickle
import zipfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

from sharescan.dtypes import DTYPES
from sharescan.errors import InputError, one_line
from sharescan.sources.torch_archive import MAX_EXPANDED
from sharescan.table import LoadedModel, TensorEntry

__all__ = ["load_pytorch", "load_torchscript", "load_torch_export", "is_torchscript", "torch_load", "walk_tensors", "first_line", "needs_torch", "TRUST_HINT", "TORCH_EXTRA"]

logger = logging.getLogger(__name__)

TRUST_HINT = "pass --trust-code (or --trust-pickle) only if you trust where the file came from (loading it runs code)"

# torch is an optional extra: the base install reads ONNX and safetensors only.
TORCH_EXTRA = "pip install 'sharescan[torch]'"


@contextmanager
def needs_torch(what: str) -> Iterator[None]:
    """Turn torch missing from this environment into one line naming the extra.

    Only the import of torch itself is translated: a module missing from
    inside an installed torch is a broken install, not a missing extra.
    """
    try:
        yield
    except ModuleNotFoundError as e:
        if e.name != "torch":
            raise
        raise InputError(f"{what} needs torch: {TORCH_EXTRA}") from None


def is_torchscript(path: Path) -> bool:
    """TorchScript archives are zip files with serialized code beside the data."""
    try:
        with zipfile.ZipFile(path) as z:
            return any(n.endswith("/constants.pkl") or "/code/" in n for n in z.namelist())
    except (zipfile.BadZipFile, OSError):
        return False


def load_pytorch(path: Path, model: int, key: str | None = None, trust_pickle: bool = False) -> LoadedModel:
    if zipfile.is_zipfile(path):
        from sharescan.sources import torch_archive

        # A plain state dict (tensors in containers) is read from the archive's
        # records without torch: nothing is unpickled into tensors, nothing
        # copied, and each tensor is mapped (or streamed) only when read.
        found = torch_archive.read_checkpoint(path)
        if found is not None:
            _torch_installed(path)
            obj = _select(found, key, path)
            views = list(torch_archive.walk_tree(obj, "", str(path), lambda x: isinstance(x, torch_archive.TensorView)))
            return LoadedModel(str(path), "pytorch", tuple(torch_archive.checkpoint_entries(path, views, model)), path.stat().st_size, files=(str(path),))
        torch_archive.check_checkpoint_records(path)
    elif _zip_magic(path):
        # A zip whose end (the central directory) is missing: a cut copy of a
        # torch.save file. Said here, without importing torch (seconds in a
        # zoo's worker) to have torch.load say the same.
        raise InputError(f"{path}: truncated PyTorch file (a zip archive without its central directory); re-save or re-download it")
    with needs_torch(f"{path}: reading PyTorch files"):
        import torch
    obj = torch_load(path, trust_pickle)
    if isinstance(obj, torch.nn.Module):
        obj = obj.state_dict()
    obj = _select(obj, key, path)
    tensors = list(walk_tensors(obj, "", str(path)))
    return LoadedModel(str(path), "pytorch", tuple(_entries(tensors, model, str(path))), path.stat().st_size, files=(str(path),))


def _zip_magic(path: Path) -> bool:
    with path.open("rb") as f:
        return f.read(4) == b"PK\x03\x04"


def _torch_installed(path: Path) -> None:
    """PyTorch files need the torch extra, even those read without importing it:
    one rule for every PyTorch file, whatever it holds."""
    import importlib.util

    try:
        found = importlib.util.find_spec("torch") is not None
    except (ImportError, ValueError):  # torch set to None in sys.modules, or a broken entry there
        found = False
    if not found:
        raise InputError(f"{path}: reading PyTorch files needs torch: {TORCH_EXTRA}")


def _select(obj: Any, key: str | None, path: Path) -> Any:
    """The part of a checkpoint ``key`` names (dotted: dict keys and list indices)."""
    if not key:
        return obj
    for part in key.split("."):
        if isinstance(obj, dict) and part in obj:
            obj = obj[part]
        elif isinstance(obj, (list, tuple)) and part.isdigit() and int(part) < len(obj):
            obj = obj[int(part)]
        else:
            raise InputError(f"{path}: no entry {key!r} in the checkpoint; its top-level keys are {_top_keys(obj)}")
    return obj


def load_torchscript(path: Path, model: int) -> LoadedModel:
    from sharescan.sources.torch_archive import load_torchscript_archive

    return load_torchscript_archive(path, model)


def load_torch_export(path: Path, model: int) -> LoadedModel:
    from sharescan.sources.torch_archive import load_pt2_archive

    with needs_torch(f"{path}: reading PyTorch files"):  # its sample inputs are checked with torch's weights-only unpickler
        return load_pt2_archive(path, model)


def torch_load(path: Path, trust_pickle: bool) -> Any:
    with needs_torch(f"{path}: reading PyTorch files"):
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
            raise InputError(f"{path}: holds pickled Python objects{culprit}, not just tensors; re-save its state_dict(), or {TRUST_HINT}") from None
        raise InputError(f"{path}: corrupt pickle; the file is damaged or not a PyTorch checkpoint: re-save or re-download it") from None
    except RecursionError:
        raise InputError(f"{path}: nested too deep to unpickle (or it contains itself); re-save a flat state_dict()") from None
    except (AttributeError, ImportError) as e:
        # Only with --trust-pickle: the pickle names a class this Python cannot import.
        raise InputError(f"{path}: the pickled objects need code that is not importable here ({e.__class__.__name__}: {first_line(e)}); import the defining package or re-save the state_dict()") from None
    except Exception as e:  # torch and its unpickler raise many types for a damaged file
        raise InputError(f"{path}: unreadable PyTorch file ({e.__class__.__name__}); it is truncated, corrupt or not a torch.save file: re-save or re-download it") from None


def _unsupported_global(message: str) -> str:
    for marker in ("Unsupported global: GLOBAL ", "unsupported GLOBAL "):
        if marker in message:
            rest = message.split(marker, 1)[1]
            return f" ({rest.split()[0].rstrip('.,')})"
    return ""


def first_line(e: BaseException) -> str:
    return one_line(e) or e.__class__.__name__


def _top_keys(obj: Any) -> str:
    if isinstance(obj, dict):
        return ", ".join(repr(k) for k in list(obj)[:10]) or "(none)"
    return f"(none: it is a {type(obj).__name__})"


def walk_tensors(obj: Any, prefix: str, source: str = "checkpoint") -> Iterator[tuple[str, Any]]:
    """Every tensor in a nested checkpoint of torch objects, named by its dotted
    path (:func:`sharescan.sources.torch_archive.walk_tree`); modules are
    walked as their state dicts."""
    import torch

    from sharescan.sources.torch_archive import walk_tree

    def unwrap(item: Any) -> Any:
        return item.state_dict() if isinstance(item, torch.nn.Module) else item

    return walk_tree(obj, prefix, source, lambda x: isinstance(x, torch.Tensor), unwrap)




def _entries(tensors: list[tuple[str, Any]], model: int, source: str) -> list[TensorEntry]:
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
        shape, stride, offset = tuple(t.shape), tuple(t.stride()), t.storage_offset()
        if t.numel() == 0 or storage.nbytes() == 0:
            entries.append(TensorEntry(model, name, shape, dtype, f"empty:{name}", _reader(t, dtype), 0, buffer=f"empty:{name}", span=(0, 0)))
            continue
        # A view is a tensor of its own; only views reading the same bytes the
        # same way (offset, shape, stride, dtype) are one tensor. The file
        # saves each storage once, whole: that is the buffer counted once.
        item = DTYPES[dtype].itemsize
        if t.numel() * item > max(MAX_EXPANDED, 16 * storage.nbytes()):
            # A zero-stride (expanded) view can name far more elements than
            # its storage holds; reading it would materialise all of them.
            raise InputError(f"{source}: tensor {name} is a view of {t.numel():,} elements over a {storage.nbytes():,}-byte storage (expanded); sharescan does not materialise it: re-save the tensor with .contiguous()")
        last = offset + sum((n - 1) * s for n, s in zip(shape, stride))
        buffer = f"storage:{storage.data_ptr()}"
        key = f"{buffer}@{offset}:{shape}:{stride}:{dtype}"
        entries.append(TensorEntry(model, name, shape, dtype, key, _reader(t, dtype), storage.nbytes(), buffer=buffer, span=(offset * item, (last + 1) * item)))
    return entries


def _strided() -> Any:
    import torch

    return torch.strided


def _reader(t: Any, dtype: str) -> Callable[[], np.ndarray]:
    def read() -> np.ndarray:
        import torch

        c = t.resolve_conj().resolve_neg().contiguous()
        dt = DTYPES[dtype]
        if not dt.numpy_native:
            c = c.view(torch.int16 if dt.itemsize == 2 else torch.uint8)
        return c.numpy().view(dt.storage)

    return read
