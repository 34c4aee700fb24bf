"""Verification feeds what real graphs accept, fails on any non-finite change, and drops only the merges it refuses."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from sharescan.errors import InputError
from sharescan.onnx_rewrite.dedup import DedupOptions, dedup
from sharescan.onnx_rewrite.verify import compare_outputs
from tests.helpers import run_cli

OPTS = DedupOptions(measure_ram=False)
rng = np.random.default_rng(11)


def _save(path: Path, nodes: list, inputs: list, outputs: list, inits: dict[str, np.ndarray], opset: int = 17) -> Path:
    graph = helper.make_graph(nodes, "g", inputs, outputs, initializer=[numpy_helper.from_array(v, k) for k, v in inits.items()])
    onnx.save_model(helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)]), str(path))
    return path


def _bert_like(path: Path) -> Path:
    """token_type_ids (int64) -> Cast -> Gather over a 2-row table; the weights hold an identical copy."""
    w = rng.standard_normal((8, 8)).astype(np.float32)
    nodes = [
        helper.make_node("Cast", ["token_type_ids"], ["ids32"], to=TensorProto.INT32),
        helper.make_node("Gather", ["type_table", "ids32"], ["emb"]),
        helper.make_node("MatMul", ["emb", "w"], ["h"]),
        helper.make_node("MatMul", ["h", "w_copy"], ["y"]),
    ]
    ids = helper.make_tensor_value_info("token_type_ids", TensorProto.INT64, ["batch", "sequence"])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", "sequence", 8])
    return _save(path, nodes, [ids], [y], {"type_table": rng.standard_normal((2, 8)).astype(np.float32), "w": w, "w_copy": w.copy()})


def test_integer_input_that_indexes_a_two_row_table_stays_in_range(tmp_path: Path) -> None:
    r = dedup(str(_bert_like(tmp_path / "m.onnx")), str(tmp_path / "o.onnx"), OPTS)
    assert [m.dropped for m in r.merges] == ["w_copy"] and r.verdict.outputs_identical


def test_symbolic_dim_is_tried_until_a_concat_accepts_it(tmp_path: Path) -> None:
    # Concat of x (1 x width) under a 1 x 4 table along axis 0: dim 1 must be 4, so width 1 fails.
    w = rng.standard_normal((1,)).astype(np.float32)
    nodes = [
        helper.make_node("Concat", ["x", "table"], ["cat"], axis=0, name="join"),
        helper.make_node("Mul", ["cat", "a"], ["m"]),
        helper.make_node("Mul", ["m", "b"], ["y"]),
    ]
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, "width"])
    inits = {"table": rng.standard_normal((1, 4)).astype(np.float32), "a": w, "b": w.copy()}
    path = _save(tmp_path / "m.onnx", nodes, [x], [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2, 4])], inits)
    r = dedup(str(path), str(tmp_path / "o.onnx"), OPTS)
    assert r.verdict.inputs == (("x", (1, 4), "float32"),) and "symbolic dims at 4" in r.verdict.feeds_source
    assert [m.dropped for m in r.merges] == ["b"]


def test_no_feed_that_runs_is_one_line_naming_the_node_and_input(tmp_path: Path) -> None:
    # Reshape of 1 x width to 3 x -1: no power of two or image size divides by 3.
    nodes = [helper.make_node("Reshape", ["x", "shape"], ["y"], name="to_three_rows")]
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, "width"])
    path = _save(tmp_path / "m.onnx", nodes, [x], [helper.make_tensor_value_info("y", TensorProto.FLOAT, [3, "cols"])], {"shape": np.array([3, -1], np.int64)})
    proc = run_cli("dedup", str(path), "-o", str(tmp_path / "o.onnx"), "--no-ram")
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 2 and len(lines) == 1 and lines[0].startswith("error: ")
    assert "'to_three_rows'" in lines[0] and "'x'" in lines[0] and "--inputs" in lines[0]
    assert not (tmp_path / "o.onnx").exists()


def _branching(path: Path, then_w: np.ndarray, else_w: np.ndarray, copy_of_else: np.ndarray) -> Path:
    """y = x * (sr == 16000 ? then_w : else_w) * copy_of_else; the branches read outer initializers."""
    then_g = helper.make_graph([helper.make_node("Mul", ["x", "then_w"], ["t"])], "then", [], [helper.make_tensor_value_info("t", TensorProto.FLOAT, [4])])
    else_g = helper.make_graph([helper.make_node("Mul", ["x", "else_w"], ["e"])], "else", [], [helper.make_tensor_value_info("e", TensorProto.FLOAT, [4])])
    nodes = [
        helper.make_node("Equal", ["sr", "rate"], ["is16k"]),
        helper.make_node("If", ["is16k"], ["branch"], then_branch=then_g, else_branch=else_g),
        helper.make_node("Mul", ["branch", "copy"], ["y"]),
    ]
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [4])
    sr = helper.make_tensor_value_info("sr", TensorProto.INT64, [])
    inits = {"rate": np.array(16000, np.int64), "then_w": then_w, "else_w": else_w, "copy": copy_of_else}
    return _save(path, nodes, [x, sr], [helper.make_tensor_value_info("y", TensorProto.FLOAT, [4])], inits)


def test_input_compared_with_a_constant_is_verified_once_per_branch(tmp_path: Path) -> None:
    w = rng.standard_normal(4).astype(np.float32)
    path = _branching(tmp_path / "m.onnx", rng.standard_normal(4).astype(np.float32), w, w.copy())
    r = dedup(str(path), str(tmp_path / "o.onnx"), OPTS)
    assert r.verdict.branch_inputs == ("sr",) and len(r.verdict.runs) == 2
    assert any("sr=16000" in run for run in r.verdict.runs) and any("none of the compared constants" in run for run in r.verdict.runs)


def test_plus_inf_turned_minus_inf_fails_and_only_that_merge_is_dropped(tmp_path: Path) -> None:
    # (x*x + 1) / d: d = [0, 1, 2, 3, ...] and e = [-0.0, 1, 2, 3.0001, ...] are within --tol 1e-3, but 1/0 is +inf and 1/-0 is -inf.
    # (8 elements: near matches are searched only among tensors of at least 8.)
    d = np.array([0.0, 1, 2, 3, 4, 5, 6, 7], np.float32)
    e = np.array([-0.0, 1, 2, 3.0001, 4, 5, 6, 7], np.float32)
    w = rng.standard_normal(8).astype(np.float32)
    nodes = [
        helper.make_node("Mul", ["x", "x"], ["sq"]),
        helper.make_node("Add", ["sq", "one"], ["pos"]),
        helper.make_node("Div", ["pos", "d"], ["q1"]),
        helper.make_node("Div", ["pos", "e"], ["q2"]),
        helper.make_node("Add", ["q1", "q2"], ["s"]),
        helper.make_node("Mul", ["q2", "w"], ["p"]),
        helper.make_node("Mul", ["p", "w_copy"], ["y"]),
    ]
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [8])
    outs = [helper.make_tensor_value_info("y", TensorProto.FLOAT, [8]), helper.make_tensor_value_info("s", TensorProto.FLOAT, [8])]
    path = _save(tmp_path / "m.onnx", nodes, [x], outs, {"one": np.ones(8, np.float32), "d": d, "e": e, "w": w, "w_copy": w.copy()})
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # numpy's overflow/invalid warnings must not reach the user
        r = dedup(str(path), str(tmp_path / "o.onnx"), DedupOptions(tol=1e-3, measure_ram=False))
    assert [m.dropped for m in r.merges] == ["w_copy"]
    assert [d.merge.dropped for d in r.dropped_merges] in (["e"], ["d"]) and "non-finite" in r.dropped_merges[0].reason
    stored = {t.name for t in onnx.load(str(tmp_path / "o.onnx")).graph.initializer}
    assert {"d", "e"} <= stored and "w_copy" not in stored


def test_compare_outputs_fails_on_any_non_finite_change_without_warnings() -> None:
    a = np.array([np.inf, 1.0, np.nan], np.float32)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert compare_outputs((a,), (a.copy(),))[0]
        assert compare_outputs((a,), (np.array([-np.inf, 1.0, np.nan], np.float32),))[3]
        assert compare_outputs((a,), (np.array([np.inf, np.nan, np.nan], np.float32),))[3]
        assert compare_outputs((np.array([3e38, -3e38], np.float32),), (np.array([-3e38, 3e38], np.float32),))[2] > 1


def test_scaled_fp16_copy_that_rounds_at_run_time_is_dropped_and_the_rest_kept(tmp_path: Path) -> None:
    # b = a * 3 exactly in float16, but onnxruntime's Mul(a, 3) must round the same way for the merge to be lossless.
    a = rng.standard_normal((16, 16)).astype(np.float16)
    b = (a * np.float16(3)).astype(np.float16)
    c = rng.standard_normal((16, 16)).astype(np.float16)
    nodes = [helper.make_node("MatMul", ["x", n], [f"h{k}"]) for k, n in enumerate(["a", "b", "c", "c_copy"])]
    nodes += [helper.make_node("Sum", [f"h{k}" for k in range(4)], ["y"])]
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT16, [2, 16])
    path = _save(tmp_path / "m.onnx", nodes, [x], [helper.make_tensor_value_info("y", TensorProto.FLOAT16, [2, 16])], {"a": a, "b": b, "c": c, "c_copy": c.copy()})
    r = dedup(str(path), str(tmp_path / "o.onnx"), OPTS)
    assert r.verdict.outputs_identical and "c_copy" in [m.dropped for m in r.merges]
    # Either onnxruntime's Mul rounds like numpy (the merge stays) or it is dropped on its own with a reason.
    assert all(d.merge.relation == "scaled" and d.reason for d in r.dropped_merges)
    assert len(r.merges) + len(r.dropped_merges) == 2


def test_ram_probe_feeds_inputs_named_like_savez_keywords(tmp_path: Path) -> None:
    from sharescan.onnx_rewrite.ram import measure_ram

    nodes = [helper.make_node("Add", ["file", "allow_pickle"], ["y"])]
    ins = [helper.make_tensor_value_info(n, TensorProto.FLOAT, [4]) for n in ("file", "allow_pickle")]
    path = _save(tmp_path / "m.onnx", nodes, ins, [helper.make_tensor_value_info("y", TensorProto.FLOAT, [4])], {})
    feeds = {"file": np.ones(4, np.float32), "allow_pickle": np.ones(4, np.float32)}
    assert measure_ram(path, feeds, False, tmp_path) >= 0


def test_failing_ram_probe_becomes_a_warning_not_a_traceback(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import sharescan.onnx_rewrite.dedup as dedup_module

    def broken(*args: object) -> int:
        raise RuntimeError("MemoryError")

    monkeypatch.setattr(dedup_module, "measure_ram", broken)
    r = dedup(str(_bert_like(tmp_path / "m.onnx")), str(tmp_path / "o.onnx"), DedupOptions(measure_ram=True))
    assert r.ram == {} and len(r.warnings) == 1 and "MemoryError" in r.warnings[0] and (tmp_path / "o.onnx").exists()


@pytest.mark.parametrize("spec", ["token_type_ids:-1x8:int64", "token_type_ids:0x8:int64", "token_type_ids:100000x100000x100:int64"], ids=["negative", "zero", "huge"])
def test_bad_input_dims_are_one_line_exit_2(tmp_path: Path, spec: str) -> None:
    proc = run_cli("dedup", str(_bert_like(tmp_path / "m.onnx")), "-o", str(tmp_path / "o.onnx"), "--input", spec, "--no-ram")
    assert proc.returncode == 2 and len(proc.stderr.strip().splitlines()) == 1 and proc.stderr.startswith("error: --input")
    assert not (tmp_path / "o.onnx").exists()


def test_inputs_npz_feeds_each_sample_and_refuses_a_wrong_dtype(tmp_path: Path) -> None:
    src = _bert_like(tmp_path / "m.onnx")
    np.savez(tmp_path / "two.npz", token_type_ids=np.array([[[0, 1, 1]], [[1, 0, 0]]], np.int64))  # leading axis: 2 samples of 1x3
    np.savez(tmp_path / "one.npz", token_type_ids=np.array([[1, 1]], np.int64))
    proc = run_cli("dedup", str(src), "-o", str(tmp_path / "o.onnx"), "--inputs", str(tmp_path / "two.npz"), "--inputs", str(tmp_path / "one.npz"), "--no-ram", "--json")
    assert proc.returncode == 0, proc.stderr
    v = json.loads(proc.stdout)["verification"]
    assert len(v["runs"]) == 3 and v["inputs"] == [{"name": "token_type_ids", "shape": [1, 3], "dtype": "int64"}]
    np.savez(tmp_path / "bad.npz", token_type_ids=np.zeros((1, 3), np.float32))
    proc = run_cli("dedup", str(src), "-o", str(tmp_path / "o2.onnx"), "--inputs", str(tmp_path / "bad.npz"), "--no-ram")
    assert proc.returncode == 2 and len(proc.stderr.strip().splitlines()) == 1 and "int64" in proc.stderr
    with pytest.raises(InputError, match="names no graph input"):
        np.savez(tmp_path / "other.npz", nope=np.zeros(3))
        dedup(str(src), str(tmp_path / "o3.onnx"), DedupOptions(measure_ram=False, samples=(str(tmp_path / "other.npz"),)))


def test_verification_opens_one_onnxruntime_session_per_model(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from sharescan.onnx_rewrite import verify

    opened: list[str] = []
    real = verify._session

    def counting(path: Path) -> object:
        opened.append(Path(path).name)
        return real(path)

    monkeypatch.setattr(verify, "_session", counting)
    r = dedup(str(_bert_like(tmp_path / "m.onnx")), str(tmp_path / "o.onnx"), DedupOptions())
    assert r.merges and r.verdict.outputs_identical
    assert opened == ["m.onnx", "o.onnx"]  # the original, then the rewrite (in its work folder), each once
