"""One codebook per group of rows in ONNX: Gather over codebooks end to end, indices shifted by a per-row offset."""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

from sharescan.codebook.grouped_form import grouped_codebook_form
from sharescan.codebook.onnx_form import codebook_form
from tests.helpers import matmul_model

rng = np.random.default_rng(8)


def _apply(m: onnx.ModelProto, rewrite_of) -> tuple[onnx.ModelProto, object]:  # type: ignore[no-untyped-def]
    init = next(t for t in m.graph.initializer if t.name == "W")
    r = rewrite_of(m.graph, init)
    assert r is not None
    m.graph.initializer.remove(init)
    for node in reversed(r.nodes):
        m.graph.node.insert(0, node)
    onnx.checker.check_model(m, full_check=True)
    return m, r


@pytest.mark.parametrize(("opset", "bits", "group", "groups", "index_type"), [(21, 4, 16, 4, TensorProto.UINT4), (17, 3, 24, 3, TensorProto.UINT8)])
def test_each_group_of_rows_has_its_own_codebook_and_onnxruntime_rebuilds_it(opset: int, bits: int, group: int, groups: int, index_type: int) -> None:
    w = (rng.normal(size=(64, 32)) * np.linspace(0.1, 3.0, 64)[:, None]).astype(np.float32)  # rows of very different scales
    m, r = _apply(matmul_model(w, opset), lambda g, i: grouped_codebook_form(g, i, bits, opset, group))
    assert [n.op_type for n in m.graph.node] == ["Cast", "Add", "Gather", "MatMul"]
    inits = {t.name: numpy_helper.to_array(t) for t in m.graph.initializer}
    k = 2**bits
    assert inits["W_codebook"].shape == (groups * k,) and m.graph.initializer[1].data_type == index_type
    # 64 rows in at most `group` a group, split as ceil(64 / groups) each: (16 x 4) or (22, 22, 20)
    per = -(-64 // groups)
    row_group = np.arange(64) // per
    assert np.array_equal(inits["W_codebook_offset"].reshape(-1), row_group * k)
    rebuilt = inits["W_codebook"][inits["W_codebook_index"].astype(np.int64) + row_group[:, None] * k]
    for g in range(groups):
        rows = row_group == g
        assert set(np.unique(rebuilt[rows])) <= set(inits["W_codebook"][g * k : (g + 1) * k])
    x = rng.normal(size=(3, 64)).astype(np.float32)
    got = ort.InferenceSession(m.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, {"x": x})[0]
    np.testing.assert_allclose(got, x @ rebuilt, rtol=1e-4, atol=1e-4)
    assert r.rel_error == pytest.approx(np.linalg.norm(rebuilt - w) / np.linalg.norm(w), rel=1e-4)
    index_bytes = w.size // 2 if index_type == TensorProto.UINT4 else w.size
    assert r.saved == w.nbytes - index_bytes - groups * k * 4 - 64 * 4


def test_groups_beat_one_codebook_when_rows_differ_in_scale() -> None:
    w = (rng.normal(size=(64, 32)) * np.geomspace(0.01, 1.0, 64)[:, None]).astype(np.float32)
    _, grouped = _apply(matmul_model(w, 21), lambda g, i: grouped_codebook_form(g, i, 3, 21, 8))
    _, whole = _apply(matmul_model(w, 21), lambda g, i: codebook_form(g, i, 3, 21))
    assert grouped.rel_error < 0.8 * whole.rel_error


def test_a_vector_or_a_group_costing_more_than_it_saves_is_not_grouped() -> None:
    g = helper.make_graph([], "g", [], [])
    assert grouped_codebook_form(g, numpy_helper.from_array(rng.normal(size=512).astype(np.float32), "b"), 4, 21, 8) is None
    # 1 row a group at 8 bits: 256 float codebook entries per 16-element row cost more than the row
    assert grouped_codebook_form(g, numpy_helper.from_array(rng.normal(size=(64, 16)).astype(np.float32), "w"), 8, 21, 1) is None
    assert grouped_codebook_form(g, numpy_helper.from_array(np.arange(64 * 16, dtype=np.int64).reshape(64, 16), "i"), 4, 21, 8) is None


def test_codebook_rewrite_groups_matrices_and_gives_vectors_one_codebook() -> None:
    from sharescan.codebook.forms import codebook_rewrite

    g = helper.make_graph([], "g", [], [])
    matrix = codebook_rewrite(g, numpy_helper.from_array(rng.normal(size=(64, 32)).astype(np.float32), "w"), 4, 21, group_channels=16)
    vector = codebook_rewrite(g, numpy_helper.from_array(rng.normal(size=512).astype(np.float32), "b"), 4, 21, group_channels=16)
    uniform = codebook_rewrite(g, numpy_helper.from_array(rng.normal(size=(64, 32)).astype(np.float32), "u"), 4, 21, uniform=True)
    assert matrix is not None and [n.op_type for n in matrix.nodes] == ["Cast", "Add", "Gather"]
    assert vector is not None and [n.op_type for n in vector.nodes] == ["Cast", "Gather"]
    assert uniform is not None and [n.op_type for n in uniform.nodes] == ["DequantizeLinear"]
