"""onnxruntime RAM is measured in a child process; a failed probe is one line."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest

from sharescan.onnx_rewrite.feeds import fill
from sharescan.onnx_rewrite.ram import measure_ram

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures"


def test_a_session_and_one_run_grow_the_probe_rss(tmp_path: Path) -> None:
    path = FIXTURES / "mlp.onnx"
    grown = measure_ram(path, fill(onnx.load(path), {}), recommended=True, workdir=tmp_path)
    assert isinstance(grown, int) and grown > 0


def test_a_probe_that_cannot_run_the_model_fails_in_one_line(tmp_path: Path) -> None:
    with pytest.raises(RuntimeError) as caught:
        measure_ram(FIXTURES / "mlp.onnx", {"no_such_input": np.zeros(1, np.float32)}, recommended=False, workdir=tmp_path)
    assert "\n" not in str(caught.value) and str(caught.value)


def _copy_model(path: Path) -> Path:
    from onnx import TensorProto, helper, numpy_helper

    w = np.random.default_rng(0).standard_normal((8, 8)).astype(np.float32)
    nodes = [helper.make_node("MatMul", ["x", "a"], ["h"]), helper.make_node("MatMul", ["h", "b"], ["y"])]
    graph = helper.make_graph(
        nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 8])], [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2, 8])],
        initializer=[numpy_helper.from_array(w, "a"), numpy_helper.from_array(w.copy(), "b")],
    )
    onnx.save_model(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(path))
    return path


def test_dedup_measures_no_ram_unless_asked_and_says_so(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import json

    import sharescan.onnx_rewrite.dedup as dedup_module
    from sharescan.onnx_rewrite.dedup import DedupOptions, dedup
    from sharescan.report.dedup_report import render_dedup_markdown

    def probe(*args: object) -> int:
        raise AssertionError("the RAM probe ran without --ram")

    monkeypatch.setattr(dedup_module, "measure_ram", probe)
    r = dedup(str(_copy_model(tmp_path / "m.onnx")), str(tmp_path / "o.onnx"), DedupOptions())
    assert r.merges and r.ram == {} and r.warnings == ()
    assert json.loads(json.dumps(r.to_dict()))["onnxruntime_ram_bytes"] is None
    assert "- onnxruntime RAM: not measured\n" in render_dedup_markdown(r)


def test_ram_flag_measures_and_no_ram_is_still_accepted(tmp_path: Path) -> None:
    import json

    from tests.helpers import run_cli

    src = _copy_model(tmp_path / "m.onnx")
    measured = run_cli("dedup", str(src), "-o", str(tmp_path / "a.onnx"), "--ram", "--json")
    assert measured.returncode == 0, measured.stderr
    ram = json.loads(measured.stdout)["onnxruntime_ram_bytes"]
    assert set(ram) == {"before", "after"} and all(v > 0 for d in ram.values() for v in d.values())
    old = run_cli("dedup", str(src), "-o", str(tmp_path / "b.onnx"), "--no-ram", "--json")
    assert old.returncode == 0, old.stderr
    assert json.loads(old.stdout)["onnxruntime_ram_bytes"] is None
    helped = run_cli("dedup", "--help").stdout
    assert "--ram" in helped and "--no-ram" not in helped


def test_export_measures_ram_only_with_the_ram_flag_as_dedup_does(tmp_path: Path) -> None:
    import json

    from tests.helpers import run_cli

    plain = run_cli("export", str(FIXTURES / "mlp_script.pt"), "-o", str(tmp_path / "a.onnx"), "--input", "x:3x64:float32", "--trust-code", "--json")
    assert plain.returncode == 0, plain.stderr
    assert json.loads(plain.stdout)["onnxruntime_ram_bytes"] is None
    helped = run_cli("export", "--help").stdout
    assert "--ram" in helped and "--no-ram" not in helped
