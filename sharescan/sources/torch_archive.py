"""TorchScript and torch.export (.pt2) archives, read without running them.

``torch.jit.load`` runs the archive's TorchScript (``__setstate__`` and
friends) and ``torch.export.load`` unpickles parts of a .pt2 with
``weights_only=False``: either can run whatever the file holds. Here the
tensors come straight from the zip's records instead:

- TorchScript: ``data.pkl`` is read by an unpickler whose every global is an
  inert placeholder (class name, arguments and state recorded; no
  constructor, no ``__setstate__``) except a fixed list of tensor-rebuild
  functions; storages are zip records, memory-mapped when read. Modules are
  told apart, and their parameters and buffers named, from the class headers
  in ``code/`` (read as text, never run), in the order ``state_dict()`` uses.
- .pt2: the weights and constants configs are JSON naming a raw-bytes record,
  a dtype, sizes, strides and an offset for every tensor; pickled payloads
  (tensor subclasses, legacy weight files, opaque objects) are refused.

Anything outside these layouts is refused in one line, never run.
"""

from __future__ import annotations

import ast
import json
import logging
import math
import pickle
import re
import struct
import zipfile
import zlib
from collections import OrderedDict
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from sharescan.dtypes import DTYPES
from sharescan.errors import InputError
from sharescan.sources.files import MAX_ELEMENTS
from sharescan.sources.mapped import mapped_reader
from sharescan.table import LoadedModel, TensorEntry

__all__ = ["TensorView", "load_torchscript_archive", "load_pt2_archive", "view_entry", "read_checkpoint", "checkpoint_entries", "walk_tree", "check_checkpoint_records", "MAX_DEPTH", "MAX_TENSORS", "MAX_EXPANDED"]

logger = logging.getLogger(__name__)

MAX_DEPTH = 200  # module or container nesting beyond this is refused, not recursed into
MAX_TENSORS = 1_000_000  # tensors in one file beyond this are refused

_TRUST = "pass --trust-code to export/tie only if you trust where the file came from (loading it runs its code)"

# TorchScript names storages by c10's ScalarType names (torch.FloatStorage ...).
_STORAGE_DTYPES = {
    "Byte": "uint8", "Char": "int8", "Short": "int16", "Int": "int32", "Long": "int64",
    "Half": "float16", "Float": "float32", "Double": "float64", "Bool": "bool", "BFloat16": "bfloat16",
    "ComplexFloat": "complex64", "ComplexDouble": "complex128",
    "Float8_e4m3fn": "float8_e4m3fn", "Float8_e5m2": "float8_e5m2", "Float8_e4m3fnuz": "float8_e4m3fnuz",
    "Float8_e5m2fnuz": "float8_e5m2fnuz", "Float8_e8m0fnu": "float8_e8m0fnu",
    "UInt16": "uint16", "UInt32": "uint32", "UInt64": "uint64",
}  # fmt: skip

# torch._export.serde.schema.ScalarType, as .pt2 configs store it.
_SCHEMA_DTYPES = {
    1: "uint8", 2: "int8", 3: "int16", 4: "int32", 5: "int64", 6: "float16", 7: "float32", 8: "float64",
    10: "complex64", 11: "complex128", 12: "bool", 13: "bfloat16", 28: "uint16",
    29: "float8_e4m3fn", 30: "float8_e5m2", 31: "float8_e4m3fnuz", 32: "float8_e5m2fnuz", 33: "float8_e8m0fnu",
    34: "uint32", 35: "uint64",
}  # fmt: skip
_SCHEMA_UNANALYSED = {0, 9}  # unknown, complex32: written by torch, skipped here
_SCHEMA_STRIDED = 7  # torch._export.serde.schema.Layout.Strided


class _Sealed:
    """What this module hands to a pickle: its BUILD opcode may not rewrite the fields."""

    def __setstate__(self, state: Any) -> None:
        raise ValueError("a pickle tried to change a storage or tensor record")


@dataclass(frozen=True)
class _Record(_Sealed):
    """A stored (uncompressed) zip member: where its bytes lie in the file."""

    name: str
    offset: int
    nbytes: int


@dataclass(frozen=True)
class TensorView(_Sealed):
    """A strided view of a storage record, in elements of ``dtype``."""

    record: _Record
    dtype: str  # canonical name, or "" for a dtype sharescan does not analyse
    offset: int
    shape: tuple[int, ...]
    stride: tuple[int, ...]
    dtype_shown: str = ""  # the file's own name for an unsupported dtype


class _Archive:
    """Members of a zip file, with the offsets needed to map stored records."""

    def __init__(self, path: Path) -> None:
        self.path = path
        try:
            with zipfile.ZipFile(path) as z:
                self.infos = {i.filename: i for i in z.infolist()}
                self.size = path.stat().st_size
                self.headers = {}
                with path.open("rb") as f:
                    for name, info in self.infos.items():
                        f.seek(info.header_offset)
                        head = f.read(30)
                        if len(head) < 30 or head[:4] != b"PK\x03\x04":
                            raise zipfile.BadZipFile(name)
                        n, extra = struct.unpack("<HH", head[26:30])
                        self.headers[name] = info.header_offset + 30 + n + extra
        except (zipfile.BadZipFile, zipfile.LargeZipFile, OSError, ValueError, EOFError):
            raise InputError(f"{path}: not a readable zip archive (truncated or corrupt); re-save or re-download it") from None
        roots = {n.split("/", 1)[0] for n in self.infos if "/" in n}
        self.root = roots.pop() if len(roots) == 1 else ""

    def has(self, name: str) -> bool:
        return f"{self.root}/{name}" in self.infos

    def names(self) -> list[str]:
        prefix = f"{self.root}/"
        return [n[len(prefix):] for n in self.infos if n.startswith(prefix)]

    def read(self, name: str, limit: int = 256 << 20) -> bytes:
        info = self.infos.get(f"{self.root}/{name}")
        if info is None:
            raise InputError(f"{self.path}: archive lacks {name}; re-save it")
        if info.file_size > limit:
            raise InputError(f"{self.path}: {name} is {info.file_size:,} bytes, more than sharescan reads; re-save the model")
        try:
            with zipfile.ZipFile(self.path) as z:
                return z.read(info)
        except (zipfile.BadZipFile, OSError, EOFError, ValueError, NotImplementedError, RuntimeError, zlib.error):
            raise InputError(f"{self.path}: {name} is damaged (bad checksum or truncated); re-save or re-download it") from None

    def record(self, name: str) -> _Record:
        info = self.infos.get(f"{self.root}/{name}")
        if info is None:
            raise InputError(f"{self.path}: archive lacks the tensor data {name}; re-save or re-download it")
        if info.compress_type != zipfile.ZIP_STORED:
            raise InputError(f"{self.path}: tensor data {name} is compressed, which torch never writes; re-save it")
        offset = self.headers[info.filename]
        if offset + info.file_size > self.size:
            raise InputError(f"{self.path}: tensor data {name} runs past the end of the file (truncated); re-download it")
        return _Record(name, offset, info.file_size)


# -- TorchScript -------------------------------------------------------------


class _Opaque:
    """Whatever a pickle global builds, recorded and never run."""

    def __init__(self, qualname: str, args: tuple[Any, ...]) -> None:
        self.qualname = qualname
        self.args = args
        self.state: Any = None

    def __setstate__(self, state: Any) -> None:  # BUILD: record, never apply
        self.state = state


def _opaque_new(cls: Any, *args: Any) -> _Opaque:
    """Both ways a pickle builds an object (REDUCE calls the class, NEWOBJ its
    ``__new__``) end here and only record the call."""
    return _Opaque(cls.qualname, args)


@dataclass(frozen=True)
class _Storage(_Sealed):
    """A storage a pickle refers to: a data record and its element type."""

    record: _Record
    dtype: str  # canonical name, or "" for a dtype sharescan does not analyse
    dtype_shown: str


@dataclass(frozen=True)
class _StorageType(_Sealed):
    name: str  # "Float", "BFloat16", ...


def _rebuild_tensor(storage: Any, offset: Any, size: Any, stride: Any, *_: Any) -> TensorView:
    if not isinstance(storage, _Storage):
        raise ValueError("a tensor over something that is not a storage")
    return TensorView(storage.record, storage.dtype, int(offset), tuple(int(x) for x in size), tuple(int(x) for x in stride), storage.dtype_shown)


def _rebuild_parameter(data: Any, *_: Any) -> Any:
    return data


# Globals TorchScript's pickler writes besides tensors: its classes, typed
# containers, devices, complex numbers, other tensor kinds. Recorded, never called.
_INERT = re.compile(r"^(__torch__\.|torch\.jit\._pickle\.|torch\._utils\.)|^(torch\.device|builtins\.complex)$")


class _Refused(Exception):
    """A pickle names a global that only code-running payloads use."""


class _SafeUnpickler(pickle.Unpickler):
    """Tensors and plain data from a TorchScript pickle; every other global is inert."""

    def __init__(self, data: bytes, archive: _Archive, folder: str, storages: dict[str, _Storage]) -> None:
        import io

        super().__init__(io.BytesIO(data))
        self.archive = archive
        self.folder = folder  # where this pickle's storages are: data/ or constants/
        self.storages = storages

    def find_class(self, module: str, name: str) -> Any:
        qualname = f"{module}.{name}"
        if qualname in ("torch._utils._rebuild_tensor_v2", "torch._utils._rebuild_tensor"):
            return _rebuild_tensor
        if qualname in ("torch._utils._rebuild_parameter", "torch._utils._rebuild_parameter_with_state"):
            return _rebuild_parameter
        if qualname == "collections.OrderedDict":
            return OrderedDict
        if module == "torch" and name.endswith("Storage"):
            return _StorageType(name[: -len("Storage")])
        if not _INERT.match(qualname):
            # Only a payload names anything else: refuse the file rather than ignore it.
            raise _Refused(qualname)
        # A class of its own per name, so the recorded objects carry it.
        return type(name, (), {"__new__": _opaque_new, "qualname": qualname})

    def persistent_load(self, pid: Any) -> Any:
        if not (isinstance(pid, tuple) and len(pid) == 5 and pid[0] == "storage" and isinstance(pid[1], _StorageType)):
            raise ValueError("unknown persistent id")
        kind, key = pid[1].name, str(pid[2])
        if key not in self.storages:
            record = self.archive.record(f"{self.folder}/{key}")
            dtype = _STORAGE_DTYPES.get(kind, "")
            self.storages[key] = _Storage(record, dtype, kind)
        return self.storages[key]


def _unpickle(archive: _Archive, name: str, storages: dict[str, _Storage]) -> Any:
    data = archive.read(name)
    try:
        return _SafeUnpickler(data, archive, name.removesuffix(".pkl"), storages).load()
    except InputError:
        raise
    except _Refused as e:
        raise InputError(f"{archive.path}: {name} calls {e} when unpickled; sharescan does not run it: {_TRUST}") from None
    except Exception as e:  # a damaged pickle raises many types
        raise InputError(f"{archive.path}: {name} is not a pickle sharescan can read ({e.__class__.__name__}); re-save or re-download the archive") from None


_CLASS = re.compile(r"^class (\w+)\(Module\):\s*$")
_LIST = re.compile(r"^  (__parameters__|__buffers__) = (\[.*\])\s*$")


@dataclass
class _ModuleClass:
    parameters: list[str] = field(default_factory=list)
    buffers: list[str] = field(default_factory=list)
    setstate: bool = False


def _module_classes(archive: _Archive) -> dict[str, _ModuleClass]:
    """Module classes from the archive's code, read as text: parameter and buffer names."""
    classes: dict[str, _ModuleClass] = {}
    for name in archive.names():
        if not (name.startswith("code/") and name.endswith(".py")):
            continue
        module = name[len("code/") : -len(".py")].replace("/", ".")
        current: _ModuleClass | None = None
        for line in archive.read(name).decode("utf-8", "replace").splitlines():
            if line.startswith("class "):
                m = _CLASS.match(line)
                current = classes.setdefault(f"{module}.{m.group(1)}", _ModuleClass()) if m else None
            elif current is not None:
                m = _LIST.match(line)
                if m:
                    try:
                        names = ast.literal_eval(m.group(2))
                    except (ValueError, SyntaxError):
                        raise InputError(f"{archive.path}: {name} has a {m.group(1)} list sharescan cannot read; re-save it with torch.jit.save") from None
                    setattr(current, m.group(1).strip("_"), [str(n) for n in names])
                elif line.startswith("  def __setstate__("):
                    current.setstate = True
    return classes


def _torchscript_tensors(archive: _Archive) -> list[tuple[str, TensorView]]:
    storages: dict[str, _Storage] = {}
    root = _unpickle(archive, "data.pkl", storages)
    if archive.has("constants.pkl"):
        _unpickle(archive, "constants.pkl", {})  # checked, not used: constants are not state
    classes = _module_classes(archive)
    out: list[tuple[str, TensorView]] = []

    def module_of(obj: Any) -> _ModuleClass | None:
        return classes.get(obj.qualname) if isinstance(obj, _Opaque) else None

    if module_of(root) is None:
        raise InputError(f"{archive.path}: data.pkl does not hold a TorchScript module sharescan can read; re-save it with torch.jit.save")
    # An explicit stack: depth comes from the file and must not reach Python's
    # recursion limit. Like state_dict(), a submodule reached by two paths is
    # named under both; visits are bounded so a file cannot make that explode.
    stack: list[tuple[Any, str, tuple[int, ...]]] = [(root, "", ())]
    visits = 0
    while stack:
        obj, prefix, ancestors = stack.pop()
        visits += 1
        if len(ancestors) > MAX_DEPTH or visits > MAX_TENSORS:
            raise InputError(f"{archive.path}: modules nested more than {MAX_DEPTH} deep or reached more than {MAX_TENSORS:,} times; sharescan refuses it (re-save the model's state_dict)")
        if id(obj) in ancestors:
            raise InputError(f"{archive.path}: module {prefix.rstrip('.')} contains itself; re-save the model with torch.jit.save")
        cls = module_of(obj)
        assert cls is not None
        state = obj.state
        if cls.setstate or not isinstance(state, dict) or obj.args:
            raise InputError(f"{archive.path}: module {obj.qualname.removeprefix('__torch__.')} sets its state with its own code (__setstate__); sharescan does not run it: {_TRUST}")
        for names in (cls.parameters, cls.buffers):
            for key, value in state.items():
                if key not in names or value is None:
                    continue
                if not isinstance(value, TensorView):
                    raise InputError(f"{archive.path}: {prefix}{key} is not a plain tensor ({type(value).__name__}); sharescan cannot read it without running code: {_TRUST}")
                out.append((f"{prefix}{key}", value))
                if len(out) > MAX_TENSORS:
                    raise InputError(f"{archive.path}: more than {MAX_TENSORS:,} tensors; sharescan refuses it (split the model)")
        inner = (*ancestors, id(obj))
        children = [(v, f"{prefix}{k}.", inner) for k, v in state.items() if module_of(v) is not None]
        stack.extend(reversed(children))
    return out


def load_torchscript_archive(path: Path, model: int) -> LoadedModel:
    """A TorchScript archive's ``state_dict()`` tensors, read from its records."""
    archive = _Archive(path)
    if not archive.has("data.pkl"):
        raise InputError(f"{path}: not a TorchScript archive (no data.pkl); re-save it with torch.jit.save")
    _check_byteorder(archive)
    tensors = _torchscript_tensors(archive)
    return LoadedModel(str(path), "torchscript", tuple(_entries(path, tensors, model)), path.stat().st_size, files=(str(path),))


# -- torch.export ----------------------------------------------------------------


def load_pt2_archive(path: Path, model: int) -> LoadedModel:
    """A .pt2 program's state_dict and tensor constants, from the raw records its configs name."""
    archive = _Archive(path)
    names = archive.names()
    programs = sorted(n[len("models/") : -len(".json")] for n in names if n.startswith("models/") and n.endswith(".json"))
    if not programs:
        raise InputError(f"{path}: not a torch.export archive (no models/*.json); re-save it with torch.export.save")
    _check_byteorder(archive)
    tensors: list[tuple[str, TensorView]] = []
    for program in programs:
        prefix = "" if len(programs) == 1 else f"{program}."
        for folder, kind in (("weights", "weights"), ("constants", "constants")):
            if archive.has(f"data/{folder}/{program}.pt"):
                raise InputError(f"{path}: {kind} in the legacy pickled layout; sharescan does not unpickle them: re-save with a current torch.export.save, or {_TRUST}")
            config_name = f"data/{folder}/{program}_{kind}_config.json"
            if not archive.has(config_name):
                raise InputError(f"{path}: archive lacks {config_name}; re-save it with torch.export.save")
            tensors += _pt2_config(archive, config_name, folder, prefix)
        if archive.has(f"data/sample_inputs/{program}.pt"):
            _check_sample_inputs(archive, f"data/sample_inputs/{program}.pt")
    return LoadedModel(str(path), "torch.export", tuple(_entries(path, tensors, model)), path.stat().st_size, files=(str(path),))


def _pt2_config(archive: _Archive, config_name: str, folder: str, prefix: str) -> list[tuple[str, TensorView]]:
    try:
        config = json.loads(archive.read(config_name, limit=64 << 20))["config"]
        items = list(config.items())
    except (ValueError, KeyError, TypeError, AttributeError, RecursionError):
        raise InputError(f"{archive.path}: {config_name} is not a payload config sharescan can read; re-save it with torch.export.save") from None
    out = []
    for fqn, meta in items:
        try:
            path_name = str(meta["path_name"])
            if meta.get("use_pickle"):
                raise InputError(f"{archive.path}: {fqn} is pickled (loading it runs code); sharescan does not unpickle it: {_TRUST}")
            if folder == "constants" and path_name.startswith(("custom_obj_", "opaque")):
                continue  # script and opaque objects: not tensors, not read
            if folder == "constants" and not path_name.startswith("tensor_"):
                raise InputError(f"{archive.path}: constant {fqn!r} is stored as {path_name!r}, which torch.export does not write; re-save it with torch.export.save")
            tm = meta["tensor_meta"]
            if tm.get("layout", _SCHEMA_STRIDED) != _SCHEMA_STRIDED:
                logger.warning("skipping %s: only dense tensors are analysed", fqn)
                continue
            code = int(tm["dtype"])
            if code not in _SCHEMA_DTYPES and code not in _SCHEMA_UNANALYSED:
                raise InputError(f"{archive.path}: {fqn} has dtype code {code}, which torch.export does not write; re-save it with torch.export.save")
            shape = tuple(int(s["as_int"]) for s in tm["sizes"])
            stride = tuple(int(s["as_int"]) for s in tm["strides"])
            offset = int(tm["storage_offset"]["as_int"])
        except InputError:
            raise
        except (KeyError, TypeError, ValueError, AttributeError):
            raise InputError(f"{archive.path}: {config_name} entry {fqn!r} is not a plain tensor with fixed sizes; re-save it with torch.export.save") from None
        record = archive.record(f"data/{folder}/{path_name}")
        out.append((f"{prefix}{fqn}", TensorView(record, _SCHEMA_DTYPES.get(code, ""), offset, shape, stride, f"ScalarType {code}")))
        if len(out) > MAX_TENSORS:
            raise InputError(f"{archive.path}: more than {MAX_TENSORS:,} tensors; sharescan refuses it (split the model)")
    return out


def _check_sample_inputs(archive: _Archive, name: str) -> None:
    """torch.export.load unpickles sample inputs without restriction when the
    weights-only unpickler refuses them: such a file runs code when loaded."""
    import io

    import torch

    try:
        torch.load(io.BytesIO(archive.read(name)), weights_only=True, map_location="cpu")
    except InputError:
        raise
    except Exception:  # the weights-only unpickler raises many types for what it refuses
        raise InputError(f"{archive.path}: {name} holds pickled objects that loading the program would run; sharescan does not unpickle them: {_TRUST}") from None


# -- shared ------------------------------------------------------------------


def _check_byteorder(archive: _Archive) -> None:
    if archive.has("byteorder") and archive.read("byteorder", limit=64).strip() != b"little":
        raise InputError(f"{archive.path}: written on a big-endian machine; re-save it on a little-endian one")


def _entries(path: Path, tensors: list[tuple[str, TensorView]], model: int) -> Iterator[TensorEntry]:
    for name, view in tensors:
        if not view.dtype:
            logger.warning("skipping %s: dtype %s is not supported", name, view.dtype_shown)
            continue
        yield view_entry(path, name, view, model)


def view_entry(path: Path, name: str, view: TensorView, model: int) -> TensorEntry:
    """One view of a record as a table entry: its own elements, its own byte span."""
    dt = DTYPES[view.dtype]
    item = dt.itemsize
    if len(view.shape) != len(view.stride) or any(s < 0 for s in view.shape + view.stride) or view.offset < 0:
        raise InputError(f"{path}: tensor {name} has an invalid layout (sizes {view.shape}, strides {view.stride}); re-save the model")
    _check_shape(path, name, view.shape)
    numel = math.prod(view.shape)  # Python ints: a hostile shape cannot overflow
    last = view.offset + sum((n - 1) * s for n, s in zip(view.shape, view.stride)) if numel else view.offset - 1
    if (last + 1) * item > view.record.nbytes:
        raise InputError(f"{path}: tensor {name} reaches past its data record {view.record.name} (truncated or corrupt); re-save or re-download it")
    span = (view.offset * item, (last + 1) * item) if numel else (0, 0)
    key = f"{view.record.name}@{view.offset}:{view.shape}:{view.stride}:{view.dtype}"
    return TensorEntry(model, name, view.shape, view.dtype, key, _view_reader(path, view, dt.storage, numel, last),
                       view.record.nbytes, buffer=view.record.name, span=span)  # fmt: skip


def _check_shape(path: Path, name: str, shape: tuple[int, ...]) -> None:
    """Refuse a shape numpy cannot hold, even empty (its dims other than the zeros too large)."""
    if math.prod(max(n, 1) for n in shape) > MAX_ELEMENTS:
        raise InputError(f"{path}: tensor {name} has an impossible shape {list(shape)}; the file is corrupt: re-save the model")


def _contiguous(shape: tuple[int, ...], stride: tuple[int, ...]) -> bool:
    expected = 1
    for n, s in zip(reversed(shape), reversed(stride)):
        if n != 1 and s != expected:
            return False
        expected *= n
    return True


def _view_reader(path: Path, view: TensorView, storage: str, numel: int, last: int):  # type: ignore[no-untyped-def]
    item = np.dtype(storage).itemsize
    if numel and _contiguous(view.shape, view.stride):
        # One run of bytes in the file: mapped as is, and streamable by a scan.
        return mapped_reader(path, view.record.offset + view.offset * item, storage, view.shape)
    count = last - view.offset + 1 if numel else 0
    window = mapped_reader(path, view.record.offset + view.offset * item, storage, (count,))

    def read() -> np.ndarray:
        if numel == 0:
            return np.zeros(view.shape, dtype=storage)
        flat = window()
        strided = np.lib.stride_tricks.as_strided(flat, view.shape, tuple(s * item for s in view.stride), writeable=False)
        return np.ascontiguousarray(strided)

    return read


# -- zip checkpoints (torch.save) ---------------------------------------------


def check_checkpoint_records(path: Path) -> None:
    """Refuse a zip checkpoint whose tensors reach past their data records.

    ``torch.load(mmap=True)`` maps each storage from the file without checking
    that the record holds ``numel`` elements of the storage's type: a damaged
    or hostile ``data.pkl`` would read the bytes of other records. The pickle
    is walked here with the same inert unpickler (nothing runs) and every view
    checked against its record. Globals this reader does not know (numpy
    scalars and the like) end the check quietly: ``torch.load`` with
    ``weights_only=True`` then decides whether the file is safe to load.
    """
    archive = _Archive(path)
    if not archive.has("data.pkl"):
        return
    data = archive.read("data.pkl")
    try:
        obj = _SafeUnpickler(data, archive, "data", {}).load()
    except InputError:
        raise
    except Exception:  # refused globals, odd layouts: torch.load's own checks follow
        return
    seen: set[int] = set()
    stack = [(obj, "")]
    while stack:
        item, name = stack.pop()
        if id(item) in seen:
            continue
        seen.add(id(item))
        if isinstance(item, TensorView):
            if item.dtype:
                view_entry(path, name or "tensor", item, 0)
            continue
        if isinstance(item, dict):
            stack.extend((v, f"{name}.{k}" if name else str(k)) for k, v in item.items())
        elif isinstance(item, (list, tuple)):
            stack.extend((v, f"{name}.{k}" if name else str(k)) for k, v in enumerate(item))
        elif isinstance(item, _Opaque):
            stack.extend((v, name) for v in (item.args, item.state))


# -- zip checkpoints read without torch ----------------------------------------


class _CheckpointUnpickler(_SafeUnpickler):
    """A ``torch.save`` pickle read with no code run: tensors, storages and
    containers. Anything a plain state dict does not hold (a tensor with
    hooks or extra state, an inert object) clears ``plain``: such a file is
    left to ``torch.load``, which decides whether it is safe."""

    def __init__(self, data: bytes, archive: _Archive) -> None:
        super().__init__(data, archive, "data", {})
        self.plain = True

    def find_class(self, module: str, name: str) -> Any:
        qualname = f"{module}.{name}"
        if qualname == "torch._utils._rebuild_tensor_v2":
            return self._rebuild_tensor_v2
        if qualname == "torch._utils._rebuild_parameter_with_state":
            return self._rebuild_parameter_with_state
        return super().find_class(module, name)

    def persistent_load(self, pid: Any) -> Any:
        storage = super().persistent_load(pid)
        # torch.save records each storage's element count; anything but the
        # record's exact size (negative, past the data, not an int) is for
        # torch.load to judge, as before.
        numel = pid[4]
        size = numel * DTYPES[storage.dtype].itemsize if storage.dtype and type(numel) is int else None
        if size is None or numel < 0 or size != storage.record.nbytes:
            self.plain = False
        return storage

    def _rebuild_tensor_v2(self, storage: Any, offset: Any, size: Any, stride: Any, requires_grad: Any = False, hooks: Any = None, *extra: Any) -> TensorView:
        if hooks or any(extra):  # backward hooks, or metadata (conj/neg bits and the like) torch would apply
            self.plain = False
        return _rebuild_tensor(storage, offset, size, stride)

    def _rebuild_parameter_with_state(self, data: Any, requires_grad: Any, hooks: Any, state: Any = None) -> Any:
        if hooks or state:
            self.plain = False
        return data


# What a plain checkpoint holds besides tensors and containers.
_PLAIN = (str, bytes, int, float, bool, type(None))


def read_checkpoint(path: Path) -> Any | None:
    """The object a ``torch.save`` zip archive holds, its tensors as views of
    the archive's records (memory-mapped when read); None when the file needs
    ``torch.load`` to decide (other objects, a big-endian file).

    Nothing in the pickle runs: every global is a fixed tensor-rebuild
    function or an inert record, as for TorchScript. A view that reaches past
    its record is refused here, as :func:`check_checkpoint_records` does.
    """
    archive = _Archive(path)
    if not archive.has("data.pkl"):
        return None
    if archive.has("byteorder") and archive.read("byteorder", limit=64).strip() != b"little":
        return None
    unpickler = _CheckpointUnpickler(archive.read("data.pkl"), archive)
    try:
        obj = unpickler.load()
    except InputError:
        raise
    except Exception:  # refused globals, odd layouts: torch.load's own checks follow
        return None
    if not unpickler.plain:
        return None
    seen: set[int] = set()
    stack = [obj]
    while stack:
        item = stack.pop()
        if isinstance(item, TensorView) or isinstance(item, _PLAIN):
            continue
        if not isinstance(item, (dict, list, tuple)):
            return None  # an inert object, a bare storage: torch.load decides
        if id(item) in seen:
            continue
        seen.add(id(item))
        stack.extend(item.values() if isinstance(item, dict) else item)
    return obj


def walk_tree(obj: Any, prefix: str, source: str, is_tensor: Callable[[Any], bool], unwrap: Callable[[Any], Any] = lambda x: x) -> Iterator[tuple[str, Any]]:
    """Every tensor in a nested checkpoint, named by its dotted path.

    Each container is entered once, under the first name that reaches it (a
    checkpoint can share one tuple many times over: walking every path would
    take exponential time). A tensor named twice in one container (tied
    weights) keeps both names: they are aliases. A container that contains itself,
    nesting deeper than MAX_DEPTH or more than MAX_TENSORS tensors is refused.
    ``unwrap`` turns an object into the container to walk (a module into its
    state dict).
    """
    seen: set[int] = set()
    count = 0
    # (object, name, ids of the containers above it): an explicit stack, so
    # depth from the file never meets Python's recursion limit.
    stack: list[tuple[Any, str, frozenset[int]]] = [(obj, prefix, frozenset())]
    while stack:
        item, name, above = stack.pop()
        item = unwrap(item)
        if is_tensor(item):
            count += 1
            if count > MAX_TENSORS:
                raise InputError(f"{source}: more than {MAX_TENSORS:,} tensors; sharescan refuses it (split the checkpoint, or --key one part)")
            yield name or "tensor", item
            continue
        if isinstance(item, dict):
            children = [(v, f"{name}.{k}" if name else str(k)) for k, v in item.items()]
        elif isinstance(item, (list, tuple)):
            children = [(v, f"{name}.{i}" if name else str(i)) for i, v in enumerate(item)]
        else:
            continue
        if id(item) in above:
            raise InputError(f"{source}: {name or 'the checkpoint'} contains itself; re-save a plain state_dict()")
        if id(item) in seen:
            continue
        seen.add(id(item))
        if len(above) >= MAX_DEPTH:
            raise InputError(f"{source}: nested more than {MAX_DEPTH} deep at {name[:80]}...; re-save a flat state_dict()")
        inner = above | {id(item)}
        stack.extend((v, n, inner) for v, n in reversed(children))


# An expanded view larger than this and than 16x its storage is refused.
MAX_EXPANDED = 1 << 30


def checkpoint_entries(path: Path, tensors: list[tuple[str, TensorView]], model: int) -> list[TensorEntry]:
    """Table entries for the views of a checkpoint read by :func:`read_checkpoint`,
    keyed as ``torch.load``'s tensors are: views reading the same bytes the same way share a key."""
    entries = []
    for name, view in tensors:
        if not view.dtype:
            logger.warning("skipping %s: dtype %s is not supported", name, view.dtype_shown)
            continue
        _check_shape(path, name, view.shape)
        numel = math.prod(view.shape)
        if numel == 0:
            entries.append(TensorEntry(model, name, view.shape, view.dtype, f"empty:{name}", _empty_reader(view.shape, DTYPES[view.dtype].storage), 0, buffer=f"empty:{name}", span=(0, 0)))
            continue
        if numel * DTYPES[view.dtype].itemsize > max(MAX_EXPANDED, 16 * view.record.nbytes):
            # A zero-stride (expanded) view can name far more elements than
            # its storage holds; reading it would materialise all of them.
            raise InputError(f"{path}: tensor {name} is a view of {numel:,} elements over a {view.record.nbytes:,}-byte storage (expanded); sharescan does not materialise it: re-save the tensor with .contiguous()")
        entries.append(view_entry(path, name, view, model))
    return entries


def _empty_reader(shape: tuple[int, ...], storage: str) -> Callable[[], np.ndarray]:
    def read() -> np.ndarray:
        return np.zeros(shape, dtype=storage)

    return read
