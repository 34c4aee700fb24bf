"""ONNX graphs read without the onnx package: the same tensors as onnx's parse, and onnx's parse for anything else."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from sharescan.sources import onnx_source
from sharescan.sources.onnx_layout import read_layout
from sharescan.sources.onnx_source import load_onnx
from sharescan.sources.onnx_wire import parse_model
from tests.conftest import FIXTURES, ROOT

FIXTURE_MODELS = ["tiny_lm_folded.onnx", "tiny_lm_unfolded.onnx", "tiny_lm_dynamo.onnx", "cnn.onnx", "mlp.onnx", "pair_a.onnx", "tiny_lm_external/model.onnx"]


def _table(path: Path) -> tuple:
    loaded = load_onnx(path, 0)
    tensors = [(e.name, e.shape, e.dtype, e.storage, e.read().tobytes()) for e in loaded.tensors]
    return tensors, loaded.reused, loaded.files, loaded.file_bytes


def _with_onnx(path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple:
    with monkeypatch.context() as m:
        m.setattr(onnx_source, "_read_light", lambda layout: None)
        return _table(path)


def _light_read(path: Path) -> bool:
    return onnx_source._read_light(read_layout(path)) is not None


def _save(path: Path, nodes: list, initializers: list, outputs: list[str], **kwargs) -> Path:
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("X", TensorProto.FLOAT, [2])], [helper.make_tensor_value_info(o, TensorProto.FLOAT, None) for o in outputs], initializer=initializers)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    if kwargs:
        onnx.save_model(model, str(path), **kwargs)
    else:
        path.write_bytes(model.SerializeToString())
    return path


def _raw(name: str, array: np.ndarray) -> TensorProto:
    return numpy_helper.from_array(np.ascontiguousarray(array), name)


@pytest.mark.parametrize("name", FIXTURE_MODELS)
def test_fixture_models_are_read_without_onnx_into_the_same_table(name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    path = FIXTURES / name
    assert _light_read(path)
    assert _table(path) == _with_onnx(path, monkeypatch)


def test_subgraphs_constants_identities_and_shared_inputs_match_onnx(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    rng = np.random.default_rng(0)
    w = rng.standard_normal((4, 2)).astype(np.float32)

    def branch(name: str, init: TensorProto) -> onnx.GraphProto:
        return helper.make_graph([helper.make_node("Identity", [init.name], [name])], name, [], [helper.make_tensor_value_info(name, TensorProto.FLOAT, None)], initializer=[init])

    cond = _raw("cond", np.array(True))
    node_if = helper.make_node("If", ["cond"], ["Y"], then_branch=branch("a", _raw("then_w", w)), else_branch=branch("b", _raw("else_w", -w)))
    const = helper.make_node("Constant", [], ["C"], value=_raw("c", w.astype(np.float16)))
    nodes = [node_if, const, helper.make_node("Identity", ["W"], ["W2"]), helper.make_node("MatMul", ["X", "W"], ["Z"]), helper.make_node("MatMul", ["X", "W2"], ["Z2"]), helper.make_node("Add", ["Z", "W"], ["Z3"])]
    inits = [cond, _raw("W", w), _raw("big", rng.standard_normal((64, 32)).astype(np.float32)), _raw("ids", np.arange(6, dtype=np.int64).reshape(2, 3))]
    path = _save(tmp_path / "m.onnx", nodes, inits, ["Y", "Z", "Z2", "Z3"])
    assert _light_read(path)
    light = _table(path)
    assert light == _with_onnx(path, monkeypatch)
    names = {t[0] for t in light[0]}
    assert {"W", "W2", "C", "If/then_branch/then_w", "If/else_branch/else_w", "big", "ids"} <= names
    assert light[1] == (("W", 3),)  # MatMul, Add and the Identity read it


def test_external_data_is_read_without_onnx(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    w = np.random.default_rng(1).standard_normal((64, 64)).astype(np.float32)
    path = _save(tmp_path / "m.onnx", [helper.make_node("MatMul", ["X", "W"], ["Y"])], [_raw("W", w), _raw("V", -w)], ["Y"], save_as_external_data=True, all_tensors_to_one_file=True, location="m.onnx.data", size_threshold=0)
    assert _light_read(path)
    light = _table(path)
    assert light == _with_onnx(path, monkeypatch)
    assert np.frombuffer(light[0][0][4], np.float32).reshape(64, 64).tolist() == w.tolist()


@pytest.mark.parametrize(
    "case",
    ["typed values", "value_floats constant", "string tensor", "sparse initializer"],
)
def test_what_the_light_reader_leaves_to_onnx_loads_as_before(case: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    w = _raw("W", np.ones((2, 2), np.float32))
    nodes = [helper.make_node("Add", ["X", "W"], ["Y"])]
    inits = [w]
    if case == "typed values":
        inits.append(TensorProto(name="T", data_type=TensorProto.FLOAT, dims=[2], float_data=[1.0, 2.0]))
    elif case == "value_floats constant":
        nodes.append(helper.make_node("Constant", [], ["C"], value_floats=[1.0, 2.0]))
    elif case == "string tensor":
        inits.append(helper.make_tensor("S", TensorProto.STRING, [1], [b"x"]))
    path = _save(tmp_path / "m.onnx", nodes, inits, ["Y"])
    if case == "sparse initializer":
        model = onnx.load(str(path))
        sparse = helper.make_sparse_tensor(_raw("vals", np.ones(1, np.float32)), _raw("idx", np.zeros(1, np.int64)), [2])
        model.graph.sparse_initializer.append(sparse)
        path.write_bytes(model.SerializeToString())
    assert not _light_read(path)
    assert _table(path) == _with_onnx(path, monkeypatch)


def test_malformed_bytes_are_left_to_onnx() -> None:
    assert parse_model(b"\x0f" * 8) is None  # wire type 7
    assert parse_model(b"\x3a\x05\x0a") is None  # graph longer than the data
    assert parse_model(b"\x08\x07") is None  # no graph
    bad_name = TensorProto(data_type=TensorProto.FLOAT, dims=[1], raw_data=b"\x00" * 4).SerializeToString() + b"\x42\x01\xff"  # name: not UTF-8
    graph = b"\x2a" + bytes([len(bad_name)]) + bad_name
    assert parse_model(b"\x3a" + bytes([len(graph)]) + graph) is None


def test_analysing_an_onnx_model_does_not_import_onnx() -> None:
    code = "import sys\nfrom sharescan.cli import main\nmain(['analyze', sys.argv[1], '--json'])\nprint('onnx' in sys.modules, 'google.protobuf' in sys.modules, file=sys.stderr)\n"
    out = subprocess.run([sys.executable, "-c", code, str(FIXTURES / "tiny_lm_external" / "model.onnx")], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stderr.splitlines()[-1] == "False False"
