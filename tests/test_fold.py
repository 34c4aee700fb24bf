"""--simplify: folds what the file fixes, only where the file shrinks, and never undoes sharing."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

from sharescan.onnx_rewrite.dedup import DedupOptions, dedup
from sharescan.onnx_rewrite.fold import simplify
from tests.helpers import run_cli

rng = np.random.default_rng(5)
SIMPLIFY = DedupOptions(measure_ram=False, simplify=True)


def _lm_like(path: Path, batch: int | str, seq: int = 4, positions: int = 64) -> Path:
    """Token + position embeddings, positions from Range(Shape(ids)), a head that reshapes by Shape arithmetic."""
    d = 8
    ids = helper.make_tensor_value_info("ids", TensorProto.INT64, [batch, seq])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [batch, seq * d])
    inits = [
        numpy_helper.from_array(rng.standard_normal((50, d)).astype(np.float32), "tok"),
        numpy_helper.from_array(rng.standard_normal((positions, d)).astype(np.float32), "pos"),
        numpy_helper.from_array(np.array(0, dtype=np.int64), "zero"),
        numpy_helper.from_array(np.array(1, dtype=np.int64), "one"),
        numpy_helper.from_array(np.array([0], dtype=np.int64), "axis0"),
        numpy_helper.from_array(np.array([-1], dtype=np.int64), "minus1"),
    ]
    nodes = [
        helper.make_node("Shape", ["ids"], ["shape"]),
        helper.make_node("Gather", ["shape", "one"], ["seq_len"]),
        helper.make_node("Range", ["zero", "seq_len", "one"], ["positions"]),
        helper.make_node("Gather", ["pos", "positions"], ["pos_rows"]),
        helper.make_node("Gather", ["tok", "ids"], ["tok_rows"]),
        helper.make_node("Add", ["tok_rows", "pos_rows"], ["h"]),
        helper.make_node("Identity", ["h"], ["h_copy"]),
        helper.make_node("Gather", ["shape", "zero"], ["batch_size"]),
        helper.make_node("Unsqueeze", ["batch_size", "axis0"], ["batch_1d"]),
        helper.make_node("Concat", ["batch_1d", "minus1"], ["flat_shape"], axis=0),
        helper.make_node("Reshape", ["h_copy", "flat_shape"], ["y"]),
    ]
    graph = helper.make_graph(nodes, "g", [ids], [y], initializer=inits)
    onnx.save_model(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(path))
    return path


def _run(path: Path, feeds: dict[str, np.ndarray]) -> np.ndarray:
    return ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run(None, feeds)[0]


def test_fixed_shapes_fold_the_shape_chain_and_the_position_table_to_the_rows_read(tmp_path: Path) -> None:
    src = _lm_like(tmp_path / "m.onnx", batch=2)
    r = dedup(str(src), str(tmp_path / "out.onnx"), SIMPLIFY)
    out = onnx.load(str(tmp_path / "out.onnx"))
    ops = sorted(n.op_type for n in out.graph.node)
    assert ops == ["Add", "Gather", "Reshape"]  # token lookup, + folded positions, reshape by a folded shape
    stored = {t.name: numpy_helper.to_array(t) for t in out.graph.initializer}
    assert "pos" not in stored and stored["pos_rows"].shape == (4, 8)  # 4 of 64 position rows kept
    assert r.simplified is not None and r.simplified.identities_dropped == 1 and r.simplified.model_bytes_after < r.simplified.model_bytes_before
    assert r.file_bytes_after < r.file_bytes_before - 60 * 8 * 4 + 200
    assert r.verdict.outputs_identical
    ids = rng.integers(0, 50, (2, 4)).astype(np.int64)
    assert np.array_equal(_run(src, {"ids": ids}), _run(tmp_path / "out.onnx", {"ids": ids}))


def test_a_symbolic_batch_keeps_the_shape_arithmetic_that_depends_on_it(tmp_path: Path) -> None:
    src = _lm_like(tmp_path / "m.onnx", batch="batch")
    dedup(str(src), str(tmp_path / "out.onnx"), SIMPLIFY)
    out = onnx.load(str(tmp_path / "out.onnx"))
    ops = [n.op_type for n in out.graph.node]
    assert "Shape" in ops and "Unsqueeze" in ops  # batch size is only known at run time
    assert "pos" not in {t.name for t in out.graph.initializer}  # the sequence length is fixed: positions still fold
    for batch in (1, 3):
        ids = rng.integers(0, 50, (batch, 4)).astype(np.int64)
        assert np.array_equal(_run(src, {"ids": ids}), _run(tmp_path / "out.onnx", {"ids": ids}))


def test_a_transpose_of_a_weight_read_elsewhere_is_not_folded(tmp_path: Path) -> None:
    """Folding Transpose(w) would store w twice: the byte rule refuses it (and so keeps dedup's rebuilds)."""
    w = rng.standard_normal((64, 64)).astype(np.float32)
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 64])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [2, 64])
    nodes = [
        helper.make_node("Transpose", ["w"], ["wt"], perm=[1, 0]),
        helper.make_node("MatMul", ["x", "w"], ["h"]),
        helper.make_node("MatMul", ["h", "wt"], ["y"]),
    ]
    model = helper.make_model(helper.make_graph(nodes, "g", [x], [y], initializer=[numpy_helper.from_array(w, "w")]), opset_imports=[helper.make_opsetid("", 17)])
    result = simplify(model)
    assert [n.op_type for n in model.graph.node] == ["Transpose", "MatMul", "MatMul"]
    assert [t.name for t in model.graph.initializer] == ["w"]
    assert result.nodes_folded == 0 and result.model_bytes_after == result.model_bytes_before


def test_dedup_rebuild_survives_simplify_on_the_tied_lm_export(tmp_path: Path) -> None:
    from tests.conftest import FIXTURES

    r = dedup(str(FIXTURES / "tiny_lm_unfolded.onnx"), str(tmp_path / "lm.onnx"), DedupOptions(measure_ram=False, simplify=True, strip_debug=True))
    plain = dedup(str(FIXTURES / "tiny_lm_unfolded.onnx"), str(tmp_path / "plain.onnx"), DedupOptions(measure_ram=False))
    out = onnx.load(str(tmp_path / "lm.onnx"))
    rebuilt = [n for n in out.graph.node if n.name.startswith("sharescan_")]
    assert len(rebuilt) == sum(m.relation in ("transposed", "negated", "scaled") for m in r.merges)
    assert r.verdict.outputs_identical
    assert r.simplified is not None and r.simplified.nodes_folded > 0
    assert r.file_bytes_after < plain.file_bytes_after
    assert r.tensor_bytes_after <= plain.tensor_bytes_after + 1024  # folded shape constants are small


def test_graph_outputs_and_their_names_stay(tmp_path: Path) -> None:
    """A constant graph output is not folded into an initializer, and an output Identity stays."""
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 3])
    outs = [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2, 3]), helper.make_tensor_value_info("s", TensorProto.INT64, [2])]
    nodes = [helper.make_node("Identity", ["x"], ["y"]), helper.make_node("Shape", ["x"], ["s"])]
    model = helper.make_model(helper.make_graph(nodes, "g", [x], outs), opset_imports=[helper.make_opsetid("", 17)])
    simplify(model)
    assert [(n.op_type, n.output[0]) for n in model.graph.node] == [("Identity", "y"), ("Shape", "s")]


def test_cli_simplify_reports_what_it_folded(tmp_path: Path) -> None:
    import json

    src = _lm_like(tmp_path / "m.onnx", batch=2)
    proc = run_cli("dedup", str(src), "-o", str(tmp_path / "out.onnx"), "--simplify", "--no-ram", "--json")
    assert proc.returncode == 0, proc.stderr
    data = json.loads(proc.stdout)
    assert data["simplify"]["nodes_folded"] >= 6 and data["simplify"]["identities_dropped"] == 1
    assert data["settings"] == {"tol": None, "rows": False, "max_error": 1e-3, "strip_debug": False, "simplify": True}
    proc = run_cli("dedup", str(src), "-o", str(tmp_path / "out2.onnx"), "--simplify", "--no-ram")
    assert proc.returncode == 0 and "simplify:" in proc.stdout and "constant nodes folded" in proc.stdout


def test_repeated_shape_arithmetic_is_computed_once_with_dynamic_axes(tmp_path: Path) -> None:
    """Two reshapes of one value, each with its own Shape -> Gather chain: one chain stays; a Slice of known dims folds."""
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 6, 4])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 24])
    z = helper.make_tensor_value_info("z", TensorProto.FLOAT, ["batch", 24])
    inits = [numpy_helper.from_array(np.array(v, dtype=np.int64), n) for n, v in (("zero", 0), ("ax", [0]), ("m1", [-1]), ("s1", [1]), ("e3", [3]))]
    nodes = []
    for tag, out in (("a", "y"), ("b", "z")):
        nodes += [
            helper.make_node("Shape", ["x"], [f"shape_{tag}"]),
            helper.make_node("Gather", [f"shape_{tag}", "zero"], [f"batch_{tag}"]),
            helper.make_node("Unsqueeze", [f"batch_{tag}", "ax"], [f"b1_{tag}"]),
            helper.make_node("Slice", [f"shape_{tag}", "s1", "e3"], [f"rest_{tag}"]),  # (6, 4): known
            helper.make_node("ReduceProd", [f"rest_{tag}"], [f"flat_{tag}"], keepdims=1),
            helper.make_node("Concat", [f"b1_{tag}", f"flat_{tag}"], [f"target_{tag}"], axis=0),
            helper.make_node("Reshape", ["x", f"target_{tag}"], [out]),
        ]
    path = tmp_path / "m.onnx"
    onnx.save_model(helper.make_model(helper.make_graph(nodes, "g", [x], [y, z], initializer=inits), opset_imports=[helper.make_opsetid("", 17)]), str(path))
    r = dedup(str(path), str(tmp_path / "out.onnx"), SIMPLIFY)
    ops = sorted(n.op_type for n in onnx.load(str(tmp_path / "out.onnx")).graph.node)
    assert ops == ["Concat", "Gather", "Reshape", "Reshape", "Shape", "Unsqueeze"]  # Slice and ReduceProd folded, b's chain merged
    # b's Shape, Gather, Unsqueeze, Slice, ReduceProd and Concat repeat a's; its Reshape writes a graph output and stays.
    assert r.simplified is not None and r.simplified.repeats_merged == 6
    for batch in (1, 5):
        feed = {"x": rng.standard_normal((batch, 6, 4)).astype(np.float32)}
        got = ort.InferenceSession(str(tmp_path / "out.onnx"), providers=["CPUExecutionProvider"]).run(None, feed)
        assert all(np.array_equal(g, feed["x"].reshape(batch, 24)) for g in got)


def test_values_read_inside_if_branches_survive_merging_and_pruning(tmp_path: Path) -> None:
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 3])
    cond = helper.make_tensor_value_info("cond", TensorProto.BOOL, [])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [2, 3])
    # Both branches read outer values: "b" repeats "a" (merged away), "c" is an Identity of "a".
    then_graph = helper.make_graph([helper.make_node("Add", ["b", "c"], ["t"])], "then", [], [helper.make_tensor_value_info("t", TensorProto.FLOAT, [2, 3])])
    else_graph = helper.make_graph([helper.make_node("Neg", ["b"], ["e"])], "else", [], [helper.make_tensor_value_info("e", TensorProto.FLOAT, [2, 3])])
    nodes = [
        helper.make_node("Mul", ["x", "w"], ["xw"]),
        helper.make_node("Relu", ["xw"], ["a"]),
        helper.make_node("Relu", ["xw"], ["b"]),
        helper.make_node("Identity", ["a"], ["c"]),
        helper.make_node("If", ["cond"], ["y"], then_branch=then_graph, else_branch=else_graph),
    ]
    path = tmp_path / "m.onnx"
    w = numpy_helper.from_array(rng.standard_normal((2, 3)).astype(np.float32), "w")
    onnx.save_model(helper.make_model(helper.make_graph(nodes, "g", [x, cond], [y], initializer=[w]), opset_imports=[helper.make_opsetid("", 17)]), str(path))
    r = dedup(str(path), str(tmp_path / "out.onnx"), SIMPLIFY)
    assert r.simplified is not None and (r.simplified.repeats_merged, r.simplified.identities_dropped) == (1, 1)
    assert [n.op_type for n in onnx.load(str(tmp_path / "out.onnx")).graph.node] == ["Mul", "Relu", "If"]
    feed = {"x": rng.standard_normal((2, 3)).astype(np.float32)}
    for flag in (True, False):
        feed["cond"] = np.array(flag)
        assert np.array_equal(_run(path, feed), _run(tmp_path / "out.onnx", feed))


def _view_model(path: Path, shape_source: str) -> Path:
    """y = x.view(x.size()[:2] + (4, 2)) as the TorchScript exporter writes it with dynamic axes."""
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", "sequence", 8])
    other = helper.make_tensor_value_info("other", TensorProto.FLOAT, ["n", "m", 8])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", "sequence", 4, 2])
    inits = [numpy_helper.from_array(np.array(v, dtype=np.int64), n) for n, v in (("i0", 0), ("i1", 1), ("ax", [0]), ("four", [4]), ("two", [2]))]
    inits.append(numpy_helper.from_array(rng.standard_normal(8).astype(np.float32), "bias"))
    nodes = [
        helper.make_node("Add", ["x", "bias"], ["h"]),
        helper.make_node("Shape", [shape_source], ["s"]),
        helper.make_node("Gather", ["s", "i0"], ["d0"]),
        helper.make_node("Gather", ["s", "i1"], ["d1"]),
        helper.make_node("Unsqueeze", ["d0", "ax"], ["u0"]),
        helper.make_node("Unsqueeze", ["d1", "ax"], ["u1"]),
        helper.make_node("Concat", ["u0", "u1", "four", "two"], ["target"], axis=0),
        helper.make_node("Reshape", ["h", "target"], ["y"]),
    ]
    onnx.save_model(helper.make_model(helper.make_graph(nodes, "g", [x, other], [y], initializer=inits), opset_imports=[helper.make_opsetid("", 17)]), str(path))
    return path


def test_a_view_of_the_inputs_own_dims_becomes_a_constant_reshape_with_dynamic_axes(tmp_path: Path) -> None:
    src = _view_model(tmp_path / "m.onnx", shape_source="h")
    r = dedup(str(src), str(tmp_path / "out.onnx"), DedupOptions(measure_ram=False, simplify=True, inputs=(("x", (2, 3, 8), "float32"), ("other", (1, 1, 8), "float32"))))
    out = onnx.load(str(tmp_path / "out.onnx"))
    assert [n.op_type for n in out.graph.node] == ["Add", "Reshape"]
    target = next(t for t in out.graph.initializer if t.name == out.graph.node[1].input[1])
    assert numpy_helper.to_array(target).tolist() == [0, 0, 4, 2]  # 0: keep the input's dim
    assert r.simplified is not None and r.simplified.reshapes_constant == 1
    for batch, seq in ((1, 1), (3, 7)):
        feed = {"x": rng.standard_normal((batch, seq, 8)).astype(np.float32), "other": np.zeros((1, 1, 8), np.float32)}
        assert np.array_equal(_run(src, feed), _run(tmp_path / "out.onnx", feed))


def test_a_target_built_from_another_values_unknown_dims_stays_computed(tmp_path: Path) -> None:
    src = _view_model(tmp_path / "m.onnx", shape_source="other")
    model = onnx.load(str(src))
    result = simplify(model)
    assert result.reshapes_constant == 0 and "Shape" in [n.op_type for n in model.graph.node]


# Regressions: each model below once broke simplify (an exception, an invalid graph or changed outputs).


def _graph_model(nodes: list, inputs: list, outputs: list, inits: list, opset: int = 17) -> onnx.ModelProto:
    return helper.make_model(helper.make_graph(nodes, "g", inputs, outputs, inits), opset_imports=[helper.make_opsetid("", opset)])


def _same_outputs(original: onnx.ModelProto, simplified: onnx.ModelProto, feeds: dict[str, np.ndarray]) -> bool:
    onnx.checker.check_model(simplified, full_check=True)
    run = [ort.InferenceSession(m.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, feeds) for m in (original, simplified)]
    return all(np.array_equal(a, b) for a, b in zip(*run))


def _ints(value: object, name: str) -> onnx.TensorProto:
    return numpy_helper.from_array(np.array(value, dtype=np.int64), name)


def test_a_chain_left_without_readers_is_removed_not_evaluated() -> None:
    """x.view(-1, x.size(-1)): the target becomes [-1, 8] and the chain that built it has no reader left."""
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", "S", 8])
    nodes = [
        helper.make_node("Shape", ["x"], ["s"]), helper.make_node("Gather", ["s", "two"], ["d"]),
        helper.make_node("Unsqueeze", ["d", "ax0"], ["d1"]), helper.make_node("Concat", ["m1", "d1"], ["t"], axis=0),
        helper.make_node("Reshape", ["x", "t"], ["y"]), helper.make_node("Neg", ["c"], ["unused"]),
    ]
    model = _graph_model(nodes, [x], [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["M", 8])], [_ints(2, "two"), _ints([0], "ax0"), _ints([-1], "m1"), _ints([1, 2], "c")])
    simplified = onnx.ModelProto()
    simplified.CopyFrom(model)
    simplify(simplified)
    assert [n.op_type for n in simplified.graph.node] == ["Reshape"]
    assert _same_outputs(model, simplified, {"x": rng.standard_normal((2, 3, 8)).astype(np.float32)})


def test_a_repeat_is_not_merged_into_a_twin_that_omits_an_output_it_names() -> None:
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 4])
    nodes = [
        helper.make_node("LayerNormalization", ["x", "scale"], ["a", "", "is1"], axis=-1),
        helper.make_node("LayerNormalization", ["x", "scale"], ["b", "mean2", "is2"], axis=-1),
        helper.make_node("Add", ["a", "is1"], ["y1"]), helper.make_node("Add", ["b", "mean2"], ["y2"]),
    ]
    outs = [helper.make_tensor_value_info(n, TensorProto.FLOAT, [2, 4]) for n in ("y1", "y2")]
    model = _graph_model(nodes, [x], outs, [numpy_helper.from_array(np.ones(4, np.float32), "scale")])
    simplified = onnx.ModelProto()
    simplified.CopyFrom(model)
    assert simplify(simplified).repeats_merged == 0
    assert _same_outputs(model, simplified, {"x": rng.standard_normal((2, 4)).astype(np.float32)})


def test_folded_string_tensors_are_told_apart_by_their_values() -> None:
    a = np.array([f"alpha{i:03d}" * 4 for i in range(40)], dtype=object)
    b = np.array([f"beta{i:03d}" * 4 for i in range(40)], dtype=object)
    nodes = [helper.make_node("Gather", ["A", "i0"], ["a1"]), helper.make_node("Gather", ["B", "i0"], ["b1"]), helper.make_node("Concat", ["a1", "b1", "s"], ["y"], axis=0)]
    inits = [numpy_helper.from_array(a, "A"), numpy_helper.from_array(b, "B"), _ints([0], "i0")]
    model = _graph_model(nodes, [helper.make_tensor_value_info("s", TensorProto.STRING, [1])], [helper.make_tensor_value_info("y", TensorProto.STRING, [3])], inits)
    simplified = onnx.ModelProto()
    simplified.CopyFrom(model)
    assert simplify(simplified).nodes_folded == 2
    assert _same_outputs(model, simplified, {"s": np.array(["x"], dtype=object)})


def test_a_two_dimensional_gather_of_a_shape_with_an_unknown_dim_is_left_alone() -> None:
    nodes = [
        helper.make_node("Shape", ["x"], ["s"]), helper.make_node("Gather", ["s", "i"], ["g"]),
        helper.make_node("Cast", ["g"], ["gf"], to=TensorProto.FLOAT), helper.make_node("ReduceSum", ["gf"], ["r"], keepdims=0),
        helper.make_node("Add", ["x", "r"], ["y"]),
    ]
    model = _graph_model(nodes, [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 3, 4])], [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 3, 4])], [_ints([[0, 2], [1, 1]], "i")])
    simplified = onnx.ModelProto()
    simplified.CopyFrom(model)
    simplify(simplified)
    assert _same_outputs(model, simplified, {"x": rng.standard_normal((5, 3, 4)).astype(np.float32)})


def test_float_arithmetic_is_not_folded_even_where_it_frees_a_tensor() -> None:
    """onnxruntime turns Mul(x, 1/W) into Div(x, W), which rounds once; a folded 1/W would round twice."""
    w = rng.uniform(0.5, 3.0, 512).astype(np.float32)
    nodes = [helper.make_node("Div", ["one", "W"], ["r"]), helper.make_node("Mul", ["x", "r"], ["y"])]
    vec = [helper.make_tensor_value_info(n, TensorProto.FLOAT, [512]) for n in ("x", "y")]
    model = _graph_model(nodes, vec[:1], vec[1:], [numpy_helper.from_array(w, "W"), numpy_helper.from_array(np.array(1.0, np.float32), "one")])
    simplified = onnx.ModelProto()
    simplified.CopyFrom(model)
    assert simplify(simplified).nodes_folded == 0
    assert _same_outputs(model, simplified, {"x": rng.uniform(-10, 10, 512).astype(np.float32)})


@pytest.mark.parametrize("ir_version", [3, 7])
def test_initializers_listed_as_inputs_stay_listed_and_overridable(ir_version: int) -> None:
    """IR 3: every initializer is an input, folded ones included. IR 4+: a listed initializer is a default the caller may feed."""
    table = np.arange(64 * 8, dtype=np.float32).reshape(64, 8)
    inits = [numpy_helper.from_array(table, "table"), _ints([3, 5], "idx")]
    inputs = [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 8])] + [helper.make_tensor_value_info(t.name, t.data_type, list(t.dims)) for t in inits]
    nodes = [helper.make_node("Gather", ["table", "idx"], ["rows"]), helper.make_node("Add", ["x", "rows"], ["y"])]
    model = _graph_model(nodes, inputs, [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2, 8])], inits, opset=7)
    model.ir_version = ir_version
    simplified = onnx.ModelProto()
    simplified.CopyFrom(model)
    simplify(simplified)
    feeds = {"x": np.zeros((2, 8), np.float32)}
    if ir_version >= 4:
        feeds["idx"] = np.array([0, 1], np.int64)
        assert [n.op_type for n in simplified.graph.node] == ["Gather", "Add"]
    assert _same_outputs(model, simplified, feeds)


def test_an_if_condition_stays_computed() -> None:
    """A constant condition makes onnxruntime inline and re-check a branch; this one it would reject."""
    out = helper.make_tensor_value_info("lim_b", TensorProto.INT64, None)
    then_g = helper.make_graph([helper.make_node("Identity", ["three_1d"], ["lim_b"])], "then", [], [out])
    else_g = helper.make_graph([helper.make_node("Identity", ["four_1d"], ["lim_b"])], "else", [], [out])
    nodes = [
        helper.make_node("Size", ["x"], ["n"]), helper.make_node("Equal", ["n", "six"], ["cond"]),
        helper.make_node("If", ["cond"], ["lim"], then_branch=then_g, else_branch=else_g),
        helper.make_node("Range", ["zero", "lim", "one"], ["r"]), helper.make_node("Cast", ["r"], ["rf"], to=TensorProto.FLOAT),
        helper.make_node("ReduceSum", ["rf"], ["s"], keepdims=0), helper.make_node("Add", ["x", "s"], ["y"]),
    ]
    inits = [_ints(6, "six"), _ints(0, "zero"), _ints(1, "one"), _ints([3], "three_1d"), _ints([4], "four_1d")]
    model = _graph_model(nodes, [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 3])], [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2, 3])], inits)
    simplified = onnx.ModelProto()
    simplified.CopyFrom(model)
    simplify(simplified)
    assert "Equal" in [n.op_type for n in simplified.graph.node]
    assert np.array_equal(*(ort.InferenceSession(m.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, {"x": np.zeros((2, 3), np.float32)})[0] for m in (model, simplified)))


def test_an_overridable_initializers_default_is_not_used_as_a_shape_and_it_stays_an_input() -> None:
    """Reshape(x, t) with t a graph input that has a default: the shape depends on what the caller feeds."""
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [4])
    one = helper.make_tensor_value_info("one", TensorProto.FLOAT, [1])
    t = helper.make_tensor_value_info("t", TensorProto.INT64, [2])
    w = helper.make_tensor_value_info("w", TensorProto.FLOAT, [3])
    nodes = [
        helper.make_node("Reshape", ["x", "t"], ["r"]), helper.make_node("Shape", ["r"], ["s"]),
        helper.make_node("Mul", ["s", "s"], ["s2"]), helper.make_node("Div", ["s2", "s"], ["s3"]),
        helper.make_node("Expand", ["one", "s3"], ["e"]), helper.make_node("Add", ["e", "r"], ["y"]),
        helper.make_node("Shape", ["w"], ["ws"]), helper.make_node("Cast", ["ws"], ["wf"], to=TensorProto.FLOAT),
        helper.make_node("Add", ["y", "wf"], ["z"]),  # w is read by Shape alone
    ]
    inits = [_ints([2, 2], "t"), numpy_helper.from_array(np.zeros(3, np.float32), "w")]
    model = _graph_model(nodes, [x, one, t, w], [helper.make_tensor_value_info("z", TensorProto.FLOAT, ["a", "b"])], inits)
    model.ir_version = 8
    simplified = onnx.ModelProto()
    simplified.CopyFrom(model)
    simplify(simplified)
    assert [i.name for i in simplified.graph.input] == ["x", "one", "t", "w"]
    assert {"t", "w"} <= {i.name for i in simplified.graph.initializer}
    feeds = {"x": np.arange(4, dtype=np.float32), "one": np.ones(1, np.float32), "t": np.array([4, 1], np.int64), "w": np.ones(3, np.float32)}
    assert _same_outputs(model, simplified, feeds)


def test_constant_nodes_onnxruntime_cannot_evaluate_are_left_to_fail_at_run_time(tmp_path: Path) -> None:
    """A Gather past the end of a constant table: simplify leaves it, and dedup reports the model, not a traceback."""
    table = numpy_helper.from_array(rng.standard_normal((100, 4)).astype(np.float32), "table")
    nodes = [helper.make_node("Gather", ["table", "i"], ["row"]), helper.make_node("Add", ["x", "row"], ["y"])]
    vec = [helper.make_tensor_value_info(n, TensorProto.FLOAT, [4]) for n in ("x", "y")]
    model = _graph_model(nodes, vec[:1], vec[1:], [table, _ints(500, "i")])
    simplified = onnx.ModelProto()
    simplified.CopyFrom(model)
    assert simplify(simplified).nodes_folded == 0
    onnx.save_model(model, str(tmp_path / "m.onnx"))
    proc = run_cli("dedup", str(tmp_path / "m.onnx"), "-o", str(tmp_path / "o.onnx"), "--simplify", "--no-ram")
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1 and proc.stderr.startswith("error:") and not (tmp_path / "o.onnx").exists()
