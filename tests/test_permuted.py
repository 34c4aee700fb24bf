"""The permuted relation: copies equal to another up to a row and/or column permutation."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

import sharescan
from sharescan.onnx_rewrite.dedup import DedupOptions, dedup
from sharescan.report.markdown import render_markdown
from tests.helpers import save_onnx, save_safetensors

rng = np.random.default_rng(11)
BASE = rng.standard_normal((64, 32)).astype(np.float32)
ROWS = rng.permutation(64)
COLS = rng.permutation(32)
COPIES = {"row_copy": BASE[ROWS], "col_copy": BASE[:, COLS], "both_copy": BASE[ROWS][:, COLS]}
INDEX_BYTES = {"row_copy": 4 * 64, "col_copy": 4 * 32, "both_copy": 4 * (64 + 32)}


def _rebuilt(kept: np.ndarray, permutation: tuple[tuple[int, tuple[int, ...]], ...]) -> np.ndarray:
    for axis, index in permutation:
        kept = np.take(kept, np.asarray(index), axis=axis)
    return kept


def _found(result: sharescan.AnalysisResult) -> list:
    """Groups other than aliases (an ONNX graph's Identity outputs alias its initializers)."""
    return [g for g in result.groups if g.relation != "aliased"]


def _save(fmt: str, folder: Path, tensors: dict[str, np.ndarray]) -> str:
    path = folder / f"m.{fmt}"
    (save_safetensors if fmt == "safetensors" else save_onnx)(path, tensors)
    return str(path)


@pytest.mark.parametrize("fmt", ["safetensors", "onnx"])
@pytest.mark.parametrize("copy", sorted(COPIES))
def test_a_planted_permuted_copy_is_found_with_the_permutation_that_rebuilds_it(tmp_path: Path, fmt: str, copy: str) -> None:
    distractor = rng.standard_normal((64, 32)).astype(np.float32)
    result = sharescan.analyze(_save(fmt, tmp_path, {"base": BASE, copy: COPIES[copy], "other": distractor}))
    (group,) = _found(result)
    assert group.relation == "permuted" and [m.name for m in group.members] == ["base", copy]
    member = group.members[1]
    assert np.array_equal(_rebuilt(BASE, member.permutation), COPIES[copy])
    assert [axis for axis, _ in member.permutation] == {"row_copy": [0], "col_copy": [1], "both_copy": [0, 1]}[copy]
    assert group.reclaimable_bytes == BASE.nbytes - INDEX_BYTES[copy]
    assert dict(result.totals.by_relation)["permuted"] == BASE.nbytes - INDEX_BYTES[copy]


def test_all_three_copies_join_one_group_and_each_is_charged_its_own_index(tmp_path: Path) -> None:
    result = sharescan.analyze(_save("safetensors", tmp_path, {"base": BASE, **COPIES}))
    (group,) = _found(result)
    assert group.reclaimable_bytes == sum(BASE.nbytes - n for n in INDEX_BYTES.values())
    for m in group.members[1:]:
        assert np.array_equal(_rebuilt(BASE, m.permutation), COPIES[m.name])


def test_an_identity_permutation_is_an_identical_copy_counted_once(tmp_path: Path) -> None:
    result = sharescan.analyze(_save("safetensors", tmp_path, {"base": BASE, "same": BASE.copy(), "row_copy": COPIES["row_copy"]}))
    by_relation = dict(result.totals.by_relation)
    assert by_relation["identical"] == BASE.nbytes
    assert by_relation["permuted"] == BASE.nbytes - INDEX_BYTES["row_copy"]
    assert result.totals.reclaimable_bytes == by_relation["identical"] + by_relation["permuted"]
    assert sorted(n for g in result.groups for n in (m.name for m in g.members)).count("row_copy") == 1


def test_a_tensor_of_equal_rows_is_not_reported_as_permuted(tmp_path: Path) -> None:
    row = rng.standard_normal(32).astype(np.float32)
    flat = np.tile(row, (64, 1))
    result = sharescan.analyze(_save("safetensors", tmp_path, {"flat": flat, "flat_cols": flat[:, COLS]}))
    assert "permuted" not in {g.relation for g in result.groups}
    assert dict(result.totals.by_relation)["permuted"] == 0


def test_a_permutation_whose_index_outweighs_the_copy_is_not_merged(tmp_path: Path) -> None:
    small = rng.integers(0, 255, (64, 2)).astype(np.uint8)  # 2 bytes a row, 4 bytes of index a row
    result = sharescan.analyze(_save("safetensors", tmp_path, {"small": small, "small_rows": small[ROWS]}))
    assert result.groups == () or all(g.relation != "permuted" for g in result.groups)


def _noisy(a: np.ndarray, relative: float, seed: int = 5) -> np.ndarray:
    """a moved by ``relative`` (relative L2), densely."""
    noise = np.random.default_rng(seed).standard_normal(a.shape)
    return (a + relative * np.linalg.norm(a) * noise / np.linalg.norm(noise)).astype(np.float32)


def _relative(a: np.ndarray, b: np.ndarray) -> float:
    a64, b64 = a.astype(np.float64), b.astype(np.float64)
    return float(np.linalg.norm(a64 - b64) / max(np.linalg.norm(a64), np.linalg.norm(b64)))


@pytest.mark.parametrize("copy", sorted(COPIES))
def test_a_near_permuted_copy_within_tol_is_found_and_its_permutation_rebuilds_it_within_tol(tmp_path: Path, copy: str) -> None:
    noisy = _noisy(COPIES[copy], 1e-3)
    distractor = rng.standard_normal((64, 32)).astype(np.float32)
    result = sharescan.analyze(_save("safetensors", tmp_path, {"base": BASE, "noisy": noisy, "other": distractor}))
    (group,) = _found(result)
    assert group.relation == "permuted" and [m.name for m in group.members] == ["base", "noisy"]
    rebuilt = _rebuilt(BASE, group.members[1].permutation)
    assert [axis for axis, _ in group.members[1].permutation] == {"row_copy": [0], "col_copy": [1], "both_copy": [0, 1]}[copy]
    assert np.array_equal(rebuilt, COPIES[copy])  # the planted permutation itself, not just some close one
    assert group.rel_error == pytest.approx(_relative(rebuilt, noisy), rel=1e-6) and group.rel_error <= 2e-3
    assert group.max_abs_error == pytest.approx(float(np.abs(rebuilt.astype(np.float64) - noisy).max()), rel=1e-6)
    assert group.reclaimable_bytes == BASE.nbytes - INDEX_BYTES[copy]


def test_near_permuted_copies_are_reported_only_within_the_tolerance_given(tmp_path: Path) -> None:
    path = _save("safetensors", tmp_path, {"base": BASE, "noisy": _noisy(COPIES["both_copy"], 3e-3)})
    assert _found(sharescan.analyze(path)) == []  # 3e-3 > the default 2e-3
    (group,) = _found(sharescan.analyze(path, sharescan.AnalysisOptions(tol=5e-3)))
    assert group.relation == "permuted" and 2e-3 < group.rel_error <= 5e-3
    assert _found(sharescan.analyze(path, sharescan.AnalysisOptions(tol=None))) == []  # --exact: bit for bit only


def test_unrelated_same_shape_tensors_are_not_reported_as_near_permuted(tmp_path: Path) -> None:
    local = np.random.default_rng(3)
    tensors = {f"random{k}": local.standard_normal((64, 32)).astype(np.float32) for k in range(12)}
    # Same value multiset as BASE (same norm, same sorted values), not a row/column permutation of it.
    tensors["shuffled"] = local.permutation(BASE.reshape(-1)).reshape(BASE.shape)
    tensors["base"] = BASE
    result = sharescan.analyze(_save("safetensors", tmp_path, tensors), sharescan.AnalysisOptions(tol=0.05))
    assert "permuted" not in {g.relation for g in result.groups}


def test_a_near_copy_needing_no_permutation_is_left_to_near(tmp_path: Path) -> None:
    result = sharescan.analyze(_save("safetensors", tmp_path, {"base": BASE, "noisy": _noisy(BASE, 1e-3)}))
    (group,) = _found(result)
    assert group.relation == "near"


def test_near_permuted_copies_of_a_trained_layer_with_similar_units_are_matched_exactly(tmp_path: Path) -> None:
    # Low-rank weights: rows resemble each other far more than random ones, so nearest rows can collide.
    local = np.random.default_rng(8)
    w = (local.standard_normal((96, 4)) @ local.standard_normal((4, 48)) + 0.05 * local.standard_normal((96, 48))).astype(np.float32)
    rows, cols = local.permutation(96), local.permutation(48)
    noisy = _noisy(w[rows][:, cols], 5e-4)
    (group,) = _found(sharescan.analyze(_save("safetensors", tmp_path, {"w": w, "w_copy": noisy})))
    assert group.relation == "permuted" and group.rel_error <= 2e-3
    rebuilt = _rebuilt(w, group.members[1].permutation)
    assert _relative(rebuilt, noisy) == pytest.approx(group.rel_error, rel=1e-6)


def test_json_and_markdown_name_the_permutation(tmp_path: Path) -> None:
    result = sharescan.analyze(_save("safetensors", tmp_path, {"base": BASE, "both_copy": COPIES["both_copy"]}))
    member = json.loads(json.dumps(result.to_dict()))["groups"][0]["members"][1]
    assert member["permutation"] == [{"axis": 0, "length": 64, "index": ROWS.tolist()}, {"axis": 1, "length": 32, "index": COLS.tolist()}]
    assert "rows and cols permuted" in render_markdown(result)


def test_dedup_rewrites_a_column_permuted_matmul_weight_as_gather_and_verifies_bit_identical(tmp_path: Path) -> None:
    w = rng.standard_normal((32, 48)).astype(np.float32)
    cols = rng.permutation(48)
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [4, 32])
    nodes = [helper.make_node("MatMul", ["x", "w"], ["a"]), helper.make_node("MatMul", ["x", "w_perm"], ["b"])]
    outputs = [helper.make_tensor_value_info(n, TensorProto.FLOAT, [4, 48]) for n in ("a", "b")]
    graph = helper.make_graph(nodes, "g", [x], outputs, initializer=[numpy_helper.from_array(w, "w"), numpy_helper.from_array(w[:, cols].copy(), "w_perm")])
    onnx.save_model(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(tmp_path / "m.onnx"))
    r = dedup(str(tmp_path / "m.onnx"), str(tmp_path / "o.onnx"), DedupOptions(measure_ram=False))
    assert [(m.relation, m.kept, m.dropped, m.saved_bytes) for m in r.merges] == [("permuted", "w", "w_perm", w.nbytes - 4 * 48)]
    assert r.verdict.outputs_identical
    out = onnx.load(str(tmp_path / "o.onnx"))
    gathers = [n for n in out.graph.node if n.op_type == "Gather"]
    assert len(gathers) == 1 and gathers[0].input[0] == "w" and helper.get_attribute_value(gathers[0].attribute[0]) == 1
    stored = {t.name: numpy_helper.to_array(t) for t in out.graph.initializer}
    assert "w_perm" not in stored and np.array_equal(stored[gathers[0].input[1]], cols.astype(np.int32))


def test_dedup_of_a_both_permuted_copy_writes_two_gathers(tmp_path: Path) -> None:
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [4, 64])
    nodes = [helper.make_node("MatMul", ["x", "base"], ["a"]), helper.make_node("MatMul", ["x", "both_copy"], ["b"])]
    outputs = [helper.make_tensor_value_info(n, TensorProto.FLOAT, [4, 32]) for n in ("a", "b")]
    inits = [numpy_helper.from_array(BASE, "base"), numpy_helper.from_array(COPIES["both_copy"], "both_copy")]
    onnx.save_model(helper.make_model(helper.make_graph(nodes, "g", [x], outputs, initializer=inits), opset_imports=[helper.make_opsetid("", 17)]), str(tmp_path / "m.onnx"))
    r = dedup(str(tmp_path / "m.onnx"), str(tmp_path / "o.onnx"), DedupOptions(measure_ram=False))
    assert [m.saved_bytes for m in r.merges] == [BASE.nbytes - INDEX_BYTES["both_copy"]]
    assert r.verdict.outputs_identical
    out = onnx.load(str(tmp_path / "o.onnx"))
    assert sorted(helper.get_attribute_value(n.attribute[0]) for n in out.graph.node if n.op_type == "Gather") == [0, 1]


def test_a_long_permutation_is_given_in_json_as_its_length_and_hash(tmp_path: Path) -> None:
    import xxhash

    tall = rng.standard_normal((2000, 4)).astype(np.float32)
    order = rng.permutation(2000)
    result = sharescan.analyze(_save("safetensors", tmp_path, {"tall": tall, "tall_rows": tall[order]}))
    member = result.to_dict()["groups"][0]["members"][1]
    assert member["permutation"] == [{"axis": 0, "length": 2000, "index_xxh3_64": f"{xxhash.xxh3_64_intdigest(order.astype('<i4').tobytes()):016x}"}]
    assert np.array_equal(tall[np.asarray(result.groups[0].members[1].permutation[0][1])], tall[order])


def test_dedup_merges_a_near_permuted_copy_only_as_a_lossy_merge_verified_within_max_error(tmp_path: Path) -> None:
    # A near copy's Gather changes outputs a little: verified against --max-error
    # (not as bit-identical), its error reported, refused when the bound is tighter.
    w = rng.standard_normal((32, 48)).astype(np.float32)
    near_copy = _noisy(w[:, rng.permutation(48)], 5e-4)
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [4, 32])
    nodes = [helper.make_node("MatMul", ["x", "w"], ["a"]), helper.make_node("MatMul", ["x", "w_near"], ["b"])]
    outputs = [helper.make_tensor_value_info(n, TensorProto.FLOAT, [4, 48]) for n in ("a", "b")]
    graph = helper.make_graph(nodes, "g", [x], outputs, initializer=[numpy_helper.from_array(w, "w"), numpy_helper.from_array(near_copy, "w_near")])
    onnx.save_model(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(tmp_path / "m.onnx"))
    r = dedup(str(tmp_path / "m.onnx"), str(tmp_path / "o.onnx"), DedupOptions(measure_ram=False, tol=2e-3, max_error=1e-2))
    assert [(m.relation, m.dropped) for m in r.merges] == [("permuted", "w_near")]
    assert 0 < r.merges[0].rel_error <= 2e-3
    assert not r.verdict.outputs_identical and r.verdict.rel_error <= 1e-2
    assert "w_near" not in {t.name for t in onnx.load(str(tmp_path / "o.onnx")).graph.initializer}
    strict = dedup(str(tmp_path / "m.onnx"), str(tmp_path / "s.onnx"), DedupOptions(measure_ram=False, tol=2e-3, max_error=1e-7))
    assert list(strict.merges) == [] and [d.merge.dropped for d in strict.dropped_merges] == ["w_near"]


def test_a_family_beyond_the_near_limit_is_searched_for_exact_copies_only(tmp_path: Path) -> None:
    from sharescan.detect.permuted import NEAR_FAMILY_LIMIT

    local = np.random.default_rng(4)
    base = local.standard_normal((16, 8)).astype(np.float32)
    tensors = {f"near{k:03d}": _noisy(base[local.permutation(16)], 1e-3, seed=k) for k in range(NEAR_FAMILY_LIMIT)}
    tensors["base"], tensors["exact"] = base, base[:, local.permutation(8)]
    result = sharescan.analyze(_save("safetensors", tmp_path, tensors))
    permuted = [g for g in result.groups if g.relation == "permuted"]
    assert [sorted(m.name for m in g.members) for g in permuted] == [["base", "exact"]]
    assert all(g.rel_error == 0 for g in permuted)


def test_the_dct_codes_without_scipy_equal_scipys() -> None:
    from scipy.fft import dct

    from sharescan.detect.permute_match import _leading_dct_numpy

    for cols in (2, 7, 64):
        lines = rng.standard_normal((5, cols))
        assert np.allclose(_leading_dct_numpy(lines, min(32, cols)), dct(lines, type=2, norm="ortho", axis=1)[:, :32], atol=1e-12)


def test_the_greedy_assignment_without_scipy_is_a_permutation_that_takes_the_cheapest_pairs_first() -> None:
    from sharescan.detect.permute_match import _greedy

    cost = np.array([[0.0, 1.0, 5.0], [0.1, 3.0, 2.0], [4.0, 0.2, 9.0]])
    assert _greedy(cost).tolist() == [0, 2, 1]


def test_a_dense_layer_saved_after_a_flatten_in_another_order_is_a_column_permuted_copy(tmp_path: Path) -> None:
    # A conv output of 16 channels x 3 x 3 flattened channels-last in one package, channels-first in the other.
    channels, side = 16, 3
    hwc = rng.standard_normal((32, channels * side * side)).astype(np.float32)
    order = np.arange(channels * side * side).reshape(side, side, channels).transpose(2, 0, 1).reshape(-1)
    chw = np.ascontiguousarray(hwc[:, order])
    (group,) = _found(sharescan.analyze(_save("safetensors", tmp_path, {"a_dense": hwc, "b_dense": chw})))
    assert group.relation == "permuted" and group.rel_error == 0
    assert [(axis, list(index)) for axis, index in group.members[1].permutation] == [(1, order.tolist())]
