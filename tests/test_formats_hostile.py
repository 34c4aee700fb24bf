"""Hostile files are refused in one line, in bounded time and memory.

Each case is a file a careless or malicious producer could hand over: a
shard index of the wrong shape or pointing outside its folder, a
safetensors header with values Python's json accepts but no tensor has
(NaN offsets, 5,000-digit integers, 100,000 levels of nesting), an ONNX
tensor whose bytes do not fit its shape wherever it lives (initializer,
If branch, Constant node), and inputs that are not regular files (a FIFO
that would block ``open``, /dev/zero that never ends). The contract is the
one tests/test_bad_input.py checks: exit 2, one ``error:`` line, no
traceback, nothing written, inputs untouched.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from tests.test_bad_input import REPO, assert_advice, assert_clean_error, good_safetensors, raw_safetensors, refuse, write_index

# --------------------------------------------------------------------------
# helpers


def header(records: dict) -> bytes:
    return json.dumps(records).encode()


def one_tensor(**fields: object) -> dict:
    """A one-tensor header record with ``fields`` replacing the valid ones."""
    record: dict[str, object] = {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]}
    record.update(fields)
    return {"t": record}


def bin_index_folder(folder: Path, weight_map: object) -> Path:
    folder.mkdir()
    (folder / "pytorch_model.bin.index.json").write_text(json.dumps({"metadata": {}, "weight_map": weight_map}))
    return folder


def run_short(*args: object, cwd: Path, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    """analyze ARGS with a short timeout: a hang fails the test instead of the suite."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
    return subprocess.run([sys.executable, "-m", "sharescan", "analyze", *map(str, args)], cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)


def regular_files(root: Path) -> dict[str, bytes]:
    """Every regular file under root with its bytes (FIFOs and devices are not read)."""
    out: dict[str, bytes] = {}
    for p in sorted(root.rglob("*")):
        if p.is_symlink():
            out[str(p.relative_to(root))] = os.readlink(p).encode()
        elif p.is_file():
            out[str(p.relative_to(root))] = p.read_bytes()
    return out


def refuse_special(tmp_path: Path, target: Path, *words: str) -> str:
    """The refusal contract for inputs that must not be opened."""
    before = regular_files(tmp_path)
    report = tmp_path / "report.md"
    proc = run_short(target, "--report", report, cwd=tmp_path)
    line = assert_clean_error(proc, *words)
    assert_advice(line)
    assert proc.stdout == ""
    assert not report.exists()
    assert regular_files(tmp_path) == before
    return line


# --------------------------------------------------------------------------
# 1. sharded indexes


@pytest.mark.parametrize("weight_map", [["a.safetensors"], {"a.weight": 3}, {"a.weight": ["a.safetensors"]}, {"a.weight": None}, "a.safetensors"], ids=["list", "int-value", "list-value", "null-value", "string"])
def test_safetensors_index_whose_weight_map_has_the_wrong_shape_is_refused(tmp_path, weight_map):
    folder = tmp_path / "hf"
    write_index(folder, weight_map)
    refuse(tmp_path, folder, words=("model.safetensors.index.json", "weight_map"))


@pytest.mark.parametrize("weight_map", [["a.bin"], {"a.weight": 3}, {"a.weight": ["a.bin"]}], ids=["list", "int-value", "list-value"])
def test_bin_index_whose_weight_map_has_the_wrong_shape_is_refused(tmp_path, weight_map):
    folder = bin_index_folder(tmp_path / "hf", weight_map)
    refuse(tmp_path, folder, words=("pytorch_model.bin.index.json", "weight_map"))


@pytest.mark.parametrize("kind", ["safetensors", "bin"])
@pytest.mark.parametrize("shard", ["a\x00b.safetensors", "/etc/passwd", "../x.safetensors", "sub/../../x.safetensors", ""], ids=["nul", "absolute", "dotdot", "dotdot-inside", "empty"])
def test_index_shard_path_that_is_not_a_plain_relative_name_is_refused(tmp_path, kind, shard):
    good_safetensors(tmp_path / "x.safetensors")
    folder = tmp_path / "hf"
    if kind == "safetensors":
        write_index(folder, {"a.weight": shard})
        name = "model.safetensors.index.json"
    else:
        bin_index_folder(folder, {"a.weight": shard})
        name = "pytorch_model.bin.index.json"
    line = refuse(tmp_path, folder, words=(name, "shard"))
    assert "\x00" not in line


@pytest.mark.parametrize("kind", ["safetensors", "bin"])
def test_index_shard_that_is_a_symlink_out_of_the_folder_is_refused(tmp_path, kind):
    good_safetensors(tmp_path / "x.safetensors")
    folder = tmp_path / "hf"
    if kind == "safetensors":
        write_index(folder, {"a.weight": "link.safetensors"})
        name = "model.safetensors.index.json"
    else:
        bin_index_folder(folder, {"a.weight": "link.safetensors"})
        name = "pytorch_model.bin.index.json"
    (folder / "link.safetensors").symlink_to(tmp_path / "x.safetensors")
    refuse(tmp_path, folder, words=(name, "link.safetensors", "folder"))


def test_index_shard_that_is_a_fifo_is_refused_without_opening_it(tmp_path):
    folder = tmp_path / "hf"
    write_index(folder, {"a.weight": "a.safetensors"})
    os.mkfifo(folder / "a.safetensors")
    refuse_special(tmp_path, folder, "a.safetensors", "regular file")


def test_valid_safetensors_index_still_loads(tmp_path):
    folder = tmp_path / "hf"
    folder.mkdir()
    good_safetensors(folder / "model-00001-of-00001.safetensors")
    write_index(folder, {"a.weight": "model-00001-of-00001.safetensors", "b.weight": "model-00001-of-00001.safetensors"})
    proc = run_short(folder, "--json", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["models"][0]["n_tensors"] == 2


# --------------------------------------------------------------------------
# 2. safetensors headers


HOSTILE_HEADERS = {
    "dtype-list": header(one_tensor(dtype=["F32"])),
    "dtype-dict": header(one_tensor(dtype={"F32": 1})),
    "offsets-infinity": b'{"t": {"dtype": "F32", "shape": [2], "data_offsets": [0, Infinity]}}',
    "offsets-nan": b'{"t": {"dtype": "F32", "shape": [2], "data_offsets": [NaN, 8]}}',
    "shape-infinity": b'{"t": {"dtype": "F32", "shape": [Infinity], "data_offsets": [0, 8]}}',
    "shape-float": header(one_tensor(shape=[2.0])),
    "shape-bool": header(one_tensor(shape=[True, 2], data_offsets=[0, 8])),
    "offsets-5000-digits": b'{"t": {"dtype": "F32", "shape": [2], "data_offsets": [0, ' + b"9" * 5000 + b"]}}",
    "shape-5000-digits": b'{"t": {"dtype": "F32", "shape": [' + b"9" * 5000 + b'], "data_offsets": [0, 8]}}',
    "shape-overflows-int64": header(one_tensor(shape=[0, 2**70], data_offsets=[0, 0])),
    "shape-product-overflows": header(one_tensor(shape=[0, 2**40, 2**40], data_offsets=[0, 0])),
    "zero-size-too-big-for-numpy": header(one_tensor(shape=[2**60, 0, 3], data_offsets=[0, 0])),
    "nested-100000": b'{"t": ' + b"[" * 100_000 + b"]" * 100_000 + b"}",
    "nested-metadata": b'{"__metadata__": {"k": ' + b"[" * 100_000 + b"]" * 100_000 + b"}}",
    "offsets-reversed": header(one_tensor(data_offsets=[8, 0])),
    "offsets-three": header(one_tensor(data_offsets=[0, 4, 8])),
    "offsets-past-end": header(one_tensor(data_offsets=[1 << 40, (1 << 40) + 8])),
    "metadata-not-strings": header({"__metadata__": {"k": 1}, **one_tensor()}),
    "record-not-object": header({"t": [1, 2]}),
}


@pytest.mark.parametrize("raw", HOSTILE_HEADERS.values(), ids=HOSTILE_HEADERS.keys())
def test_hostile_safetensors_header_is_refused(tmp_path, raw):
    path = raw_safetensors(tmp_path / "h.safetensors", raw, b"\x00" * 8)
    refuse(tmp_path, path, words=("h.safetensors",))


def test_valid_hand_written_safetensors_header_loads(tmp_path):
    """The checks above refuse nothing a valid writer produces."""
    raw = header({"__metadata__": {"format": "pt"}, **one_tensor(), "e": {"dtype": "F32", "shape": [0, 3], "data_offsets": [8, 8]}})
    path = raw_safetensors(tmp_path / "ok.safetensors", raw, np.arange(2, dtype=np.float32).tobytes())
    proc = run_short(path, "--json", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["models"][0]["n_tensors"] == 2


# --------------------------------------------------------------------------
# 3. ONNX tensors whose bytes do not fit their shape, and malformed nodes


def _tensor(name: str, dims: list[int], raw: bytes):
    from onnx import TensorProto

    t = TensorProto(name=name, data_type=TensorProto.FLOAT, dims=dims)
    t.raw_data = raw
    return t


def _save(path: Path, nodes: list, initializers: list, outputs: list[str]) -> Path:
    from onnx import TensorProto, helper

    graph = helper.make_graph(
        nodes,
        "g",
        [helper.make_tensor_value_info("X", TensorProto.FLOAT, [2])],
        [helper.make_tensor_value_info(o, TensorProto.FLOAT, None) for o in outputs],
        initializer=initializers,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    path.write_bytes(model.SerializeToString())
    return path


def _if_model(path: Path, branch_init) -> Path:
    from onnx import TensorProto, helper

    def branch(init, name):
        return helper.make_graph([helper.make_node("Identity", [init.name], [name])], name, [], [helper.make_tensor_value_info(name, TensorProto.FLOAT, None)], initializer=[init])

    good = _tensor("then_w", [2], np.ones(2, np.float32).tobytes())
    cond = helper.make_tensor("cond", TensorProto.BOOL, [], [True])
    node = helper.make_node("If", ["cond"], ["Y"], then_branch=branch(good, "a"), else_branch=branch(branch_init, "b"))
    w = _tensor("W", [2], np.ones(2, np.float32).tobytes())
    return _save(path, [node, helper.make_node("Add", ["X", "W"], ["Z"])], [cond, w], ["Y", "Z"])


def test_onnx_initializer_raw_data_not_a_multiple_of_the_element_size_is_refused(tmp_path):
    from onnx import helper

    path = _save(tmp_path / "m.onnx", [helper.make_node("Add", ["X", "W"], ["Y"])], [_tensor("W", [2], b"\x00" * 7)], ["Y"])
    refuse(tmp_path, path, words=("m.onnx", "'W'"))


def test_onnx_initializer_raw_data_of_the_wrong_length_is_refused(tmp_path):
    from onnx import helper

    path = _save(tmp_path / "m.onnx", [helper.make_node("Add", ["X", "W"], ["Y"])], [_tensor("W", [2], b"\x00" * 12)], ["Y"])
    refuse(tmp_path, path, words=("m.onnx", "'W'"))


@pytest.mark.parametrize("nbytes", [7, 12])
def test_onnx_if_branch_initializer_with_bad_raw_data_is_refused(tmp_path, nbytes):
    path = _if_model(tmp_path / "m.onnx", _tensor("else_w", [2], b"\x00" * nbytes))
    refuse(tmp_path, path, words=("m.onnx", "else_w"))


@pytest.mark.parametrize("nbytes", [7, 12])
def test_onnx_constant_node_with_bad_raw_data_is_refused(tmp_path, nbytes):
    from onnx import helper

    node = helper.make_node("Constant", [], ["C"], value=_tensor("c", [2], b"\x00" * nbytes))
    w = _tensor("W", [2], np.ones(2, np.float32).tobytes())
    path = _save(tmp_path / "m.onnx", [node, helper.make_node("Add", ["C", "W"], ["Y"])], [w], ["Y"])
    refuse(tmp_path, path, words=("m.onnx", "'C'"))


def test_onnx_typed_data_of_the_wrong_length_is_refused(tmp_path):
    from onnx import TensorProto, helper

    w = TensorProto(name="W", data_type=TensorProto.FLOAT, dims=[3], float_data=[1.0, 2.0])
    path = _save(tmp_path / "m.onnx", [helper.make_node("Add", ["X", "W"], ["Y"])], [w], ["Y"])
    refuse(tmp_path, path, words=("m.onnx", "'W'"))


@pytest.mark.parametrize("dims", [[-1], [2, -3], [1 << 62, 1 << 62]], ids=["negative", "negative-second", "overflow"])
def test_onnx_initializer_with_impossible_dims_is_refused(tmp_path, dims):
    from onnx import helper

    path = _save(tmp_path / "m.onnx", [helper.make_node("Add", ["X", "W"], ["Y"])], [_tensor("W", dims, b"\x00" * 8)], ["Y"])
    refuse(tmp_path, path, words=("m.onnx", "'W'"))


def test_onnx_zero_size_initializer_whose_other_dims_numpy_cannot_hold_is_refused(tmp_path):
    from onnx import helper

    path = _save(tmp_path / "m.onnx", [helper.make_node("Identity", ["W"], ["Y"])], [_tensor("W", [2**60, 0, 3], b"")], ["Y"])
    refuse(tmp_path, path, words=("m.onnx", "'W'"))


def test_onnx_identity_node_without_output_is_refused(tmp_path):
    from onnx import helper

    w = _tensor("W", [2], np.ones(2, np.float32).tobytes())
    path = _save(tmp_path / "m.onnx", [helper.make_node("Identity", ["W"], []), helper.make_node("Add", ["X", "W"], ["Y"])], [w], ["Y"])
    refuse(tmp_path, path, words=("m.onnx", "identity"))


def test_onnx_external_data_location_with_a_nul_byte_is_refused(tmp_path):
    from tests.test_bad_input import onnx_matmul, set_external_location

    folder = tmp_path / "model"
    folder.mkdir()
    path = onnx_matmul(folder / "model.onnx", external="weights.bin")
    set_external_location(path, "weights\x00.bin")
    line = refuse(tmp_path, path, words=("model.onnx", "'W'"))
    assert "\x00" not in line


def test_onnx_external_data_that_is_a_fifo_is_refused_without_opening_it(tmp_path):
    from tests.test_bad_input import onnx_matmul

    folder = tmp_path / "model"
    folder.mkdir()
    path = onnx_matmul(folder / "model.onnx", external="weights.bin")
    (folder / "weights.bin").unlink()
    os.mkfifo(folder / "weights.bin")
    refuse_special(tmp_path, path, "weights.bin", "regular file")


# --------------------------------------------------------------------------
# 4. inputs that are not regular files


def test_fifo_input_is_refused_without_blocking(tmp_path):
    fifo = tmp_path / "model.safetensors"
    os.mkfifo(fifo)
    refuse_special(tmp_path, fifo, "model.safetensors", "regular file")


def test_fifo_without_suffix_is_refused_without_blocking(tmp_path):
    fifo = tmp_path / "model"
    os.mkfifo(fifo)
    refuse_special(tmp_path, fifo, "model", "regular file")


def test_socket_input_is_refused(tmp_path):
    path = tmp_path / "s.pt"
    with socket.socket(socket.AF_UNIX) as s:
        s.bind(str(path))
        refuse_special(tmp_path, path, "s.pt", "regular file")


def test_dev_zero_is_refused_without_reading_it(tmp_path):
    refuse_special(tmp_path, Path("/dev/zero"), "/dev/zero", "regular file")


@pytest.mark.parametrize("name", ["model.pt", "model.safetensors", "model.onnx", "model"])
def test_symlink_to_dev_zero_is_refused_without_reading_it(tmp_path, name):
    link = tmp_path / name
    link.symlink_to("/dev/zero")
    refuse_special(tmp_path, link, name, "regular file")
