"""Uniform codebooks: the grid found, the least-error grid fitted, the DequantizeLinear form checked and run."""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, numpy_helper

from sharescan.codebook.kmeans import histogram, sse
from sharescan.codebook.onnx_form import UniformGrid, codebook_form, fit_uniform_grid, uniform_grid
from tests.helpers import matmul_model

rng = np.random.default_rng(5)


def test_uniform_grid_finds_scale_and_zero_point_of_centers_on_a_grid() -> None:
    centers = 0.05 * (np.array([0, 1, 3, 4, 7, 10, 12, 15]) - 6)  # gaps of 1-3 steps, zero at index 6
    grid = uniform_grid(centers, 4)
    assert grid is not None and grid.scale == pytest.approx(0.05) and grid.zero_point == 6
    assert np.isin(np.round(centers / grid.scale), np.round(grid.centers / grid.scale)).all()


def test_uniform_grid_refuses_k_means_centers_and_grids_too_wide_for_the_bits() -> None:
    assert uniform_grid(np.array([-1.3, -0.2, 0.25, 1.7]), 2) is None
    assert uniform_grid(0.1 * np.arange(-8, 9), 4) is None  # 17 points do not fit 16 levels
    assert uniform_grid(0.1 * np.arange(-8, 8), 4) is not None


def test_fitted_grid_beats_the_min_max_grid_on_heavy_tails() -> None:
    x = rng.standard_t(3, size=20_000)
    h = histogram(x)
    fitted = fit_uniform_grid(h, 4)
    lo, hi = x.min(), x.max()
    scale = (hi - lo) / 15
    min_max = UniformGrid(scale, int(round(-lo / scale)), 4)
    assert sse(h, fitted.centers) < 0.8 * sse(h, min_max.centers)
    assert 0 <= fitted.zero_point <= 15


def _rewrite(m: onnx.ModelProto, bits: int, uniform: bool) -> tuple[onnx.ModelProto, object]:
    graph = m.graph
    init = next(t for t in graph.initializer if t.name == "W")
    r = codebook_form(graph, init, bits, next(o.version for o in m.opset_import), uniform=uniform)
    assert r is not None
    graph.initializer.remove(init)
    for node in reversed(r.nodes):
        graph.node.insert(0, node)
    onnx.checker.check_model(m, full_check=True)
    return m, r


@pytest.mark.parametrize(("opset", "bits", "index_type"), [(17, 6, TensorProto.UINT8), (21, 4, TensorProto.UINT4)])
def test_uniform_form_is_dequantize_linear_and_onnxruntime_runs_it(opset: int, bits: int, index_type: int) -> None:
    w = rng.normal(size=(64, 32)).astype(np.float32)
    m, r = _rewrite(matmul_model(w, opset), bits, uniform=True)
    assert [n.op_type for n in m.graph.node] == ["DequantizeLinear", "MatMul"]
    inits = {t.name: t for t in m.graph.initializer}
    assert inits["W_codebook_index"].data_type == index_type and inits["W_codebook_zero_point"].data_type == index_type
    scale = float(numpy_helper.to_array(inits["W_codebook_scale"]))
    zero = int(numpy_helper.to_array(inits["W_codebook_zero_point"]))
    q = numpy_helper.to_array(inits["W_codebook_index"]).astype(np.int64)
    rebuilt = ((q - zero) * scale).astype(np.float32)
    assert q.max() <= 2**bits - 1 and r.rel_error == pytest.approx(np.linalg.norm(rebuilt - w) / np.linalg.norm(w), rel=1e-4)
    assert r.rel_error < (0.05 if bits == 6 else 0.15)
    x = rng.normal(size=(3, 64)).astype(np.float32)
    exact = ort.SessionOptions()
    exact.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_BASIC
    got = ort.InferenceSession(m.SerializeToString(), exact, providers=["CPUExecutionProvider"]).run(None, {"x": x})[0]
    np.testing.assert_allclose(got, x @ rebuilt, rtol=1e-4, atol=1e-4)
    # From ORT_ENABLE_EXTENDED on, onnxruntime fuses DequantizeLinear + MatMul into MatMulNBits, which by default
    # rounds the activations to int8 (accuracy level 4): close, not equal.
    fused = ort.InferenceSession(m.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, {"x": x})[0]
    assert np.linalg.norm(fused - x @ rebuilt) / np.linalg.norm(x @ rebuilt) < 2e-2
    # indices + one scale + one zero point
    assert r.saved == w.nbytes - (q.size // 2 if index_type == TensorProto.UINT4 else q.size) - 4 - 1


def test_k_means_centers_on_a_grid_are_written_as_dequantize_linear_without_asking() -> None:
    # A weight already holding 8 grid values (as after linear quantization): k-means recovers them exactly.
    w = (0.02 * (rng.integers(0, 8, size=(64, 32)) - 3)).astype(np.float32)
    m, r = _rewrite(matmul_model(w, 17), 3, uniform=False)
    assert [n.op_type for n in m.graph.node] == ["DequantizeLinear", "MatMul"]
    assert r.rel_error < 1e-6 and "DequantizeLinear" in r.how


def test_k_means_centers_off_a_grid_stay_gather() -> None:
    w = rng.normal(size=(64, 32)).astype(np.float32)
    m, r = _rewrite(matmul_model(w, 17), 4, uniform=False)
    assert [n.op_type for n in m.graph.node] == ["Cast", "Gather", "MatMul"] and r.how.startswith("Gather")


def test_uniform_float16_weight_is_gathered_from_grid_values() -> None:
    # DequantizeLinear before opset 19 writes float32 only: a float16 weight keeps Cast + Gather over the grid's values.
    w = np.random.default_rng(11).normal(size=(64, 32)).astype(np.float16)
    m = matmul_model(w, 17)
    m.graph.input[0].type.tensor_type.elem_type = TensorProto.FLOAT16
    m.graph.output[0].type.tensor_type.elem_type = TensorProto.FLOAT16
    m, r = _rewrite(m, 4, uniform=True)
    assert [n.op_type for n in m.graph.node] == ["Cast", "Gather", "MatMul"]
    book = np.sort(numpy_helper.to_array(next(t for t in m.graph.initializer if t.name == "W_codebook")).astype(np.float64))
    # The grid's values rounded to float16 (11 significant bits): evenly spaced
    # up to that rounding, which an exact grid test would refuse for some scales.
    gaps = np.diff(book)
    assert len(book) == 16 and np.abs(gaps - gaps.mean()).max() <= 2 * 2.0**-11 * np.abs(book).max()
