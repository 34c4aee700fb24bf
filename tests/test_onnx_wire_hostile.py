"""ONNX files read by the wire-format reader: valid ones agree with onnx's own parse, hostile ones end in one InputError.

Valid models of every numeric element type, with subgraphs, Constants and
external data, give the same names, shapes, dtypes and bytes as
``onnx.numpy_helper.to_array`` over ``onnx.load``. Hand-encoded wire
variants (packed and unpacked dims, repeated scalar fields, unknown fields,
padded varints) agree with onnx; malformed bytes, truncations and byte flips
end in a correct read or an InputError, never another exception; the CLI
turns them into one ``error:`` line and exit 2, through the early exit.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import ml_dtypes
import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from sharescan.errors import InputError
from sharescan.sources import LoadOptions, load_model, onnx_source
from sharescan.sources.onnx_layout import read_layout
from tests.conftest import ROOT

rng = np.random.default_rng(0)

# Element types sharescan reads, with the numpy type onnx's numpy_helper gives.
NUMERIC: dict[int, Any] = {
    TensorProto.FLOAT: np.float32,
    TensorProto.UINT8: np.uint8,
    TensorProto.INT8: np.int8,
    TensorProto.UINT16: np.uint16,
    TensorProto.INT16: np.int16,
    TensorProto.INT32: np.int32,
    TensorProto.INT64: np.int64,
    TensorProto.BOOL: np.bool_,
    TensorProto.FLOAT16: np.float16,
    TensorProto.DOUBLE: np.float64,
    TensorProto.UINT32: np.uint32,
    TensorProto.UINT64: np.uint64,
    TensorProto.COMPLEX64: np.complex64,
    TensorProto.COMPLEX128: np.complex128,
    TensorProto.BFLOAT16: ml_dtypes.bfloat16,
    TensorProto.FLOAT8E4M3FN: ml_dtypes.float8_e4m3fn,
    TensorProto.FLOAT8E5M2: ml_dtypes.float8_e5m2,
}

F4 = np.arange(4, dtype=np.float32).tobytes()


# --- building models -------------------------------------------------------


def _values(code: int, shape: tuple[int, ...]) -> np.ndarray:
    kind = np.dtype(NUMERIC[code])
    if code in (TensorProto.COMPLEX64, TensorProto.COMPLEX128):
        values: Any = rng.standard_normal(shape) + 1j * rng.standard_normal(shape)
    elif code == TensorProto.BOOL:
        values = rng.integers(0, 2, shape).astype(bool)
    elif np.issubdtype(kind, np.integer):
        values = rng.integers(0, 100, shape)
    else:
        values = rng.standard_normal(shape)
    return np.ascontiguousarray(np.asarray(values).astype(kind))


def _raw_tensor(name: str, code: int | None = None, shape: tuple[int, ...] | None = None) -> TensorProto:
    code = int(rng.choice(list(NUMERIC))) if code is None else code
    # No zero dim here: an empty Constant or subgraph tensor is left to onnx's parse (the reader needs raw bytes there).
    shape = tuple(int(d) for d in rng.integers(1, 4, rng.integers(0, 4))) if shape is None else shape
    return helper.make_tensor(name, code, shape, _values(code, shape).tobytes(), raw=True)


def _branch(prefix: str) -> onnx.GraphProto:
    init = _raw_tensor(f"{prefix}_w")
    nodes = [helper.make_node("Identity", [init.name], [prefix]), helper.make_node("Constant", [], [f"{prefix}_C"], value=_raw_tensor(f"{prefix}_c"))]
    return helper.make_graph(nodes, prefix, [], [helper.make_tensor_value_info(prefix, TensorProto.FLOAT, None)], initializer=[init])


def _random_model(k: int) -> onnx.ModelProto:
    inits = [_raw_tensor(f"w{i}") for i in range(int(rng.integers(1, 5)))]
    nodes = [helper.make_node("Constant", [], ["C"], name="const", value=_raw_tensor("c"))]
    if k % 2:
        nodes.append(helper.make_node("If", ["w0"], ["Y"], then_branch=_branch("a"), else_branch=_branch("b")))
    if k % 3 == 0:
        nodes.append(helper.make_node("Loop", ["", "", "w0"], ["L"], body=_branch("body")))
    return helper.make_model(helper.make_graph(nodes, "g", [], [], initializer=inits), opset_imports=[helper.make_opsetid("", 17)])


def _onnx_reference(path: Path) -> dict[str, np.ndarray]:
    """Every numeric initializer and Constant value, named as sharescan scopes them, from onnx's own parse."""
    model = onnx.load(str(path), load_external_data=False)
    found: dict[str, np.ndarray] = {}

    def walk(graph: onnx.GraphProto, scope: str) -> None:
        for init in graph.initializer:
            if init.data_type in NUMERIC:
                found[scope + init.name] = numpy_helper.to_array(init, base_dir=str(path.parent))
        for node in graph.node:
            for attr in node.attribute:
                if node.op_type == "Constant" and attr.name == "value" and attr.t.data_type in NUMERIC:
                    found[scope + node.output[0]] = numpy_helper.to_array(attr.t, base_dir=str(path.parent))
                label = f"{scope}{node.name or node.op_type}/{attr.name}"
                if attr.HasField("g"):
                    walk(attr.g, label + "/")
                for i, sub in enumerate(attr.graphs):
                    walk(sub, f"{label}[{i}]/")

    walk(model.graph, "")
    return found


def _table(path: Path) -> list[tuple[str, tuple[int, ...], str, bytes]]:
    loaded = load_model(str(path), 0, LoadOptions())
    return [(t.name, tuple(t.shape), t.dtype, t.read().tobytes()) for t in loaded.tensors]


def _table_with_onnx(path: Path, monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, tuple[int, ...], str, bytes]]:
    with monkeypatch.context() as m:
        m.setattr(onnx_source, "_read_light", lambda layout: None)
        return _table(path)


def _read_light(path: Path) -> bool:
    return onnx_source._read_light(read_layout(path)) is not None


def _outcome(path: Path) -> tuple[str, Any]:
    """("ok", table) or ("input", message); any other exception fails the test that asks."""
    try:
        return "ok", _table(path)
    except InputError as e:
        return "input", str(e)


# --- hand-encoded wire format ----------------------------------------------


def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        byte, n = n & 0x7F, n >> 7
        out.append(byte | (0x80 if n else 0))
        if not n:
            return bytes(out)


def _len_field(number: int, payload: bytes) -> bytes:
    return _varint(number << 3 | 2) + _varint(len(payload)) + payload


def _int_field(number: int, value: int) -> bytes:
    return _varint(number << 3) + _varint(value)


def _wire_tensor(dims: bytes = _len_field(1, _varint(4)), data_type: int = 1, name: bytes = b"w", raw: bytes | None = F4, extra: bytes = b"") -> bytes:
    return dims + _int_field(2, data_type) + _len_field(8, name) + (b"" if raw is None else _len_field(9, raw)) + extra


def _wire_model(*tensors: bytes, nodes: tuple[bytes, ...] = ()) -> bytes:
    return _len_field(7, b"".join(_len_field(5, t) for t in tensors) + b"".join(_len_field(1, n) for n in nodes))


def _nested_if(depth: int) -> bytes:
    graph = _len_field(5, _wire_tensor())
    for _ in range(depth):
        graph = _len_field(1, _len_field(4, b"If") + _len_field(5, _len_field(1, b"then_branch") + _len_field(6, graph)))
    return _len_field(7, graph)


def _constant_node(tensor: bytes) -> bytes:
    return _len_field(2, b"C") + _len_field(4, b"Constant") + _len_field(5, _len_field(1, b"value") + _len_field(5, tensor))


def _if_node(then_graph: bytes) -> bytes:
    return _len_field(2, b"Y") + _len_field(4, b"If") + _len_field(5, _len_field(1, b"then_branch") + _len_field(6, then_graph))


def _write(tmp_path: Path, data: bytes, name: str = "m.onnx") -> Path:
    path = tmp_path / name
    path.write_bytes(data)
    return path


# --- valid models: the same tensors as onnx -------------------------------


@pytest.mark.parametrize("code", sorted(NUMERIC))
def test_every_numeric_element_type_reads_as_onnx_reads_it(code: int, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    inits = [_raw_tensor("w", code, (3, 2)), _raw_tensor("scalar", code, ()), _raw_tensor("empty", code, (0, 5))]
    const = helper.make_node("Constant", [], ["C"], value=_raw_tensor("c", code, (2,)))
    path = _write(tmp_path, helper.make_model(helper.make_graph([const], "g", [], [], initializer=inits)).SerializeToString())
    assert _read_light(path)
    table = _table(path)
    reference = _onnx_reference(path)
    assert [row[0] for row in table] == ["w", "scalar", "empty", "C"]
    for name, shape, dtype, data in table:
        expected = reference[name]
        assert shape == expected.shape
        assert dtype == np.dtype(NUMERIC[code]).name
        assert data == np.ascontiguousarray(expected).tobytes()
    assert table == _table_with_onnx(path, monkeypatch)


@pytest.mark.parametrize("external", [False, True], ids=["inline", "external"])
def test_random_models_with_subgraphs_and_constants_match_onnx_numpy_helper(external: bool, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for k in range(12):
        folder = tmp_path / f"m{k}"
        folder.mkdir()
        path = folder / "m.onnx"
        model = _random_model(k)
        if external:
            onnx.save_model(model, str(path), save_as_external_data=True, all_tensors_to_one_file=k % 2 == 0, location="m.data", size_threshold=0)
        else:
            path.write_bytes(model.SerializeToString())
        assert _read_light(path)
        reference = _onnx_reference(path)
        table = {name: (shape, dtype, data) for name, shape, dtype, data in _table(path)}
        assert set(reference) <= set(table)
        for name, expected in reference.items():
            shape, dtype, data = table[name]
            assert shape == expected.shape, name
            assert dtype == (expected.dtype.name if expected.dtype != ml_dtypes.bfloat16 else "bfloat16"), name
            assert data == np.ascontiguousarray(expected).tobytes(), name
        # What is not an initializer or Constant is an Identity's alias of one.
        for alias in set(table) - set(reference):
            assert alias in {"If/then_branch/a", "If/else_branch/b", "Loop/body/body"}
        assert _table(path) == _table_with_onnx(path, monkeypatch)


def test_element_types_sharescan_skips_are_left_out_without_an_error(tmp_path: Path) -> None:
    inits = [
        helper.make_tensor("u4", TensorProto.UINT4, [4], [1, 2, 3, 4]),
        helper.make_tensor("i4", TensorProto.INT4, [2], [-1, 1]),
        helper.make_tensor("fnuz", TensorProto.FLOAT8E4M3FNUZ, [2], b"\x10\x20", raw=True),
        helper.make_tensor("s", TensorProto.STRING, [2], [b"a", b"b"]),  # type: ignore[list-item]
        _raw_tensor("kept", TensorProto.FLOAT, (2,)),
    ]
    path = _write(tmp_path, helper.make_model(helper.make_graph([], "g", [], [], initializer=inits)).SerializeToString())
    assert [row[0] for row in _table(path)] == ["kept"]


@pytest.mark.parametrize(
    "case",
    [
        "unpacked dims",
        "packed and unpacked dims together",
        "data_type given twice: the last wins",
        "name given twice: the last wins",
        "raw_data given twice: the last wins",
        "a varint padded to five bytes",
        "unknown fields of every wire type",
        "two initializers of one name",
        "a zero-sized tensor with empty raw_data",
    ],
)
def test_wire_encodings_protobuf_accepts_are_read_as_onnx_reads_them(case: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    body = _len_field(8, b"w") + _len_field(9, F4)
    data = {
        "unpacked dims": _wire_model(_int_field(1, 2) + _int_field(1, 2) + _int_field(2, 1) + body),
        "packed and unpacked dims together": _wire_model(_int_field(1, 2) + _len_field(1, _varint(2)) + _int_field(2, 1) + body),
        "data_type given twice: the last wins": _wire_model(_len_field(1, _varint(4)) + _int_field(2, 7) + _int_field(2, 1) + body),
        "name given twice: the last wins": _wire_model(_len_field(1, _varint(4)) + _int_field(2, 1) + _len_field(8, b"first") + body),
        "raw_data given twice: the last wins": _wire_model(_len_field(1, _varint(4)) + _int_field(2, 1) + _len_field(9, b"\x01" * 3) + body),
        "a varint padded to five bytes": _wire_model(_len_field(1, _varint(4)) + _varint(2 << 3) + b"\x81\x80\x80\x80\x00" + body),
        "unknown fields of every wire type": _wire_model(_wire_tensor(extra=_int_field(99, 5) + b"\x7d" + b"\x00" * 4 + b"\x79" + b"\x00" * 8 + _len_field(98, b"zz"))),
        "two initializers of one name": _wire_model(_wire_tensor(), _wire_tensor(raw=F4[::-1])),
        "a zero-sized tensor with empty raw_data": _wire_model(_wire_tensor(dims=_len_field(1, _varint(0)), raw=b"")),
    }[case]
    path = _write(tmp_path, data)
    assert _read_light(path)
    table = _table(path)
    assert table == _table_with_onnx(path, monkeypatch)
    model = onnx.load_model_from_string(data)
    assert [(t.name, tuple(t.dims), numpy_helper.to_array(t).tobytes()) for t in model.graph.initializer] == [(row[0], row[1], row[3]) for row in table]


def test_graphs_nested_thirty_deep_match_onnx(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = _write(tmp_path, _nested_if(30))
    assert _read_light(path)
    table = _table(path)
    assert table == _table_with_onnx(path, monkeypatch)
    assert table[0][0] == "If/then_branch/" * 30 + "w"


# --- hostile bytes: a correct read or one InputError ----------------------


@pytest.mark.parametrize(
    "case",
    [
        "an eleven-byte varint",
        "a length past the end",
        "a length of 2**64 - 1",
        "a truncated key",
        "field number 0",
        "graphs nested 5000 deep",
        "raw_data shorter than the shape",
        "raw_data longer than the shape",
        "a negative dim",
        "dims whose product overflows int64",
        "element type 0",
        "element type 999",
        "element type -1",
        "a string tensor with raw_data",
        "no values at all",
        "an Identity without an output",
        "a subgraph Constant shorter than its shape",
    ],
)
def test_malformed_wire_bytes_end_in_one_input_error(case: str, tmp_path: Path) -> None:
    ok = _wire_model(_wire_tensor())
    data = {
        "an eleven-byte varint": _wire_model(_len_field(1, _varint(4)) + _varint(2 << 3) + b"\x81" + b"\x80" * 9 + b"\x00" + _len_field(8, b"w") + _len_field(9, F4)),
        "a length past the end": ok + b"\x0a\xff\xff\x03",
        "a length of 2**64 - 1": ok + b"\x0a" + _varint((1 << 64) - 1),
        "a truncated key": ok + b"\x80",
        "field number 0": ok + b"\x00\x00",
        "graphs nested 5000 deep": _nested_if(5000),
        "raw_data shorter than the shape": _wire_model(_wire_tensor(raw=F4[:12])),
        "raw_data longer than the shape": _wire_model(_wire_tensor(raw=F4 + b"\x00")),
        "a negative dim": _wire_model(_wire_tensor(dims=_int_field(1, (1 << 64) - 4))),
        "dims whose product overflows int64": _wire_model(_wire_tensor(dims=_len_field(1, _varint(1 << 40) * 2))),
        "element type 0": _wire_model(_wire_tensor(data_type=0)),
        "element type 999": _wire_model(_wire_tensor(data_type=999)),
        "element type -1": _wire_model(_wire_tensor(data_type=(1 << 64) - 1)),
        "a string tensor with raw_data": _wire_model(_wire_tensor(dims=_len_field(1, _varint(1)), data_type=TensorProto.STRING, raw=b"abc")),
        "no values at all": _wire_model(_wire_tensor(raw=None)),
        "an Identity without an output": _wire_model(_wire_tensor(), nodes=(_len_field(1, b"w") + _len_field(4, b"Identity"),)),
        "a subgraph Constant shorter than its shape": _wire_model(_wire_tensor(), nodes=(_if_node(_len_field(1, _constant_node(_wire_tensor(dims=_len_field(1, _varint(2)), raw=F4[:4])))),)),
    }[case]
    with pytest.raises(InputError):
        _table(_write(tmp_path, data))


def test_every_truncation_of_a_model_is_a_correct_read_or_an_input_error(tmp_path: Path) -> None:
    model = _random_model(1)  # an If with two branches, Constants in each
    data = model.SerializeToString()
    full = _table(_write(tmp_path, data, "full.onnx"))
    reads = 0
    for cut in range(len(data)):
        kind, value = _outcome(_write(tmp_path, data[:cut]))
        if kind == "ok":  # a prefix that is still a whole message: the tensors it holds, as the full file has them
            reads += 1
            assert set(value) <= set(full)
    assert reads < len(data)  # most prefixes are refused


def test_flipped_and_spliced_bytes_never_raise_anything_but_input_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    bases = [_random_model(k).SerializeToString() for k in range(6)]
    outcomes = {"ok": 0, "input": 0}
    for i in range(400):
        data = bytearray(bases[i % len(bases)])
        where = int(rng.integers(0, len(data)))
        if i % 3 == 0:
            data[where] = int(rng.integers(0, 256))
        elif i % 3 == 1:
            data[where] ^= 1 << int(rng.integers(0, 8))
        else:
            data[where:where] = b"\xff" * int(rng.integers(1, 12))
        path = _write(tmp_path, bytes(data))
        kind, value = _outcome(path)
        outcomes[kind] += 1
        if kind == "ok" and _read_light(path):
            # onnx may refuse a file whose damage lies where the reader does not look;
            # where onnx reads it, both give the same tensors.
            try:
                onnx.load_model_from_string(bytes(data))
            except Exception:
                continue
            assert value == _table_with_onnx(path, monkeypatch)
    assert outcomes["ok"] > 0 and outcomes["input"] > 0  # the mutations reach both outcomes


# --- external data: only files inside the model's folder ------------------


def _external_model(location: str | None, offset: str | None = None, length: str | None = None, dims: tuple[int, ...] = (4,)) -> bytes:
    tensor = TensorProto(name="w", data_type=TensorProto.FLOAT, dims=list(dims), data_location=TensorProto.EXTERNAL)
    for key, value in (("location", location), ("offset", offset), ("length", length)):
        if value is not None:
            entry = tensor.external_data.add()
            entry.key, entry.value = key, value
    return helper.make_model(helper.make_graph([], "g", [], [], initializer=[tensor])).SerializeToString()


@pytest.fixture
def model_folder(tmp_path: Path) -> Path:
    folder = tmp_path / "model"
    folder.mkdir()
    (folder / "d.bin").write_bytes(bytes(range(64)))
    (tmp_path / "outside.bin").write_bytes(bytes(range(64)))
    (folder / "sub").mkdir()
    os.mkfifo(folder / "fifo")
    os.symlink(tmp_path / "outside.bin", folder / "link_out")
    os.symlink("/dev/zero", folder / "link_zero")
    os.symlink(folder / "d.bin", folder / "link_in")
    return folder


@pytest.mark.parametrize(
    ("location", "offset", "length", "refusal"),
    [
        ("ABSOLUTE", None, None, "leaves the model's folder"),
        ("../outside.bin", None, None, "leaves the model's folder"),
        ("sub/../../outside.bin", None, None, "leaves the model's folder"),
        ("link_out", None, None, "leaves the model's folder"),
        ("link_zero", None, None, "leaves the model's folder"),
        ("", None, None, "leaves the model's folder"),
        (None, "0", None, "leaves the model's folder"),
        (".", None, None, "leaves the model's folder"),
        ("sub", None, None, "not a regular file"),
        ("fifo", None, None, "not a regular file"),
        ("missing.bin", None, None, "is missing"),
        ("d.bin", "-1", None, "negative offset"),
        ("d.bin", "0x10", None, "malformed offset"),
        ("d.bin", "9" * 5000, None, "malformed offset"),
        ("d.bin", "60", None, "does not fit"),
        ("d.bin", "0", "8", "does not fit"),
    ],
)
def test_external_data_outside_the_folder_or_outside_the_file_is_refused(location: str | None, offset: str | None, length: str | None, refusal: str, model_folder: Path) -> None:
    if location == "ABSOLUTE":
        location = str(model_folder.parent / "outside.bin")
    path = _write(model_folder, _external_model(location, offset, length))
    with pytest.raises(InputError, match=refusal):
        _table(path)


def test_external_data_inside_the_folder_is_read_at_its_offset_also_through_a_symlink(model_folder: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    expected = bytes(range(16, 32))
    for location in ("d.bin", "link_in", "sub/../d.bin"):
        path = _write(model_folder, _external_model(location, "16", "16"))
        assert _read_light(path)
        table = _table(path)
        assert table == [("w", (4,), "float32", expected)]
        assert table == _table_with_onnx(path, monkeypatch)


# --- the command line: one error line, exit 2, through the early exit -----

# PYTHONUNBUFFERED would write stdout through at once and hide a flush the early exit skipped.
BUFFERED = {k: v for k, v in os.environ.items() if k != "PYTHONUNBUFFERED"}


def test_hostile_files_are_one_error_line_and_exit_2_from_the_script_and_python_m(tmp_path: Path) -> None:
    hostile = {
        "varint": _wire_model(_len_field(1, _varint(4)) + _varint(2 << 3) + b"\x81" + b"\x80" * 9 + b"\x00"),
        "nested": _nested_if(5000),
        "short": _wire_model(_wire_tensor(raw=F4[:12])),
        "escape": _external_model("../outside.bin"),
    }
    (tmp_path / "outside.bin").write_bytes(bytes(64))
    paths = [str(_write(tmp_path, data, f"{name}.onnx")) for name, data in hostile.items()]
    script = str(Path(sys.executable).parent / "sharescan")
    for command in ([script], [sys.executable, "-m", "sharescan"]):
        for path in paths:
            out = subprocess.run([*command, "analyze", path, "--json"], cwd=ROOT, env=BUFFERED, capture_output=True, text=True, timeout=60)
            assert out.returncode == 2, (command, path, out.stderr)
            assert out.stdout == ""
            lines = out.stderr.splitlines()
            assert len(lines) == 1 and lines[0].startswith("error: ") and path in lines[0], lines


def test_early_exit_keeps_a_large_json_document_a_report_file_and_exit_code_1(tmp_path: Path) -> None:
    from safetensors.numpy import save_file

    w = np.arange(256, dtype=np.float32).reshape(16, 16)
    tensors = {f"layer.{i:04d}.weight": (w if i % 2 else w + i) for i in range(1500)}
    model = tmp_path / "many.safetensors"
    save_file({k: np.ascontiguousarray(v) for k, v in tensors.items()}, str(model))
    report = tmp_path / "report.md"
    out = subprocess.run([sys.executable, "-m", "sharescan", "analyze", str(model), "--json", "--report", str(report), "--fail-above", "0"], cwd=ROOT, env=BUFFERED, capture_output=True, timeout=120)
    assert out.returncode == 1, out.stderr
    assert len(out.stdout) > 256 * 1024  # far more than a pipe holds: written through while the reader drains it
    document = json.loads(out.stdout)
    assert document["totals"]["reclaimable_bytes"] >= 749 * w.nbytes
    text = report.read_text()
    assert text.startswith("# sharescan analysis") and "layer.1499.weight" in text and text.endswith("\n")  # the whole report, to its last group member
    assert sorted(p.name for p in tmp_path.iterdir()) == ["many.safetensors", "report.md"]  # no temporary file left beside it


def test_a_small_json_document_left_in_the_stdout_buffer_reaches_the_pipe_from_the_installed_script() -> None:
    """A document smaller than the stream's buffer is written only by the flush before the early exit."""
    script = str(Path(sys.executable).parent / "sharescan")
    out = subprocess.run([script, "analyze", str(ROOT / "fixtures" / "mlp.onnx"), "--json"], cwd=ROOT, env=BUFFERED, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert 0 < len(out.stdout) < 8192
    assert json.loads(out.stdout)["models"][0]["path"].endswith("mlp.onnx")


def test_a_hundred_thousand_huge_dims_are_refused_at_once_with_a_short_message(tmp_path: Path) -> None:
    # 900 KB of packed dims of 2^61: multiplying them all before the check took 16 s.
    tensor = _len_field(1, _varint(1 << 61) * 100_000) + _int_field(2, 1) + _len_field(8, b"w") + _len_field(9, b"")
    path = _write(tmp_path, _wire_model(tensor))
    with pytest.raises(InputError, match="impossible dims") as refused:
        load_model(str(path), 0, LoadOptions())
    assert "(100000 dims)" in str(refused.value) and len(str(refused.value)) < 500


def _model_with_location(location: bytes) -> bytes:
    t = TensorProto(name="W", data_type=TensorProto.FLOAT, dims=[4], data_location=TensorProto.EXTERNAL)
    entry = t.external_data.add()
    entry.key, entry.value = "location", "P" * len(location)
    data = helper.make_model(helper.make_graph([], "g", [], [], initializer=[t])).SerializeToString()
    return data.replace(b"P" * len(location), location)


@pytest.mark.parametrize(("location", "says"), [(b"w\xffxxxxxxxxx", "not UTF-8"), (b"a" * 5000, "cannot be resolved")], ids=["not-utf8", "too-long"])
def test_an_external_data_path_that_is_not_utf8_or_too_long_is_one_input_error(location: bytes, says: str, tmp_path: Path) -> None:
    path = _write(tmp_path, _model_with_location(location))
    with pytest.raises(InputError, match=says) as refused:
        load_model(str(path), 0, LoadOptions())
    assert len(str(refused.value)) < 500
