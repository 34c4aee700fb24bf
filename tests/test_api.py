"""The Python API: what the package exports, what each function takes, and
error messages that arrive whole on one line."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import sharescan
from sharescan.errors import InputError, one_line
from tests.conftest import ROOT
from tests.helpers import save_onnx, save_safetensors

API = [
    "analyze", "AnalysisOptions", "AnalysisResult",
    "dedup", "DedupOptions", "DedupResult",
    "export", "ExportOptions", "ExportResult",
    "tie", "TieOptions", "TieResult",
    "SharescanError", "InputError", "VerificationError", "TrainingError", "QualityError",
]  # fmt: skip


def _pair(tmp_path: Path) -> Path:
    """A safetensors file whose second tensor repeats the first."""
    w = np.random.default_rng(0).standard_normal((16, 8)).astype(np.float32)
    return save_safetensors(tmp_path / "m.safetensors", {"a": w, "b": w.copy()})


def _chain(weights: dict[str, np.ndarray]) -> object:
    """A valid ONNX model: x [1, 8] through a MatMul with each [8, 8] weight in turn."""
    from onnx import TensorProto, helper, numpy_helper

    nodes, x = [], "x"
    for k, name in enumerate(weights):
        nodes.append(helper.make_node("MatMul", [x, name], [f"y{k}"]))
        x = f"y{k}"
    graph = helper.make_graph(
        nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 8])], [helper.make_tensor_value_info(x, TensorProto.FLOAT, [1, 8])],
        initializer=[numpy_helper.from_array(w, n) for n, w in weights.items()],
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def _relations(result: sharescan.AnalysisResult) -> list[tuple[str, list[str]]]:
    return sorted((g.relation, sorted(m.name for m in g.members)) for g in result.groups)


def test_dir_lists_the_whole_api_and_each_name_resolves_with_a_docstring() -> None:
    names = dir(sharescan)
    for name in API:
        assert name in names and name in sharescan.__all__
        assert getattr(sharescan, name).__doc__, name
    for function in ("analyze", "dedup", "export", "tie"):
        assert "Example" in getattr(sharescan, function).__doc__, function


def test_import_sharescan_imports_neither_torch_nor_onnx() -> None:
    code = "import sys, sharescan; sharescan.InputError; sharescan.AnalysisOptions; print(sorted(m for m in ('torch', 'onnx', 'onnxruntime') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, check=True)
    assert out.stdout.strip() == "[]"


def test_analyze_takes_one_path_as_a_str_not_as_its_characters(tmp_path: Path) -> None:
    result = sharescan.analyze(str(_pair(tmp_path)))
    assert len(result.models) == 1
    assert _relations(result) == [("identical", ["a", "b"])]


def test_analyze_takes_a_pathlike(tmp_path: Path) -> None:
    result = sharescan.analyze(_pair(tmp_path))
    assert [m.path for m in result.models] == [str(tmp_path / "m.safetensors")]
    assert result.totals.reclaimable_bytes == 16 * 8 * 4


def test_analyze_takes_a_list_and_finds_relations_across_models(tmp_path: Path) -> None:
    w = np.random.default_rng(1).standard_normal((8, 8)).astype(np.float32)
    a = save_safetensors(tmp_path / "a.safetensors", {"w": w})
    b = save_onnx(tmp_path / "b.onnx", {"w": w.T.copy()})
    result = sharescan.analyze([a, str(b)])
    assert len(result.models) == 2
    (across,) = [g for g in result.groups if g.relation == "transposed"]
    assert sorted(m.model for m in across.members) == sorted([str(a), str(b)])


def test_analyze_refuses_one_object_given_twice() -> None:
    state = {"w": np.ones((4, 4), np.float32)}
    with pytest.raises(InputError, match="given twice"):
        sharescan.analyze([state, state])


def test_analyze_module_reports_a_tied_weight_as_aliased() -> None:
    torch = pytest.importorskip("torch")

    class Tied(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.embed = torch.nn.Embedding(32, 8)
            self.head = torch.nn.Linear(8, 32, bias=False)
            self.head.weight = self.embed.weight

    result = sharescan.analyze(Tied())
    assert _relations(result) == [("aliased", ["embed.weight", "head.weight"])]
    # Stored once in memory: nothing left to reclaim.
    assert result.totals.reclaimable_bytes == 0
    assert result.models[0].path == "<nn.Module Tied>"


def test_analyze_state_dict_of_numpy_arrays() -> None:
    rng = np.random.default_rng(2)
    w = rng.standard_normal((8, 4)).astype(np.float32)
    state = {"enc.w": w, "dec.w": -w, "same": w, "other": rng.standard_normal(5).astype(np.float32)}
    result = sharescan.analyze(state)
    assert _relations(result) == [("aliased", ["enc.w", "same"]), ("negated", ["dec.w", "enc.w"])]
    assert result.totals.reclaimable_bytes == w.nbytes


def test_analyze_onnx_model_proto() -> None:
    w = np.arange(64, dtype=np.float32).reshape(8, 8)
    proto = _chain({"w1": w, "w2": w * 2.0})
    result = sharescan.analyze(proto)
    assert _relations(result) == [("scaled", ["w1", "w2"])]
    assert result.models[0].format == "onnx"


def test_analyze_json_of_objects_is_valid(tmp_path: Path) -> None:
    from sharescan.report.json_report import render_json

    w = np.ones((4, 4), np.float32)
    text = render_json(sharescan.analyze([{"w": w}, {"v": w.copy()}]))
    assert [m["path"] for m in json.loads(text)["models"]] == ["<state dict #1>", "<state dict #2>"]


def test_analyze_refuses_an_unknown_object_in_one_line() -> None:
    with pytest.raises(InputError) as e:
        sharescan.analyze([object()])
    assert "\n" not in e.value.message and "nn.Module" in e.value.message


def test_dedup_takes_a_model_proto_and_leaves_it_unchanged(tmp_path: Path) -> None:
    w = np.random.default_rng(3).standard_normal((8, 8)).astype(np.float32)
    proto = _chain({"a": w, "b": w.copy()})
    before = proto.SerializeToString()
    out = tmp_path / "out" / "m.dedup.onnx"
    out.parent.mkdir()
    result = sharescan.dedup(proto, out, sharescan.DedupOptions(measure_ram=False))
    assert proto.SerializeToString() == before
    assert result.input == "<onnx.ModelProto g>"
    assert [m.relation for m in result.merges] == ["identical"]
    assert os.listdir(out.parent) == ["m.dedup.onnx"]  # nothing else beside the output


def test_one_line_joins_every_line_and_keeps_every_word() -> None:
    text = "first line\n  second\tline\n\nlast line."
    assert one_line(text) == "first line second line last line."
    assert one_line(ValueError("a\nb")) == "a b"


def test_one_line_with_a_limit_ends_at_a_sentence_never_mid_word() -> None:
    sentence = "The node MatMul_7 reads a tensor of shape [4, 8] where [8, 4] was expected. "
    text = sentence * 100
    cut = one_line(text, limit=1200)
    assert cut.endswith("expected. \u2026")
    assert 1000 <= len(cut) <= 1202
    words = one_line("word " * 1000, limit=10)  # never under 1,000 characters
    assert len(words) >= 1000 and words.endswith("word \u2026")


def test_a_long_onnxruntime_message_survives_whole_in_the_input_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from sharescan.onnx_rewrite import verify

    detail = " ".join(f"Node (n{k}) Op (MatMul) input shape [{k}, 8] does not match." for k in range(120))
    message = f"[ONNXRuntimeError] : 1 : FAIL : Load model failed:\n{detail}\nThe last sentence names the cause."

    def refuse(path: Path) -> None:
        raise RuntimeError(message)

    monkeypatch.setattr(verify, "_session", refuse)
    import onnx

    model = tmp_path / "m.onnx"
    onnx.save(_chain({"a": np.ones((8, 8), np.float32)}), str(model))
    with pytest.raises(InputError) as e:
        sharescan.dedup(model, tmp_path / "out.onnx", sharescan.DedupOptions(measure_ram=False))
    text = e.value.message
    assert len(message) > 5000
    assert "\n" not in text
    assert detail in text and text.count("does not match.") == 120
    assert "The last sentence names the cause." in text
    assert not (tmp_path / "out.onnx").exists()


def test_a_torch_error_reported_after_its_first_line_is_kept_whole() -> None:
    from sharescan.sources.torch_source import first_line

    # torch puts the class that failed on the first line and the cause on the next ones.
    cause = "Can't get attribute 'Net' on <module '__main__'>. " * 10
    text = first_line(AttributeError(f"Error while unpickling:\n{cause}\nRe-save the state_dict()."))
    assert text == one_line(f"Error while unpickling: {cause} Re-save the state_dict().")
    assert len(text) > 300


def test_tie_takes_pathlikes_and_returns_the_tied_modules_left_out_of_json(tmp_path: Path) -> None:
    from tests.test_tie import FAST, PAIR

    r = sharescan.tie([Path(p) for p in PAIR], tmp_path / "tied.pt", sharescan.TieOptions(**FAST, lam=100.0))
    assert set(r.modules) == set(r.keys) == {"A", "B"}
    assert r.modules["A"].features[0].weight is r.modules["B"].features[0].weight
    data = json.loads(json.dumps(r.to_dict()))
    assert "modules" not in data and data["models"] == PAIR


def test_analyze_names_each_step_to_its_progress_hooks() -> None:
    from sharescan import detect
    from sharescan.analysis import Progress

    class Record(Progress):
        def __init__(self) -> None:
            self.events: list[str] = []

        def step(self, name: str) -> None:
            self.events.append(name)

        def start(self, total_bytes: int) -> None:
            self.events.append(f"scan {total_bytes}")

    record = Record()
    sharescan.analyze([str(ROOT / "fixtures" / "pair_a.safetensors"), str(ROOT / "fixtures" / "pair_b.safetensors")], progress=record)
    assert record.events[:2] == [f"loading {ROOT / 'fixtures' / 'pair_a.safetensors'}", f"loading {ROOT / 'fixtures' / 'pair_b.safetensors'}"]
    assert record.events[2].startswith("scan ") and int(record.events[2].split()[1]) > 0
    assert [e for e in record.events if e.startswith("finding ")] == [f"finding {r.name} tensors" for r in detect.RELATIONS]
    assert record.events[-2:] == ["ranking candidates for tying", ""]
