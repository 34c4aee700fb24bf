"""Hostile pickles, and the archive slots they are planted in.

Every code payload, if it ever runs, creates the marker file it is given: a
run that leaves the marker behind has executed code from the file. Structure
payloads use only what a weights-only unpickler allows (dicts, lists, tuples)
but are shaped to make a naive walk hang or overflow the stack.
"""

from __future__ import annotations

import io
import json
import pickle
import struct
import zipfile
from pathlib import Path

__all__ = ["CODE_PAYLOADS", "STRUCT_PAYLOADS", "payload", "legacy_pt", "replace_members", "LEGACY_MAGIC"]

LEGACY_MAGIC = 0x1950A86A20F9469CFC6C  # torch's legacy (pre-zip) file magic
CODE_PAYLOADS = ("os_system", "exec", "eval", "subprocess", "torch_from_file")
STRUCT_PAYLOADS = ("dag60", "selfref", "deep5000", "deepdict5000")


def _body(obj: object) -> bytes:
    """The opcodes of ``obj`` without the PROTO header and the STOP."""
    data = pickle.dumps(obj, protocol=2)
    assert data[:2] == b"\x80\x02" and data[-1:] == b"."
    return data[2:-1]


def _call(module: str, name: str, args: tuple) -> bytes:
    """GLOBAL module.name, an argument tuple, REDUCE: ``module.name(*args)``."""
    return b"c" + module.encode() + b"\n" + name.encode() + b"\n" + _body(args) + b"R"


def _code(kind: str, marker: Path) -> bytes:
    m = str(marker)
    if kind == "os_system":
        return _call("posix", "system", (f"touch '{m}'",))
    if kind == "exec":
        return _call("builtins", "exec", (f"open({m!r}, 'w').close()",))
    if kind == "eval":
        return _call("builtins", "eval", (f"__import__('os').system(\"touch '{m}'\")",))
    if kind == "subprocess":
        return _call("subprocess", "call", (["touch", m],))
    if kind == "torch_from_file":
        # shared=True opens the file read-write and creates it: the marker appears.
        return _call("torch", "from_file", (m, True, 16))
    raise ValueError(kind)


def _structure(kind: str) -> bytes:
    if kind == "dag60":
        # 60 levels of a tuple holding the level below twice: 2**60 leaves if walked as a tree.
        t: tuple = (1.0,)
        for _ in range(60):
            t = (t, t)
        return _body(t)
    if kind == "selfref":
        loop: list = []
        loop.append(loop)
        return _body({"inner": loop, "again": [loop, loop]})
    if kind == "deep5000":
        return b"]" * 5000 + b"a" * 4999  # 5,000 nested lists, built without recursion
    if kind == "deepdict5000":
        # {"k": {"k": ... {}}}: open 5,000 dicts, then set each into its parent
        return b"}" + (b"X\x01\x00\x00\x00k}") * 4999 + b"s" * 4999
    raise ValueError(kind)


def payload(kind: str, marker: Path) -> bytes:
    """A whole pickle: ``{"weight": <payload>}``."""
    inner = _code(kind, marker) if kind in CODE_PAYLOADS else _structure(kind)
    return b"\x80\x02}X" + struct.pack("<I", 6) + b"weight" + inner + b"s."


def legacy_pt(slot: str, body: bytes) -> bytes:
    """A legacy (non-zip) torch.save file: magic, protocol, sys info, object, storage keys.
    ``slot`` names which of these pickles is ``body``."""
    sys_info = {"protocol_version": 1001, "little_endian": True, "type_sizes": {"short": 2, "int": 4, "long": 4}}
    parts = {"magic": pickle.dumps(LEGACY_MAGIC, protocol=2), "protocol": pickle.dumps(1001, protocol=2), "sys_info": pickle.dumps(sys_info, protocol=2), "object": pickle.dumps({}, protocol=2), "keys": pickle.dumps([], protocol=2)}
    parts[slot] = body
    return b"".join(parts.values())


def replace_members(src: bytes, new: dict[str, bytes]) -> bytes:
    """The zip archive ``src`` with members whose names end in a key of ``new``
    replaced by its value (stored uncompressed, like torch writes them)."""
    out = io.BytesIO()
    hit = set()
    with zipfile.ZipFile(io.BytesIO(src)) as zin, zipfile.ZipFile(out, "w") as zout:
        for info in zin.infolist():
            data = zin.read(info)
            for suffix, value in new.items():
                if info.filename.endswith(suffix):
                    data, hit = value, hit | {suffix}
            zout.writestr(info.filename, data)
    missing = set(new) - hit
    assert not missing, f"no member ends in {missing}"
    return out.getvalue()


def pt2_pickled_weight(src: bytes, body: bytes) -> bytes:
    """A .pt2 archive whose first weight is a pickle the config says to unpickle."""
    with zipfile.ZipFile(io.BytesIO(src)) as z:
        name = next(n for n in z.namelist() if n.endswith("model_weights_config.json"))
        config = json.loads(z.read(name))
    first = next(iter(config["config"].values()))
    first["use_pickle"] = True
    return replace_members(src, {"model_weights_config.json": json.dumps(config).encode(), "/" + first["path_name"]: body})


def pt2_pickled_constant(src: bytes, body: bytes) -> bytes:
    """A .pt2 archive with an extra pickled constant in its constants config."""
    meta = {"dtype": 7, "sizes": [{"as_int": 4}], "requires_grad": False, "device": {"type": "cpu", "index": None}, "strides": [{"as_int": 1}], "storage_offset": {"as_int": 0}, "layout": 7}
    config = {"config": {"c0": {"path_name": "constant_0", "is_param": False, "use_pickle": True, "tensor_meta": meta}}}
    out = io.BytesIO()
    with zipfile.ZipFile(io.BytesIO(src)) as zin, zipfile.ZipFile(out, "w") as zout:
        for info in zin.infolist():
            data = zin.read(info)
            if info.filename.endswith("model_constants_config.json"):
                data = json.dumps(config).encode()
                zout.writestr(info.filename.rsplit("/", 1)[0] + "/constant_0", body)
            zout.writestr(info.filename, data)
    return out.getvalue()


def tensor_views(kind: str) -> bytes:
    """A zip-.pt data.pkl (protocol 2, as torch writes it) whose one tensor is
    rebuilt over mlp.pt's storage ``data/0`` (4,096 float32) with a damaged view.
    Only what a weights-only unpickler allows: _rebuild_tensor_v2, FloatStorage."""
    import collections

    import torch

    # kind -> (storage key, storage numel, storage type, offset, size, stride)
    views = {
        "offset_past_storage": ("0", 4096, "FloatStorage", 10**6, (4,), (1,)),
        "size_past_storage": ("0", 4096, "FloatStorage", 0, (10**6,), (1,)),
        "negative_stride": ("0", 4096, "FloatStorage", 4095, (16,), (-1,)),
        "negative_size": ("0", 4096, "FloatStorage", 0, (-4,), (1,)),
        "expand_bomb": ("0", 4096, "FloatStorage", 0, (2**31, 2**31), (0, 0)),
        "zero_stride_view": ("0", 4096, "FloatStorage", 0, (64, 64), (0, 1)),
        "overlapping_view": ("0", 4096, "FloatStorage", 0, (64, 64), (1, 1)),
        "numel_past_data": ("0", 2**40, "FloatStorage", 0, (4,), (1,)),
        "numel_negative": ("0", -5, "FloatStorage", 0, (4,), (1,)),
        "key_missing": ("99", 16, "FloatStorage", 0, (4,), (1,)),
        "key_dotdot": ("../../../../etc/hostname", 1, "ByteStorage", 0, (1,), (1,)),
        "dtype_bigger_than_data": ("5", 10, "DoubleStorage", 0, (10,), (1,)),
        "zero_size_huge_dims": ("0", 4096, "FloatStorage", 0, (2**60, 0, 3), (0, 3, 1)),
    }
    key, numel, storage_type, offset, size, stride = views[kind]

    class Storage:
        pass

    storage = Storage()

    class View:
        def __reduce__(self):  # noqa: ANN204 - pickling protocol
            return (torch._utils._rebuild_tensor_v2, (storage, offset, size, stride, False, collections.OrderedDict()))

    class Pickler(pickle.Pickler):
        def persistent_id(self, obj: object) -> object:
            if obj is storage:
                return ("storage", getattr(torch, storage_type), key, "cpu", numel)
            return None

    out = io.BytesIO()
    Pickler(out, protocol=2).dump({"features.0.weight": View()})
    return out.getvalue()


TENSOR_VIEWS = ("offset_past_storage", "size_past_storage", "negative_stride", "negative_size", "expand_bomb", "zero_stride_view", "overlapping_view", "numel_past_data", "numel_negative", "key_missing", "key_dotdot", "dtype_bigger_than_data", "zero_size_huge_dims")
