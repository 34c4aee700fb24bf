"""sharescan dedup: each rewrite on small graphs, exact bytes, onnxruntime equality, nothing written on failure."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from sharescan.errors import InputError
from sharescan.onnx_rewrite.dedup import DedupOptions, dedup
from tests.helpers import run_cli

rng = np.random.default_rng(3)
OPTS = DedupOptions(measure_ram=False)


def _model(path: Path, weights: dict[str, np.ndarray], nodes: list, out: str = "y") -> Path:
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 8])
    y = helper.make_tensor_value_info(out, TensorProto.FLOAT, ["batch", 8])
    graph = helper.make_graph(nodes, "g", [x], [y], initializer=[numpy_helper.from_array(v, k) for k, v in weights.items()])
    onnx.save_model(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(path))
    return path


def _chain(path: Path, weights: dict[str, np.ndarray]) -> Path:
    """x @ w0 @ w1 @ ... : every weight is read once, in order."""
    nodes, prev = [], "x"
    for k, name in enumerate(weights):
        out = "y" if k == len(weights) - 1 else f"h{k}"
        nodes.append(helper.make_node("MatMul", [prev, name], [out]))
        prev = out
    return _model(path, weights, nodes)


def _initializers(path: Path) -> dict[str, np.ndarray]:
    return {t.name: numpy_helper.to_array(t) for t in onnx.load(str(path)).graph.initializer}


def test_identical_copy_is_removed_and_outputs_are_identical(tmp_path: Path) -> None:
    w = rng.standard_normal((8, 8)).astype(np.float32)
    src = _chain(tmp_path / "m.onnx", {"a": w, "b": w.copy(), "c": rng.standard_normal((8, 8)).astype(np.float32)})
    r = dedup(str(src), str(tmp_path / "out.onnx"), OPTS)
    assert set(_initializers(tmp_path / "out.onnx")) == {"a", "c"}
    assert [(m.relation, m.kept, m.dropped, m.saved_bytes) for m in r.merges] == [("identical", "a", "b", 256)]
    assert r.tensor_bytes_before - r.tensor_bytes_after == 256
    assert r.verdict.outputs_identical and r.verdict.checker_passed


@pytest.mark.parametrize(
    ("relation", "make", "op"),
    [
        ("transposed", lambda w: w.T.copy(), "Transpose"),
        ("negated", lambda w: -w, "Neg"),
        ("scaled", lambda w: (w * np.float32(0.25)).astype(np.float32), "Mul"),
    ],
)
def test_transformed_copy_is_rebuilt_by_one_node(tmp_path: Path, relation: str, make, op: str) -> None:
    w = rng.standard_normal((8, 8)).astype(np.float32)
    src = _chain(tmp_path / "m.onnx", {"w": w, "w_copy": make(w)})
    r = dedup(str(src), str(tmp_path / "out.onnx"), OPTS)
    (merge,) = r.merges
    assert (merge.relation, merge.kept, merge.dropped) == (relation, "w", "w_copy")
    result = onnx.load(str(tmp_path / "out.onnx"))
    assert [n.op_type for n in result.graph.node if n.output[0] == "w_copy"] == [op]
    extra = 4 if relation == "scaled" else 0  # the stored factor
    assert r.tensor_bytes_before - r.tensor_bytes_after == w.nbytes - extra
    assert r.verdict.outputs_identical


def test_rows_rewrite_stores_unique_rows_and_index(tmp_path: Path) -> None:
    table = rng.standard_normal((100, 8)).astype(np.float32)
    table[40:] = 0.0  # 60 identical rows
    ids = helper.make_tensor_value_info("ids", TensorProto.INT64, [4])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [4, 8])
    graph = helper.make_graph([helper.make_node("Gather", ["emb", "ids"], ["y"])], "g", [ids], [y], initializer=[numpy_helper.from_array(table, "emb")])
    onnx.save_model(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(tmp_path / "m.onnx"))
    r = dedup(str(tmp_path / "m.onnx"), str(tmp_path / "out.onnx"), DedupOptions(rows=True, measure_ram=False))
    (merge,) = r.merges
    stored = _initializers(tmp_path / "out.onnx")
    assert stored["emb_unique_rows"].shape == (41, 8) and stored["emb_row_index"].dtype == np.int32
    assert merge.saved_bytes == table.nbytes - 41 * 8 * 4 - 100 * 4
    assert r.verdict.outputs_identical


def test_near_merge_is_lossy_reported_and_bounded(tmp_path: Path) -> None:
    w = rng.standard_normal((8, 8)).astype(np.float32)
    near = (w + 1e-4 * rng.standard_normal(w.shape)).astype(np.float32)
    src = _chain(tmp_path / "m.onnx", {"w": w, "w2": near})
    r = dedup(str(src), str(tmp_path / "out.onnx"), DedupOptions(tol=1e-2, measure_ram=False))
    assert [m.relation for m in r.merges] == ["near"] and r.lossy
    assert 0 < r.merges[0].max_abs_error < 1e-3
    assert not r.verdict.outputs_identical and 0 < r.verdict.rel_error < 1e-3


def test_lossy_merge_beyond_max_error_is_dropped_not_written(tmp_path: Path) -> None:
    w = rng.standard_normal((8, 8)).astype(np.float32)
    src = _chain(tmp_path / "m.onnx", {"w": w, "w2": (w + 0.01 * rng.standard_normal(w.shape)).astype(np.float32)})
    r = dedup(str(src), str(tmp_path / "out.onnx"), DedupOptions(tol=0.05, max_error=1e-6, measure_ram=False))
    assert r.merges == () and [d.merge.dropped for d in r.dropped_merges] == ["w2"] and "max-error" in r.dropped_merges[0].reason
    assert set(_initializers(tmp_path / "out.onnx")) == {"w", "w2"} and r.verdict.outputs_identical


def test_output_equal_to_input_needs_in_place(tmp_path: Path) -> None:
    w = rng.standard_normal((8, 8)).astype(np.float32)
    src = _chain(tmp_path / "m.onnx", {"a": w, "b": w.copy()})
    before = src.read_bytes()
    with pytest.raises(InputError, match="--in-place"):
        dedup(str(src), str(src), OPTS)
    assert src.read_bytes() == before
    dedup(str(src), str(src), OPTS, in_place=True)
    assert set(_initializers(src)) == {"a"}


def test_external_data_in_and_out(tmp_path: Path) -> None:
    w = rng.standard_normal((64, 8)).astype(np.float32)
    folder = tmp_path / "in"
    folder.mkdir()
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 64])
    nodes = [helper.make_node("MatMul", ["x", "w"], ["h"]), helper.make_node("MatMul", ["h", "wt"], ["y"])]
    graph = helper.make_graph(nodes, "g", [x], [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2, 64])], initializer=[numpy_helper.from_array(w, "w"), numpy_helper.from_array(w.T.copy(), "wt")])
    onnx.save_model(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(folder / "m.onnx"), save_as_external_data=True, location="m.data", size_threshold=0)
    out = tmp_path / "out" / "m.onnx"
    out.parent.mkdir()
    r = dedup(str(folder / "m.onnx"), str(out), OPTS)
    assert sorted(p.name for p in out.parent.iterdir()) == ["m.onnx", "m.onnx.data"]
    assert r.verdict.outputs_identical
    assert r.file_bytes_before - r.file_bytes_after >= w.nbytes - 200


def test_cli_dedup_json_and_exit_codes(tmp_path: Path) -> None:
    w = rng.standard_normal((8, 8)).astype(np.float32)
    src = _chain(tmp_path / "m.onnx", {"a": w, "b": w.copy()})
    proc = run_cli("dedup", str(src), "-o", str(tmp_path / "o.onnx"), "--json", "--no-ram")
    assert proc.returncode == 0, proc.stderr
    data = json.loads(proc.stdout)
    assert data["verification"]["outputs_identical"] and data["tensor_bytes"]["before"] - data["tensor_bytes"]["after"] == 256
    bad = run_cli("dedup", str(src), "-o", str(src))
    assert bad.returncode == 2 and bad.stderr.count("\n") == 1 and "--in-place" in bad.stderr
    (tmp_path / "t.txt").write_text("x")
    assert run_cli("dedup", str(tmp_path / "t.txt"), "-o", str(tmp_path / "o2.onnx")).returncode == 2


def test_dedup_of_the_tied_export_recovers_the_transposed_copy(tmp_path: Path) -> None:
    from tests.conftest import FIXTURES

    r = dedup(str(FIXTURES / "tiny_lm_folded.onnx"), str(tmp_path / "lm.onnx"), DedupOptions(measure_ram=True))
    facts = json.loads((FIXTURES / "expected.json").read_text())["summary"]["tiny_lm"]
    transposed = [m for m in r.merges if m.relation == "transposed"]
    assert [(m.kept, m.dropped, m.saved_bytes) for m in transposed] == [(facts["per_file"]["tiny_lm_folded.onnx"]["identical"][0], facts["per_file"]["tiny_lm_folded.onnx"]["transposed"][0], facts["embedding_bytes"])]
    assert r.verdict.outputs_identical
    assert set(r.ram) == {"before", "after"} and all(v > 0 for d in r.ram.values() for v in d.values())


def test_export_of_tied_lm_state_dict_holds_the_embedding_once(tmp_path: Path) -> None:
    from sharescan.onnx_rewrite.export import ExportOptions, export
    from tests.conftest import FIXTURES

    facts = json.loads((FIXTURES / "expected.json").read_text())["summary"]["tiny_lm"]
    options = ExportOptions(arch="fixtures.architectures:tiny_lm", dedup=DedupOptions(inputs=(("input_ids", (2, 32), "int64"),), measure_ram=False))
    r = export(str(FIXTURES / "tiny_lm.pt"), str(tmp_path / "lm.onnx"), options)
    stored = _initializers(tmp_path / "lm.onnx")
    embedding_copies = [n for n, a in stored.items() if a.size == facts["embedding_shape"][0] * facts["embedding_shape"][1]]
    assert len(embedding_copies) == 1
    assert r.dedup.verdict.outputs_identical
    assert r.torch_vs_onnxruntime_rel < 1e-5


def test_tied_lm_export_stores_each_parameter_once_and_only_the_graph_beside_it(tmp_path: Path) -> None:
    """The exported file's tensors are the unique parameters plus one causal mask; the rest is graph structure."""
    import torch

    from fixtures.architectures import tiny_lm
    from sharescan.onnx_rewrite.export import ExportOptions, export
    from tests.conftest import FIXTURES

    model = tiny_lm()
    model.load_state_dict(torch.load(FIXTURES / "tiny_lm.pt", weights_only=True))
    params = {p.data_ptr(): p.numel() * p.element_size() for p in model.parameters()}  # tied: one entry
    mask = next(b for n, b in model.named_buffers() if n.endswith("mask"))
    specs = (("input_ids", (1, 32), "int64"),)
    r = export(str(FIXTURES / "tiny_lm.pt"), str(tmp_path / "lm.onnx"), ExportOptions(arch="fixtures.architectures:tiny_lm", dedup=DedupOptions(inputs=specs, measure_ram=False, strip_debug=True, simplify=True)))
    plain = export(str(FIXTURES / "tiny_lm.pt"), str(tmp_path / "plain.onnx"), ExportOptions(arch="fixtures.architectures:tiny_lm", dedup=DedupOptions(inputs=specs, measure_ram=False)))
    shape_constants = 256  # Reshape targets of the attention heads
    assert sum(params.values()) <= r.dedup.tensor_bytes_after <= sum(params.values()) + mask.numel() + shape_constants
    assert {m.relation for m in r.dedup.merges} >= {"transposed", "identical"}  # the tied head, the second block's mask
    assert r.dedup.file_bytes_after <= plain.dedup.file_bytes_after
    assert r.dedup.verdict.outputs_identical and r.torch_vs_onnxruntime_rel < 1e-5


def test_cli_export_needs_arch_for_a_state_dict_and_inputs(tmp_path: Path) -> None:
    proc = run_cli("export", "fixtures/mlp.pt", "-o", str(tmp_path / "m.onnx"), "--input", "x:1x64:float32")
    assert proc.returncode == 2 and "--arch" in proc.stderr and "Traceback" not in proc.stderr
    proc = run_cli("export", "fixtures/mlp_script.pt", "-o", str(tmp_path / "m.onnx"), "--trust-code")
    assert proc.returncode == 2 and "--input" in proc.stderr
    proc = run_cli("export", "fixtures/mlp_script.pt", "-o", str(tmp_path / "m.onnx"), "--input", "x:3x64:float32", "--json", "--no-ram", "--trust-code")
    assert proc.returncode == 0, proc.stderr
    data = json.loads(proc.stdout)
    assert data["verification"]["outputs_identical"] and data["torch_vs_onnxruntime"]["rel_error"] < 1e-5
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.onnx"]


def test_strip_debug_drops_node_doc_and_metadata_but_keeps_model_metadata(tmp_path: Path) -> None:
    w = rng.standard_normal((8, 8)).astype(np.float32)
    src = _chain(tmp_path / "m.onnx", {"a": w, "b": w.copy()})
    model = onnx.load(str(src))
    model.graph.node[0].doc_string = "stack trace " * 50
    onnx.helper.set_model_props(model, {"author": "me"})
    entry = model.graph.node[0].metadata_props.add()
    entry.key, entry.value = "pkg.torch.onnx.stack_trace", "x" * 500
    onnx.save_model(model, str(src))
    kept = dedup(str(src), str(tmp_path / "keep.onnx"), OPTS)
    stripped = dedup(str(src), str(tmp_path / "strip.onnx"), DedupOptions(measure_ram=False, strip_debug=True))
    out = onnx.load(str(tmp_path / "strip.onnx"))
    assert all(not n.doc_string and not n.metadata_props for n in out.graph.node)
    assert {p.key: p.value for p in out.metadata_props} == {"author": "me"}
    assert kept.file_bytes_after - stripped.file_bytes_after > 1000


def test_strip_debug_clears_exporter_provenance_and_only_the_value_info_inference_rederives(tmp_path: Path) -> None:
    from tests.conftest import FIXTURES

    original = onnx.load(str(FIXTURES / "tiny_lm_dynamo.onnx"))
    # What torch.export-based exports add: a graph signature, provenance on inputs and initializers.
    onnx.helper.set_metadata_props(original.graph, {"pkg.torch.export.ExportedProgram.graph_signature": "x" * 300})
    onnx.helper.set_metadata_props(original.graph.input[0], {"pkg.torch.onnx.original_node_name": "input_ids"})
    onnx.helper.set_metadata_props(original.graph.initializer[0], {"pkg.torch.onnx.original_node_name": "w"})
    original.graph.initializer[0].doc_string = "parameter"
    src = tmp_path / "m.onnx"
    onnx.save_model(original, str(src))
    r = dedup(str(src), str(tmp_path / "strip.onnx"), DedupOptions(measure_ram=False, strip_debug=True))
    out = onnx.load(str(tmp_path / "strip.onnx"))
    g = out.graph
    assert not g.metadata_props and not any(v.metadata_props for v in list(g.input) + list(g.output) + list(g.value_info))
    assert not any(t.metadata_props or t.HasField("doc_string") or t.HasField("data_location") for t in g.initializer)
    assert not any(n.HasField("doc_string") for n in g.node)  # cleared, not serialized as ""
    # Annotations inference cannot derive stay (onnxruntime's fusions read them); dropping all changed outputs.
    assert 0 < len(g.value_info) < len(original.graph.value_info)
    assert r.verdict.outputs_identical


def test_external_data_output_when_the_current_folder_has_a_file_of_that_name(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    w = rng.standard_normal((64, 8)).astype(np.float32)
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 64])
    nodes = [helper.make_node("MatMul", ["x", "w"], ["h"]), helper.make_node("MatMul", ["h", "wt"], ["y"])]
    graph = helper.make_graph(nodes, "g", [x], [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2, 64])], initializer=[numpy_helper.from_array(w, "w"), numpy_helper.from_array(w.T.copy(), "wt")])
    onnx.save_model(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(tmp_path / "model.onnx"), save_as_external_data=True, location="model.onnx.data", size_threshold=0)
    monkeypatch.chdir(tmp_path)  # model.onnx.data exists here, as it does for an in-place run
    r = dedup("model.onnx", "model.onnx", OPTS, in_place=True)
    assert r.verdict.outputs_identical
    assert set(_initializers(tmp_path / "model.onnx")) == {"w"}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.onnx", "model.onnx.data"]
    model_mode, data_mode = ((tmp_path / n).stat().st_mode & 0o777 for n in ("model.onnx", "model.onnx.data"))
    assert data_mode == model_mode  # readable by whoever can read the model


def test_rows_and_transposed_copy_of_one_embedding_stay_sorted(tmp_path: Path) -> None:
    table = rng.standard_normal((50, 8)).astype(np.float32)
    table[20:] = 0.0
    ids = helper.make_tensor_value_info("ids", TensorProto.INT64, [1, 4])
    nodes = [helper.make_node("Gather", ["E", "ids"], ["h"]), helper.make_node("MatMul", ["h", "ET"], ["y"])]
    graph = helper.make_graph(nodes, "g", [ids], [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4, 50])], initializer=[numpy_helper.from_array(table, "E"), numpy_helper.from_array(table.T.copy(), "ET")])
    onnx.save_model(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(tmp_path / "m.onnx"))
    r = dedup(str(tmp_path / "m.onnx"), str(tmp_path / "o.onnx"), DedupOptions(rows=True, measure_ram=False))
    assert sorted(m.relation for m in r.merges) == ["rows", "transposed"]
    assert r.verdict.outputs_identical


def test_old_ir_models_list_new_initializers_as_inputs(tmp_path: Path) -> None:
    w = rng.standard_normal((8, 8)).astype(np.float32)
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 8])
    inits = {"w": w, "w2": (w * np.float32(2)).astype(np.float32)}
    nodes = [helper.make_node("MatMul", ["x", "w"], ["h"]), helper.make_node("MatMul", ["h", "w2"], ["y"])]
    inputs = [x] + [helper.make_tensor_value_info(k, TensorProto.FLOAT, [8, 8]) for k in inits]
    graph = helper.make_graph(nodes, "g", inputs, [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2, 8])], initializer=[numpy_helper.from_array(v, k) for k, v in inits.items()])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 8)], ir_version=3)
    onnx.save_model(model, str(tmp_path / "m.onnx"))
    r = dedup(str(tmp_path / "m.onnx"), str(tmp_path / "o.onnx"), DedupOptions(measure_ram=False, inputs=(("x", (2, 8), "float32"),)))
    assert [m.relation for m in r.merges] == ["scaled"] and r.verdict.outputs_identical


def test_scalar_bool_graph_input_is_fed(tmp_path: Path) -> None:
    from sharescan.onnx_rewrite.verify import sample_inputs

    c = helper.make_tensor_value_info("c", TensorProto.BOOL, [])
    graph = helper.make_graph([helper.make_node("Not", ["c"], ["y"])], "g", [c], [helper.make_tensor_value_info("y", TensorProto.BOOL, [])])
    feeds = sample_inputs(helper.make_model(graph), {})
    assert isinstance(feeds["c"], np.ndarray) and feeds["c"].shape == ()


def test_export_of_a_pt2_program_and_dynamo_json_stays_pure(tmp_path: Path) -> None:
    proc = run_cli("export", "fixtures/mlp.pt2", "-o", str(tmp_path / "p.onnx"), "--input", "x:2x64:float32", "--json", "--no-ram", "--trust-pickle")
    assert proc.returncode == 0, proc.stderr
    data = json.loads(proc.stdout)
    assert data["input"] == "fixtures/mlp.pt2" and data["torch_vs_onnxruntime"]["rel_error"] < 1e-5
    proc = run_cli("export", "fixtures/mlp.pt", "--arch", "fixtures.architectures:DigitsMLP", "-o", str(tmp_path / "d.onnx"), "--input", "x:2x64:float32", "--dynamo", "--json", "--no-ram")
    assert proc.returncode == 0, proc.stderr
    json.loads(proc.stdout)


def test_outputs_and_reports_never_overwrite_inputs(tmp_path: Path) -> None:
    import shutil

    src = tmp_path / "in.pt"
    shutil.copy("fixtures/mlp_script.pt", src)
    before = src.read_bytes()
    assert run_cli("export", str(src), "-o", str(src), "--input", "x:2x64:float32").returncode == 2
    w = rng.standard_normal((8, 8)).astype(np.float32)
    onnx_in = _chain(tmp_path / "m.onnx", {"a": w, "b": w.copy()})
    onnx_before = onnx_in.read_bytes()
    assert run_cli("dedup", str(onnx_in), "-o", str(tmp_path / "o.onnx"), "--report", str(onnx_in)).returncode == 2
    assert run_cli("dedup", str(onnx_in), "-o", str(tmp_path / "o.onnx"), "--report", str(tmp_path / "o.onnx")).returncode == 2
    assert src.read_bytes() == before and onnx_in.read_bytes() == onnx_before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.pt", "m.onnx"]


def test_an_initializer_listed_as_a_graph_input_is_an_overridable_default_and_is_not_merged(tmp_path: Path) -> None:
    w = rng.standard_normal((8, 8)).astype(np.float32)
    src = _chain(tmp_path / "m.onnx", {"a": w, "b": w.copy(), "c": w.copy()})
    model = onnx.load(str(src))
    model.graph.input.append(helper.make_tensor_value_info("b", TensorProto.FLOAT, [8, 8]))  # the caller may feed b
    onnx.save_model(model, str(src))
    r = dedup(str(src), str(tmp_path / "out.onnx"), OPTS)
    out = onnx.load(str(tmp_path / "out.onnx"))
    assert [(m.kept, m.dropped) for m in r.merges] == [("a", "c")]
    assert "b" in {i.name for i in out.graph.input} and "b" in _initializers(tmp_path / "out.onnx")
    x = rng.standard_normal((2, 8)).astype(np.float32)
    fed = {"x": x, "b": np.eye(8, dtype=np.float32)}
    run = [_ort_run(p, fed) for p in (src, tmp_path / "out.onnx")]
    assert np.array_equal(run[0], run[1]) and np.allclose(run[1], x @ w @ w)  # b was replaced by the identity


def _ort_run(path: Path, feeds: dict[str, np.ndarray]) -> np.ndarray:
    import onnxruntime as ort

    return ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run(None, feeds)[0]


def test_an_input_spec_for_a_name_the_model_lacks_is_refused_in_one_line(tmp_path: Path) -> None:
    w = rng.standard_normal((8, 8)).astype(np.float32)
    src = _chain(tmp_path / "m.onnx", {"a": w, "b": w.copy()})
    proc = run_cli("dedup", str(src), "-o", str(tmp_path / "out.onnx"), "--input", "ids:1x8:int64", "--no-ram")
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1
    assert "--input ids" in proc.stderr and "its inputs: x" in proc.stderr
    assert not (tmp_path / "out.onnx").exists()


def test_dedup_reports_each_step_as_it_starts(tmp_path: Path) -> None:
    w = rng.standard_normal((8, 8)).astype(np.float32)
    src = _chain(tmp_path / "m.onnx", {"w0": w, "w1": w.copy()})
    steps: list[str] = []
    dedup(str(src), str(tmp_path / "o.onnx"), DedupOptions(), on_step=steps.append)
    assert steps == ["loading and analysing", "checking", "running the original in onnxruntime", "rewriting and verifying", "writing"]
    steps.clear()
    dedup(str(src), str(tmp_path / "o2.onnx"), DedupOptions(measure_ram=True), on_step=steps.append)
    assert steps == ["loading and analysing", "checking", "running the original in onnxruntime", "rewriting and verifying", "measuring onnxruntime RAM", "writing"]


def test_dedup_analyses_the_model_it_loaded_without_reading_the_file_again(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import sharescan.sources.onnx_source as onnx_source

    def second_read(*args: object) -> None:
        raise AssertionError("the analysis read the file again")

    monkeypatch.setattr(onnx_source, "load_onnx", second_read)
    w = rng.standard_normal((8, 8)).astype(np.float32)
    r = dedup(str(_chain(tmp_path / "m.onnx", {"a": w, "b": w.copy()})), str(tmp_path / "out.onnx"), OPTS)
    assert [(m.kept, m.dropped) for m in r.merges] == [("a", "b")] and r.verdict.outputs_identical


def test_an_unreadable_model_is_refused_with_the_loader_message(tmp_path: Path) -> None:
    src = tmp_path / "m.onnx"
    w = rng.standard_normal((8, 8)).astype(np.float32)
    _chain(src, {"a": w, "b": w.copy()})
    src.write_bytes(src.read_bytes()[:-100])  # cut short
    with pytest.raises(InputError) as caught:
        dedup(str(src), str(tmp_path / "out.onnx"), OPTS)
    assert str(src) in str(caught.value) and "\n" not in str(caught.value)
    assert not (tmp_path / "out.onnx").exists()
