"""Make one case's files under its own folder and say what to run.

Each builder takes (root, params) and returns a Plan. ``root`` is an empty
folder owned by the case; models go in root/m, outputs in root/out. Builders
are deterministic: the same params give the same bytes.
"""

from __future__ import annotations

import json
import os
import struct
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from tests.fuzz import models, pickles
from tests.fuzz.plan import FIXTURES, Plan, analyze, copy_fixture, dedup

__all__ = ["BUILDERS", "ST_MUTATIONS", "INDEX_MUTATIONS", "ONNX_RAW", "ONNX_EXT", "resolve_offset"]

BUILDERS: dict[str, Callable[[Path, dict[str, Any]], Plan]] = {}


def builder(fn: Callable[[Path, dict[str, Any]], Plan]) -> Callable[[Path, dict[str, Any]], Plan]:
    BUILDERS[fn.__name__] = fn
    return fn


def marker(root: Path) -> Path:
    """The file a hostile payload creates if it runs."""
    return root / "MARKER"


# --------------------------------------------------------------------------
# truncation


def resolve_offset(at: str, size: int) -> int:
    """``abs:N``, ``end:-N`` or ``frac:F`` as an offset that leaves a shorter file."""
    kind, value = at.split(":")
    n = int(value) if kind == "abs" else size + int(value) if kind == "end" else int(size * float(value))
    return max(0, min(size - 1, n))


def _source(root: Path, fmt: str) -> tuple[Path, Path]:
    """(file to damage, model argument) for a format."""
    m = root / "m"
    m.mkdir(exist_ok=True)
    simple = {"pt_zip": "mlp.pt", "pt_checkpoint": "mlp_checkpoint.pt", "safetensors": "mlp.safetensors", "onnx": "mlp.onnx", "onnx_dynamo": "tiny_lm_dynamo.onnx", "pt2": "mlp.pt2", "torchscript": "mlp_script.pt"}
    if fmt in simple:
        p = copy_fixture(root, simple[fmt])
        return p, p
    if fmt == "pt_legacy":
        p = models.legacy_pt(m / "legacy.pt")
        return p, p
    if fmt in ("onnx_ext_data", "onnx_ext_model"):
        folder = copy_fixture(root, "tiny_lm_external")
        return (folder / "model.onnx.data" if fmt == "onnx_ext_data" else folder / "model.onnx"), folder / "model.onnx"
    if fmt in ("hf_shard", "hf_index"):
        folder = models.hf_folder(root)
        return (folder / "model-00002-of-00002.safetensors" if fmt == "hf_shard" else folder / "model.safetensors.index.json"), folder
    if fmt == "bin_shard":
        first, _ = models.bin_folder(m / "bin")
        return first, m / "bin"
    raise ValueError(fmt)


def _is_json(data: bytes) -> bool:
    try:
        json.loads(data)
        return True
    except ValueError:
        return False


@builder
def truncate(root: Path, p: dict[str, Any]) -> Plan:
    target, model = _source(root, p["fmt"])
    data = target.read_bytes()
    cut = data[: resolve_offset(p["at"], len(data))]
    expect = "refuse"
    if p["fmt"] in ("onnx", "onnx_ext_model") and models.onnx_is_valid(cut, target.parent):
        expect = "either"  # cut at a field boundary: a smaller but well-formed model
    if p["fmt"] == "hf_index" and _is_json(cut):
        expect = "either"  # only trailing white space was cut
    target.write_bytes(cut)
    return dedup(root, model, expect) if p["cmd"] == "dedup" else analyze(root, model, expect)


# --------------------------------------------------------------------------
# safetensors header mutation

Header = dict[str, Any]


def _first(h: Header) -> dict[str, Any]:
    return h[next(k for k in h if k != "__metadata__")]


def _set(field: str, value: Any) -> Callable[[Header], Any]:
    def mutate(h: Header) -> Header:
        _first(h)[field] = value
        return h

    return mutate


def _deep(open_: str, close: str, depth: int) -> bytes:
    return (open_ * depth + close * depth).encode()


def _offsets(fn: Callable[[list[int]], Any]) -> Callable[[Header], Header]:
    def mutate(h: Header) -> Header:
        entry = _first(h)
        entry["data_offsets"] = fn(entry["data_offsets"])
        return h

    return mutate


def _overlap(h: Header) -> Header:
    entries = [v for k, v in h.items() if k != "__metadata__"]
    same = [e for e in entries if e["shape"] == entries[0]["shape"] and e is not entries[0]]
    target = same[0] if same else entries[1]
    target["data_offsets"] = list(entries[0]["data_offsets"])
    target["shape"], target["dtype"] = entries[0]["shape"], entries[0]["dtype"]
    return h


# name -> (expect, header dict mutation or raw header bytes maker, header length override)
ST_MUTATIONS: dict[str, tuple[str, Any]] = {
    "dtype_list": ("refuse", _set("dtype", ["F32"])),
    "dtype_dict": ("refuse", _set("dtype", {"F32": 1})),
    "dtype_int": ("refuse", _set("dtype", 7)),
    "dtype_null": ("refuse", _set("dtype", None)),
    "dtype_unknown": ("refuse", _set("dtype", "F99")),
    "dtype_lowercase": ("either", _set("dtype", "f32")),
    "dtype_f16_size_mismatch": ("refuse", _set("dtype", "F16")),
    "dtype_f64_size_mismatch": ("refuse", _set("dtype", "F64")),
    "shape_str": ("refuse", _set("shape", "64,64")),
    "shape_dict": ("refuse", _set("shape", {"0": 64})),
    "shape_strings": ("refuse", _set("shape", ["64", "64"])),
    "shape_negative": ("refuse", _set("shape", [-64, -64])),
    "shape_float": ("either", _set("shape", [64.0, 64.0])),
    "shape_nan": ("refuse", _set("shape", [float("nan"), 64])),
    "shape_infinity": ("refuse", _set("shape", [float("inf")])),
    "shape_huge": ("refuse", _set("shape", [2**62, 2**62])),
    "shape_2pow64": ("refuse", _set("shape", [2**64])),
    "shape_bool": ("refuse", _set("shape", [True, 64])),
    "shape_zero_dim": ("refuse", _set("shape", [0, 64])),
    "shape_nested": ("refuse", _set("shape", [[64], [64]])),
    "shape_null": ("refuse", _set("shape", None)),
    "offsets_three": ("refuse", _offsets(lambda o: [o[0], o[1], o[1]])),
    "offsets_one": ("refuse", _offsets(lambda o: [o[0]])),
    "offsets_reversed": ("refuse", _offsets(lambda o: [o[1], o[0]])),
    "offsets_negative": ("refuse", _offsets(lambda o: [o[0] - 8, o[1] - 8])),
    "offsets_past_end": ("refuse", _offsets(lambda o: [o[0] + 10**6, o[1] + 10**6])),
    "offsets_huge": ("refuse", _offsets(lambda o: [2**70, 2**70 + o[1] - o[0]])),
    "offsets_2pow64_wrap": ("refuse", _offsets(lambda o: [2**64 - 8, 2**64 - 8 + o[1] - o[0]])),
    "offsets_float": ("either", _offsets(lambda o: [float(o[0]), float(o[1])])),
    "offsets_strings": ("refuse", _offsets(lambda o: [str(o[0]), str(o[1])])),
    "offsets_nan": ("refuse", _offsets(lambda o: [float("nan"), float("inf")])),
    "offsets_dict": ("refuse", _offsets(lambda o: {"begin": o[0], "end": o[1]})),
    "offsets_overlap": ("either", _overlap),
    "entry_list": ("refuse", lambda h: {**h, next(k for k in h if k != "__metadata__"): [1, 2]}),
    "entry_string": ("refuse", lambda h: {**h, next(k for k in h if k != "__metadata__"): "F32"}),
    "entry_no_offsets": ("refuse", lambda h: (_first(h).pop("data_offsets"), h)[1]),
    "entry_no_dtype": ("refuse", lambda h: (_first(h).pop("dtype"), h)[1]),
    "entry_extra_key": ("either", _set("extra", {"x": [1]})),
    "metadata_list": ("either", lambda h: {**h, "__metadata__": ["a", "b"]}),
    "metadata_non_string": ("either", lambda h: {**h, "__metadata__": {"k": 1, "n": None}}),
    "metadata_nested": ("either", lambda h: {**h, "__metadata__": {"k": {"x": {"y": [1, 2, {"z": 3}]}}}}),
    "metadata_nan": ("either", lambda h: {**h, "__metadata__": {"k": float("nan")}}),
    "metadata_as_tensor": ("either", lambda h: {**h, "__metadata__": _first(h)}),
    "name_nul": ("either", lambda h: {("a\x00b" if k != "__metadata__" and i == 0 else k): v for i, (k, v) in enumerate(h.items())}),
    "name_empty": ("either", lambda h: {("" if k != "__metadata__" and i == 0 else k): v for i, (k, v) in enumerate(h.items())}),
    "no_tensors": ("either", lambda h: {"__metadata__": {"format": "pt"}}),
    "header_list": ("refuse", lambda h: list(h.items())),
    "header_string": ("refuse", lambda h: "header"),
    "header_number": ("refuse", lambda h: 12345),
    "header_null": ("refuse", lambda h: None),
    "header_deep_lists": ("refuse", lambda h: _deep("[", "]", 100_000)),
    "header_deep_dicts": ("refuse", lambda h: b'{"a":' * 100_000 + b"1" + b"}" * 100_000),
    "header_deep_in_metadata": ("refuse", lambda h: json.dumps(h).encode()[:-1] + b', "x": ' + _deep("[", "]", 100_000) + b"}"),
    "header_huge_int_literal": ("refuse", lambda h: json.dumps(h).encode().replace(b"[0, ", b"[" + b"9" * 5000 + b", ", 1)),
    "header_not_utf8": ("refuse", lambda h: json.dumps(h).encode().replace(b'"F32"', b'"F\xff2"', 1)),
    "header_bom": ("either", lambda h: b"\xef\xbb\xbf" + json.dumps(h).encode()),
    "header_trailing_garbage": ("refuse", lambda h: json.dumps(h).encode() + b"xyz"),
    "header_trailing_spaces": ("either", lambda h: json.dumps(h).encode() + b"    "),
    "header_duplicate_key": ("either", lambda h: json.dumps(h).encode()[:-1] + b", " + json.dumps({next(k for k in h if k != "__metadata__"): _first(h)}).encode()[1:]),
    "header_empty_object": ("either", lambda h: b"{}"),
}

# header-length field mutations: name -> (expect, new length as a function of the real one and the file size)
ST_LENGTHS: dict[str, tuple[str, Callable[[int, int], int]]] = {
    "length_zero": ("refuse", lambda n, size: 0),
    "length_huge": ("refuse", lambda n, size: 2**63),
    "length_max_u64": ("refuse", lambda n, size: 2**64 - 1),
    "length_past_file": ("refuse", lambda n, size: size + 1000),
    "length_short": ("refuse", lambda n, size: n - 10),
    "length_into_data": ("refuse", lambda n, size: n + 12),
}


def _split_safetensors(path: Path) -> tuple[Header, bytes]:
    raw = path.read_bytes()
    (n,) = struct.unpack("<Q", raw[:8])
    return json.loads(raw[8 : 8 + n]), raw[8 + n :]


@builder
def st_header(root: Path, p: dict[str, Any]) -> Plan:
    """A safetensors header mutation, on a single file or on one shard of a folder."""
    if p["target"] == "shard":
        folder = models.hf_folder(root)
        path, model = folder / "model-00001-of-00002.safetensors", folder
    else:
        path = model = copy_fixture(root, "mlp.safetensors")
    header, data = _split_safetensors(path)
    name = p["mut"]
    if name in ST_LENGTHS:
        expect, fn = ST_LENGTHS[name]
        text = json.dumps(header).encode()
        path.write_bytes(struct.pack("<Q", fn(len(text), 8 + len(text) + len(data))) + text + data)
        return analyze(root, model, expect)
    expect, mutate = ST_MUTATIONS[name]
    out = mutate(header)
    text = out if isinstance(out, bytes) else json.dumps(out).encode()
    path.write_bytes(struct.pack("<Q", len(text)) + text + data)
    return analyze(root, model, expect)


def _outside(root: Path) -> Path:
    """A valid shard outside the model folder: reading it means escaping the folder."""
    src = FIXTURES / "tiny_lm_hf" / "model-00002-of-00002.safetensors"
    dest = root / "outside.safetensors"
    dest.write_bytes(src.read_bytes())
    return dest


# name -> (expect, mutation of (index dict, root, folder))
INDEX_MUTATIONS: dict[str, tuple[str, Callable[[Header, Path, Path], Any]]] = {
    "weight_map_list": ("refuse", lambda h, r, f: {**h, "weight_map": list(h["weight_map"].items())}),
    "weight_map_string": ("refuse", lambda h, r, f: {**h, "weight_map": "model.safetensors"}),
    "weight_map_missing": ("refuse", lambda h, r, f: {"metadata": h["metadata"]}),
    "shard_dotdot": ("refuse", lambda h, r, f: (_outside(r), _remap(h, "../../outside.safetensors"))[1]),
    "shard_absolute": ("refuse", lambda h, r, f: _remap(h, str(_outside(r)))),
    "shard_nul": ("refuse", lambda h, r, f: _remap(h, "model-00002-of-00002.safetensors\x00.txt")),
    "shard_missing": ("refuse", lambda h, r, f: _remap(h, "model-00003-of-00003.safetensors")),
    "shard_is_index": ("refuse", lambda h, r, f: _remap(h, "model.safetensors.index.json")),
    "shard_is_folder": ("refuse", lambda h, r, f: ((f / "sub").mkdir(), _remap(h, "sub"))[1]),
    "shard_not_string": ("refuse", lambda h, r, f: _remap(h, ["model-00002-of-00002.safetensors"])),
    "shard_dev_zero": ("refuse", lambda h, r, f: _remap(h, "/dev/zero")),
    "index_deep": ("refuse", lambda h, r, f: b'{"weight_map": ' + _deep("[", "]", 100_000) + b"}"),
    "index_list": ("refuse", lambda h, r, f: [h]),
    "total_size_infinity": ("either", lambda h, r, f: {**h, "metadata": {"total_size": float("inf")}}),
    "total_size_huge": ("either", lambda h, r, f: {**h, "metadata": {"total_size": 10**30}}),
    "shard_symlink_out": ("refuse", lambda h, r, f: ((f / "link.safetensors").symlink_to(_outside(r)), _remap(h, "link.safetensors"))[1]),
    "tensor_not_in_shard": ("refuse", lambda h, r, f: {**h, "weight_map": {**h["weight_map"], "ghost.weight": "model-00001-of-00002.safetensors"}}),
}


def _remap(index: Header, shard: Any) -> Header:
    """The index with every tensor of the second shard pointed at ``shard``."""
    wm = {k: (shard if v.startswith("model-00002") else v) for k, v in index["weight_map"].items()}
    return {**index, "weight_map": wm}


@builder
def hf_index(root: Path, p: dict[str, Any]) -> Plan:
    folder = models.hf_folder(root)
    index_path = folder / "model.safetensors.index.json"
    expect, mutate = INDEX_MUTATIONS[p["mut"]]
    out = mutate(json.loads(index_path.read_text()), root, folder)
    index_path.write_bytes(out if isinstance(out, bytes) else json.dumps(out).encode())
    return analyze(root, folder, expect)


# --------------------------------------------------------------------------
# ONNX protobuf mutation


@builder
def onnx_flip(root: Path, p: dict[str, Any]) -> Plan:
    """Seeded random byte flips in a fixture ONNX file."""
    import random

    path = copy_fixture(root, p["base"])
    data = bytearray(path.read_bytes())
    rng = random.Random(p["seed"])
    for _ in range(p["flips"]):
        data[rng.randrange(len(data))] ^= rng.randrange(1, 256)
    path.write_bytes(bytes(data))
    cmd = dedup if p["cmd"] == "dedup" else analyze
    return cmd(root, path, "either")


def _tensor(model: Any, where: str) -> Any:
    """The tensor a raw-data mutation damages."""
    g = model.graph
    if where == "init":
        return g.initializer[0]
    if where == "const":
        return g.node[1].attribute[0].t
    if where == "if_init":
        return g.node[3].attribute[0].g.initializer[0] if g.node[3].attribute[0].name == "then_branch" else g.node[3].attribute[1].g.initializer[0]
    if where == "if_const":
        branch = next(a for a in g.node[3].attribute if a.name == "else_branch")
        return branch.g.node[0].attribute[0].t
    raise ValueError(where)


def _raw(length: int) -> Callable[[Any], None]:
    def mutate(t: Any) -> None:
        t.raw_data = (t.raw_data * 4)[:length]

    return mutate


def _field(**fields: Any) -> Callable[[Any], None]:
    def mutate(t: Any) -> None:
        for k, v in fields.items():
            if k == "dims":
                del t.dims[:]
                t.dims.extend(v)
            elif k == "float_data":
                t.ClearField("raw_data")
                t.float_data.extend(v)
            else:
                setattr(t, k, v)

    return mutate


def _graph_edit(fn: Callable[[Any], None]) -> Callable[[Any], None]:
    fn.graph_edit = True  # type: ignore[attr-defined]
    return fn


def _no_outputs(g: Any) -> None:
    del g.node[0].output[:]


def _empty_output_name(g: Any) -> None:
    g.node[0].output[0] = ""


def _duplicate_initializer(g: Any) -> None:
    g.initializer.append(g.initializer[0])


def _unnamed_initializer(g: Any) -> None:
    extra = g.initializer.add()
    extra.CopyFrom(g.initializer[0])
    extra.name = ""


# variant -> (expect, where, mutation); the mutation takes a tensor, or the graph for graph edits
ONNX_RAW: dict[str, tuple[str, str, Callable[[Any], None]]] = {}
for _where in ("init", "const", "if_init", "if_const"):
    ONNX_RAW[f"{_where}_raw_len_odd"] = ("refuse", _where, _raw(15 if _where.endswith("const") or _where == "if_init" else 63))
    ONNX_RAW[f"{_where}_raw_len_short"] = ("refuse", _where, _raw(12 if _where.endswith("const") or _where == "if_init" else 60))
    ONNX_RAW[f"{_where}_raw_len_long"] = ("refuse", _where, _raw(20 if _where.endswith("const") or _where == "if_init" else 68))
    ONNX_RAW[f"{_where}_negative_dim"] = ("refuse", _where, _field(dims=[-4, -4] if _where == "init" else [-4]))
ONNX_RAW.update({
    "init_huge_dims": ("refuse", "init", _field(dims=[2**31, 2**31])),
    "init_dims_overflow": ("refuse", "init", _field(dims=[2**62, 2**62, 16])),
    "init_dtype_999": ("refuse", "init", _field(data_type=999)),
    "init_dtype_undefined": ("refuse", "init", _field(data_type=0)),
    "init_dtype_string_raw": ("refuse", "init", _field(data_type=8)),
    "init_dtype_float16_odd": ("refuse", "init", lambda t: (_field(data_type=10)(t), _raw(7)(t))),
    "init_dtype_double_12": ("refuse", "init", lambda t: (_field(data_type=11)(t), _raw(12)(t))),
    "init_float_data_count": ("refuse", "init", _field(float_data=[1.0] * 15)),
    "const_float_data_count": ("refuse", "const", _field(float_data=[1.0] * 3)),
    "node_without_outputs": ("refuse", "graph", _graph_edit(_no_outputs)),
    "node_empty_output_name": ("refuse", "graph", _graph_edit(_empty_output_name)),
    "initializer_duplicated": ("either", "graph", _graph_edit(_duplicate_initializer)),
    "initializer_unnamed": ("either", "graph", _graph_edit(_unnamed_initializer)),
})


@builder
def onnx_raw(root: Path, p: dict[str, Any]) -> Plan:
    """A small valid model with one tensor or node damaged."""
    import onnx

    model = models.small_onnx()
    expect, where, mutate = ONNX_RAW[p["variant"]]
    if where == "graph" and p["cmd"] == "analyze":
        expect = "either"  # every tensor is still readable: analyze may report them
    mutate(model.graph if where == "graph" else _tensor(model, where))
    (root / "m").mkdir()
    path = root / "m" / "model.onnx"
    path.write_bytes(model.SerializeToString())
    del onnx
    return dedup(root, path, expect, None, *p.get("extra", ())) if p["cmd"] == "dedup" else analyze(root, path, expect)


def _fifo(path: Path) -> Path:
    os.mkfifo(path)
    return path


# variant -> (expect, external_data entries for W as a function of (root, model folder))
ONNX_EXT: dict[str, tuple[str, Callable[[Path, Path], dict[str, str]]]] = {
    "control": ("ok", lambda r, f: {"location": "w.bin", "offset": "0", "length": "64"}),
    "location_dotdot": ("refuse", lambda r, f: ((r / "outside.bin").write_bytes((f / "w.bin").read_bytes()), {"location": "../outside.bin"})[1]),
    "location_absolute": ("refuse", lambda r, f: ((r / "outside.bin").write_bytes((f / "w.bin").read_bytes()), {"location": str(r / "outside.bin")})[1]),
    "location_etc": ("refuse", lambda r, f: {"location": "/etc/hostname", "length": "4"}),
    "location_nul": ("refuse", lambda r, f: {"location": "w.bin\x00.txt"}),
    "location_symlink_out": ("refuse", lambda r, f: ((r / "outside.bin").write_bytes((f / "w.bin").read_bytes()), (f / "link.bin").symlink_to(r / "outside.bin"), {"location": "link.bin"})[2]),
    "location_symlink_in": ("either", lambda r, f: ((f / "link.bin").symlink_to("w.bin"), {"location": "link.bin"})[1]),
    "location_folder": ("refuse", lambda r, f: ((f / "sub").mkdir(), {"location": "sub"})[1]),
    "location_missing": ("refuse", lambda r, f: {"location": "nothing.bin"}),
    "location_empty": ("refuse", lambda r, f: {"location": ""}),
    "location_absent": ("refuse", lambda r, f: {"offset": "0", "length": "64"}),
    "location_fifo": ("refuse", lambda r, f: (_fifo(f / "pipe.bin"), {"location": "pipe.bin"})[1]),
    "location_dev_zero": ("refuse", lambda r, f: {"location": "/dev/zero", "length": "64"}),
    "location_model_itself": ("either", lambda r, f: {"location": "model.onnx", "offset": "0", "length": "64"}),
    "location_inner_dotdot": ("either", lambda r, f: ((f / "sub").mkdir(), {"location": "sub/../w.bin"})[1]),
    "location_subfolder": ("either", lambda r, f: ((f / "sub").mkdir(), (f / "sub" / "w.bin").write_bytes((f / "w.bin").read_bytes()), {"location": "sub/w.bin"})[2]),
    "offset_past_end": ("refuse", lambda r, f: {"location": "w.bin", "offset": "4096", "length": "64"}),
    "length_past_end": ("refuse", lambda r, f: {"location": "w.bin", "offset": "0", "length": "4096"}),
    "length_odd": ("refuse", lambda r, f: {"location": "w.bin", "offset": "0", "length": "63"}),
    "offset_negative": ("refuse", lambda r, f: {"location": "w.bin", "offset": "-16", "length": "64"}),
    "offset_not_a_number": ("refuse", lambda r, f: {"location": "w.bin", "offset": "abc", "length": "64"}),
    "length_huge": ("refuse", lambda r, f: {"location": "w.bin", "offset": "0", "length": str(2**64)}),
}


@builder
def onnx_ext(root: Path, p: dict[str, Any]) -> Plan:
    """W stored in an external file whose entries are then mutated."""
    import onnx

    folder = root / "m"
    path, model = models.external_onnx(folder)
    expect, entries = ONNX_EXT[p["variant"]]
    models.set_external(model.graph.initializer[0], **entries(root, folder))
    path.write_bytes(model.SerializeToString())
    del onnx
    return dedup(root, path, expect) if p["cmd"] == "dedup" else analyze(root, path, expect)


# --------------------------------------------------------------------------
# hostile pickles


def _hostile_file(root: Path, slot: str, body: bytes) -> Path:
    """Plant ``body`` (a whole pickle) in ``slot``; returns the model argument."""
    m = root / "m"
    m.mkdir(exist_ok=True)
    if slot.startswith("legacy_"):
        path = m / "legacy.pt"
        path.write_bytes(pickles.legacy_pt(slot.removeprefix("legacy_"), body))
        return path
    if slot == "zip_data_pkl":
        path = m / "model.pt"
        path.write_bytes(pickles.replace_members((FIXTURES / "mlp.pt").read_bytes(), {"/data.pkl": body}))
        return path
    if slot in ("ts_data_pkl", "ts_constants_pkl"):
        path = m / "script.pt"
        member = "/data.pkl" if slot == "ts_data_pkl" else "/constants.pkl"
        path.write_bytes(pickles.replace_members((FIXTURES / "mlp_script.pt").read_bytes(), {member: body}))
        return path
    src = (FIXTURES / "mlp.pt2").read_bytes()
    if slot == "pt2_weight":
        data = pickles.pt2_pickled_weight(src, body)
    elif slot == "pt2_constant":
        data = pickles.pt2_pickled_constant(src, body)
    elif slot == "pt2_sample_inputs":
        with zipfile.ZipFile(FIXTURES / "mlp.pt2") as z:
            inner = z.read(next(n for n in z.namelist() if n.endswith("sample_inputs/model.pt")))
        data = pickles.replace_members(src, {"sample_inputs/model.pt": pickles.replace_members(inner, {"/data.pkl": body})})
    elif slot == "bin_shard":
        _, second = models.bin_folder(m / "bin")
        second.write_bytes(pickles.replace_members(second.read_bytes(), {"/data.pkl": body}))
        return m / "bin"
    else:
        raise ValueError(slot)
    path = m / "model.pt2"
    path.write_bytes(data)
    return path


@builder
def hostile(root: Path, p: dict[str, Any]) -> Plan:
    """A hostile pickle in one slot, read by analyze, export or tie without the opt-in flag."""
    model = _hostile_file(root, p["slot"], pickles.payload(p["payload"], marker(root)))
    cmd = p["cmd"]
    if cmd == "analyze":
        # A structure payload is data a weights-only unpickler may load: refusing it or
        # reading past it are both fine, hanging or crashing is not.
        return analyze(root, model, "refuse" if p["payload"] in pickles.CODE_PAYLOADS else "either")
    (root / "out").mkdir()
    if cmd == "export":
        out = root / "out" / "model.onnx"
        extra = ["--input", "x:1x64:float32"] if not str(model).endswith(".pt2") else []
        arch = ["--arch", "fixtures.architectures:DigitsMLP"] if p["slot"].startswith(("legacy", "zip")) or p["slot"] == "bin_shard" else []
        return Plan(["export", str(model), "-o", str(out), *arch, *extra, "--no-ram", "--json"], root, "refuse", [out])
    if cmd == "tie":
        out = root / "out" / "tied.pt"
        calib = root / "calib.npz"
        np.savez(calib, x=np.zeros((4, 64), dtype=np.float32))
        groups = "A:features.0.bias = A:features.2.bias"
        return Plan(["tie", str(model), "--arch", "fixtures.architectures:DigitsMLP", "--inputs", str(calib), "--groups", groups, "--epochs", "1", "--finetune-shared", "0", "-o", str(out), "--json"], root, "refuse", [out])
    raise ValueError(cmd)


# torch.load itself accepts these: the views stay inside the bytes the storage claims
VIEW_EXPECT = {"expand_bomb": "either", "zero_stride_view": "either", "overlapping_view": "either", "numel_past_data": "either"}


@builder
def tensor_view(root: Path, p: dict[str, Any]) -> Plan:
    """A zip .pt whose tensor is a damaged view of a real storage (weights-only loadable)."""
    (root / "m").mkdir()
    path = root / "m" / "model.pt"
    path.write_bytes(pickles.replace_members((FIXTURES / "mlp.pt").read_bytes(), {"/data.pkl": pickles.tensor_views(p["view"])}))
    return analyze(root, path, VIEW_EXPECT.get(p["view"], "refuse"))


def _graph_external(root: Path, folder: Path, where: str, location: str) -> Any:
    """small_onnx with the tensor at ``where`` moved to external ``location``."""
    from onnx import TensorProto

    model = models.small_onnx()
    t = _tensor(model, where)
    target = (folder / location) if not os.path.isabs(location) else Path(location)
    if not target.exists() and target.parent.is_dir():
        target.write_bytes(t.raw_data)
    size = len(t.raw_data)
    t.ClearField("raw_data")
    t.data_location = TensorProto.EXTERNAL
    models.set_external(t, location=location, offset="0", length=str(size))
    return model


# variant -> (expect, where, location); the location's file is made with the tensor's bytes
ONNX_EXT_GRAPH: dict[str, tuple[str, str, str]] = {
    "const_external_inside": ("either", "const", "c.bin"),
    "const_external_dotdot": ("refuse", "const", "../outside_c.bin"),
    "if_init_external_dotdot": ("refuse", "if_init", "../outside_t.bin"),
    "if_const_external_dotdot": ("refuse", "if_const", "../outside_e.bin"),
    "init_external_deep_dotdot": ("refuse", "init", "sub/../../outside_w.bin"),
    "init_external_dot_slash": ("either", "init", "./w.bin"),
    # on POSIX a backslash is part of the name: this file lies inside the folder
    "init_external_backslash_dotdot": ("either", "init", "..\\outside_w.bin"),
}


@builder
def onnx_ext_graph(root: Path, p: dict[str, Any]) -> Plan:
    """External data on tensors inside nodes and subgraphs, some outside the model's folder."""
    folder = root / "m"
    (folder / "sub").mkdir(parents=True)
    expect, where, location = ONNX_EXT_GRAPH[p["variant"]]
    model = _graph_external(root, folder, where, location)
    path = folder / "model.onnx"
    path.write_bytes(model.SerializeToString())
    return dedup(root, path, expect) if p["cmd"] == "dedup" else analyze(root, path, expect)


@builder
def st_many(root: Path, p: dict[str, Any]) -> Plan:
    """A safetensors header naming ``n`` tensors: parsing and analysing must stay fast."""
    n = p["n"]
    header = {f"t{i}": {"dtype": "F32", "shape": [1], "data_offsets": [4 * i, 4 * i + 4]} for i in range(n)}
    text = json.dumps(header).encode()
    (root / "m").mkdir()
    path = root / "m" / "many.safetensors"
    path.write_bytes(struct.pack("<Q", len(text)) + text + np.arange(n, dtype=np.float32).tobytes())
    return analyze(root, path, "either")


@builder
def selftest_crash(root: Path, p: dict[str, Any]) -> Plan:
    """For the runner's own test: the worker dies the way a crash in native code kills it."""
    os.kill(os.getpid(), 11)
    raise AssertionError("unreachable")


# --------------------------------------------------------------------------
# .pt2 weights config mutation (the JSON that says where each weight lives and its shape)


def _meta(field: str, value: Any) -> Callable[[dict[str, Any]], None]:
    def mutate(entry: dict[str, Any]) -> None:
        entry["tensor_meta"][field] = value

    return mutate


def _entry(field: str, value: Any) -> Callable[[dict[str, Any]], None]:
    def mutate(entry: dict[str, Any]) -> None:
        entry[field] = value

    return mutate


# name -> (expect, mutation of the first weight's config entry)
PT2_CONFIG: dict[str, tuple[str, Callable[[dict[str, Any]], None]]] = {
    "path_dotdot": ("refuse", _entry("path_name", "../../byteorder")),
    "path_absolute": ("refuse", _entry("path_name", "/etc/hostname")),
    "path_missing": ("refuse", _entry("path_name", "weight_99")),
    "path_nul": ("refuse", _entry("path_name", "weight_0\x00")),
    "path_not_string": ("refuse", _entry("path_name", ["weight_0"])),
    "path_other_weight_smaller": ("refuse", _entry("path_name", "weight_5")),
    "sizes_huge": ("refuse", _meta("sizes", [{"as_int": 2**40}, {"as_int": 2**40}])),
    "sizes_negative": ("refuse", _meta("sizes", [{"as_int": -64}, {"as_int": 64}])),
    "sizes_symbolic": ("refuse", _meta("sizes", [{"as_expr": {"expr_str": "s0"}}, {"as_int": 64}])),
    "sizes_string": ("refuse", _meta("sizes", "64x64")),
    "strides_negative": ("refuse", _meta("strides", [{"as_int": -64}, {"as_int": 1}])),
    "strides_past_storage": ("refuse", _meta("strides", [{"as_int": 6400}, {"as_int": 1}])),
    "storage_offset_past": ("refuse", _meta("storage_offset", {"as_int": 10**9})),
    "dtype_unknown": ("refuse", _meta("dtype", 999)),
    "dtype_wider": ("refuse", _meta("dtype", 8)),  # float64: twice the bytes the weight file holds
    "dtype_string": ("refuse", _meta("dtype", "float32")),
    "tensor_meta_missing": ("refuse", lambda e: e.pop("tensor_meta")),
    "entry_list": ("refuse", lambda e: e.clear()),
    "config_deep": ("refuse", lambda e: None),  # the whole config replaced below
}


@builder
def pt2_config(root: Path, p: dict[str, Any]) -> Plan:
    (root / "m").mkdir()
    src = (FIXTURES / "mlp.pt2").read_bytes()
    with zipfile.ZipFile(FIXTURES / "mlp.pt2") as z:
        config = json.loads(z.read(next(n for n in z.namelist() if n.endswith("model_weights_config.json"))))
    expect, mutate = PT2_CONFIG[p["mut"]]
    mutate(next(iter(config["config"].values())))
    text = _deep("[", "]", 100_000) if p["mut"] == "config_deep" else json.dumps(config).encode()
    path = root / "m" / "model.pt2"
    path.write_bytes(pickles.replace_members(src, {"model_weights_config.json": text}))
    return analyze(root, path, expect) if p["cmd"] == "analyze" else Plan(["export", str(path), "-o", str(root / "out.onnx"), "--no-ram"], root, expect, [root / "out.onnx"])


@builder
def byte_flip(root: Path, p: dict[str, Any]) -> Plan:
    """Seeded random byte flips in a fixture of any format; ``region`` limits them to the first N bytes."""
    import random

    path = copy_fixture(root, p["fixture"])
    data = bytearray(path.read_bytes())
    rng = random.Random(p["seed"])
    span = min(len(data), p.get("region") or len(data))
    for _ in range(p["flips"]):
        data[rng.randrange(span)] ^= rng.randrange(1, 256)
    path.write_bytes(bytes(data))
    return analyze(root, path, "either")


# --------------------------------------------------------------------------
# ONNX graph inputs, functions and sparse initializers: what verification feeds and what few models hold


def _input_dims(*dims: Any) -> Callable[[Any], None]:
    """Graph input X declared with these dims (ints, or strings for symbolic dims)."""

    def mutate(model: Any) -> None:
        shape = model.graph.input[0].type.tensor_type.shape
        del shape.dim[:]
        for d in dims:
            dim = shape.dim.add()
            if isinstance(d, str):
                dim.dim_param = d
            else:
                dim.dim_value = d

    return mutate


def _input_type(elem_type: int) -> Callable[[Any], None]:
    def mutate(model: Any) -> None:
        model.graph.input[0].type.tensor_type.elem_type = elem_type

    return mutate


def _function_with_bad_constant(model: Any) -> None:
    """A local function whose Constant holds 15 bytes of float32, called from the graph."""
    from onnx import TensorProto, helper

    bad = helper.make_tensor("k", TensorProto.FLOAT, [4], b"\x00" * 16, raw=True)
    bad.raw_data = b"\x00" * 15  # make_tensor checks the size: damage it afterwards
    body = [helper.make_node("Constant", [], ["k_out"], value=bad), helper.make_node("Add", ["a", "k_out"], ["b"])]
    model.functions.append(helper.make_function("local", "AddK", ["a"], ["b"], body, [helper.make_opsetid("", 17)]))
    model.opset_import.append(helper.make_opsetid("local", 1))
    model.graph.node.append(helper.make_node("AddK", ["Z"], ["F"], domain="local"))
    model.graph.output.append(helper.make_tensor_value_info("F", TensorProto.FLOAT, [1, 4]))


def _sparse(indices: list[int]) -> Callable[[Any], None]:
    def mutate(model: Any) -> None:
        from onnx import helper, numpy_helper

        values = numpy_helper.from_array(np.ones(len(indices), dtype=np.float32), "S")
        idx = numpy_helper.from_array(np.array(indices, dtype=np.int64), "S_idx")
        model.graph.sparse_initializer.append(helper.make_sparse_tensor(values, idx, [16]))
        model.graph.node.append(helper.make_node("Identity", ["S"], ["S_out"]))
        model.graph.output.append(helper.make_tensor_value_info("S_out", 1, [16]))

    return mutate


ONNX_MODEL: dict[str, tuple[str, Callable[[Any], None]]] = {
    "input_dim_huge": ("refuse", _input_dims(2**40, 4)),
    "input_dim_symbolic": ("ok", _input_dims("batch", 4)),
    "input_dims_wrong_rank": ("refuse", _input_dims(1, 4, 4, 4)),
    "input_dim_zero": ("either", _input_dims(0, 4)),
    "input_type_undefined": ("refuse", _input_type(0)),
    "input_type_string": ("refuse", _input_type(8)),
    "input_type_999": ("refuse", _input_type(999)),
    "function_bad_constant": ("refuse", _function_with_bad_constant),
    "sparse_valid": ("either", _sparse([0, 5, 15])),
    "sparse_index_out_of_range": ("refuse", _sparse([0, 5, 99])),
    "sparse_index_negative": ("refuse", _sparse([-1, 5, 15])),
    "no_opset_import": ("refuse", lambda m: m.ClearField("opset_import")),
    "opset_from_the_future": ("refuse", lambda m: setattr(m.opset_import[0], "version", 999)),
    "ir_version_zero": ("refuse", lambda m: setattr(m, "ir_version", 0)),
}


@builder
def onnx_model(root: Path, p: dict[str, Any]) -> Plan:
    model = models.small_onnx()
    expect, mutate = ONNX_MODEL[p["variant"]]
    mutate(model)
    (root / "m").mkdir()
    path = root / "m" / "model.onnx"
    path.write_bytes(model.SerializeToString())
    if p["cmd"] == "analyze":
        return analyze(root, path, "either" if expect == "refuse" else expect)  # analyze reads tensors, not the graph
    return dedup(root, path, expect, None, *p.get("extra", ()))
