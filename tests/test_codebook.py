"""Codebooks: 1-D k-means against brute force, bits for an error, analyze --codebook, dedup --codebook."""

from __future__ import annotations

import itertools
import json
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from sharescan.codebook.kmeans import exact_kmeans, histogram, lloyd_kmeans, sse
from tests.helpers import run_cli, save_onnx, save_safetensors

rng = np.random.default_rng(11)


def _brute_force_sse(x: np.ndarray, k: int) -> float:
    """The optimum over every split of the sorted values into k intervals (an optimal 1-D cluster is one)."""
    xs = np.sort(x)
    best = np.inf
    for cuts in itertools.combinations(range(1, xs.size), k - 1):
        best = min(best, sum(float(((p - p.mean()) ** 2).sum()) for p in np.split(xs, cuts)))
    return best


@pytest.mark.parametrize("k", [1, 2, 3, 4, 5])
def test_exact_kmeans_matches_brute_force(k: int) -> None:
    x = np.concatenate([rng.normal(size=8), rng.normal(3, 0.2, size=5)])
    assert sse(histogram(x), exact_kmeans(histogram(x), k)) == pytest.approx(_brute_force_sse(x, k), rel=1e-9, abs=1e-12)


@pytest.mark.parametrize("k", [2, 4, 8, 16])
def test_lloyd_is_within_a_small_factor_of_exact(k: int) -> None:
    h = histogram(rng.standard_t(4, size=3000))
    exact = sse(h, exact_kmeans(h, k))
    assert exact <= sse(h, lloyd_kmeans(h, k)) <= 1.2 * exact


def test_large_tensor_histogram_error_bounds_the_true_error() -> None:
    # Above 65536 elements the points are uniform bins: their error is an upper bound, and a close one.
    x = rng.normal(size=200_000)
    h = histogram(x)
    c = lloyd_kmeans(h, 16)
    mid = (c[1:] + c[:-1]) / 2
    true = float(((x - c[np.searchsorted(mid, x)]) ** 2).sum())
    assert true <= sse(h, c) <= 1.01 * true


def _bits_needed(path: Path, error: float) -> dict[str, int | None]:
    r = run_cli("analyze", str(path), "--codebook", "--codebook-error", str(error), "--json")
    assert r.returncode == 0, r.stderr
    return {t["name"]: t["bits"] for t in json.loads(r.stdout)["codebook"]["tensors"]}


def test_bits_needed_fall_as_the_allowed_error_rises(tmp_path: Path) -> None:
    path = save_safetensors(tmp_path / "m.safetensors", {"w": rng.normal(size=(64, 64)).astype(np.float32)})
    bits = [_bits_needed(path, e)["w"] for e in (0.01, 0.03, 0.1, 0.3, 0.6)]
    assert all(b is not None for b in bits)
    assert bits == sorted(bits, reverse=True) and bits[0] > bits[-1]


def test_analyze_codebook_json_keys_totals_and_skipped_tensors(tmp_path: Path) -> None:
    w = rng.normal(size=(32, 64)).astype(np.float32)
    bad = w.copy()
    bad[0, 0] = np.nan
    path = save_safetensors(tmp_path / "m.safetensors", {"w": w, "ids": np.arange(4096, dtype=np.int64), "bad": bad, "tiny": np.arange(3, dtype=np.float32)})
    plain = json.loads(run_cli("analyze", str(path), "--json").stdout)
    r = run_cli("analyze", str(path), "--codebook", "--group-channels", "8", "--json")
    assert r.returncode == 0, r.stderr
    data = json.loads(r.stdout)
    cb = data.pop("codebook")
    assert data == plain  # everything else unchanged
    assert set(cb) == {"settings", "totals", "tensors"} and cb["settings"]["group_channels"] == 8
    by = {t["name"]: t for t in cb["tensors"]}
    assert by["ids"]["bits"] is None and "only float tensors" in by["ids"]["note"]
    assert by["bad"]["bits"] is None and "NaN or Inf" in by["bad"]["note"]
    assert by["tiny"]["bits"] is None and by["tiny"]["bytes_after"] == 12
    coded = by["w"]
    assert coded["codebooks"] == 4 and coded["rel_error"] <= 1e-2
    # indices packed at that width, then 4 codebooks (one per 8 channels) of 2^bits float32 entries
    assert coded["bytes_after"] == 32 * 64 * coded["bits"] // 8 + 4 * 2 ** coded["bits"] * 4 < w.nbytes
    total = cb["totals"][0]
    assert total["float_bytes"] == w.nbytes * 2 + 12 and total["tensors_coded"] == 1


@pytest.mark.parametrize("bits", ["0", "9"])
def test_analyze_refuses_bits_outside_1_to_8(tmp_path: Path, bits: str) -> None:
    path = save_safetensors(tmp_path / "m.safetensors", {"w": np.ones((4, 4), np.float32)})
    r = run_cli("analyze", str(path), "--codebook", "--codebook-bits", bits)
    assert r.returncode == 2 and r.stderr.startswith("error: --codebook-bits") and "Traceback" not in r.stderr


def test_codebook_options_need_codebook(tmp_path: Path) -> None:
    path = save_safetensors(tmp_path / "m.safetensors", {"w": np.ones((4, 4), np.float32)})
    r = run_cli("analyze", str(path), "--group-channels", "4")
    assert r.returncode == 2 and "add --codebook" in r.stderr


def test_terminal_and_markdown_show_the_codebook_table(tmp_path: Path) -> None:
    path = save_safetensors(tmp_path / "m.safetensors", {"w": rng.normal(size=(64, 64)).astype(np.float32)})
    report = tmp_path / "r.md"
    r = run_cli("analyze", str(path), "--codebook", "--report", str(report))
    assert r.returncode == 0 and "Codebooks:" in r.stdout and "rel err" in r.stdout
    assert "## Codebooks" in report.read_text()


def _matmul_model(path: Path, opset: int) -> Path:
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 64])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [2, 32])
    w = numpy_helper.from_array(rng.normal(size=(64, 32)).astype(np.float32), "W")
    graph = helper.make_graph([helper.make_node("MatMul", ["x", "W"], ["y"])], "g", [x], [y], initializer=[w])
    onnx.save_model(helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)]), str(path))
    return path


@pytest.mark.parametrize(("opset", "index_type"), [(17, TensorProto.UINT8), (21, TensorProto.UINT4)])
def test_dedup_codebook_writes_gather_cast_verifies_and_shrinks(tmp_path: Path, opset: int, index_type: int) -> None:
    src = _matmul_model(tmp_path / "m.onnx", opset)
    out = tmp_path / "out.onnx"
    r = run_cli("dedup", str(src), "-o", str(out), "--codebook", "4", "--max-error", "0.2", "--no-ram", "--json")
    assert r.returncode == 0, r.stderr
    model = onnx.load(str(out))
    assert [n.op_type for n in model.graph.node] == ["Cast", "Gather", "MatMul"]
    inits = {t.name: t for t in model.graph.initializer}
    assert "W" not in inits and inits["W_codebook_index"].data_type == index_type and len(inits["W_codebook"].dims) == 1
    data = json.loads(r.stdout)
    assert data["verification"]["lossy"] and 0 < data["verification"]["rel_error"] <= 0.2
    assert [m["relation"] for m in data["merges"]] == ["codebook"] and data["settings"]["codebook"] == 4
    assert out.stat().st_size < src.stat().st_size / (2.5 if opset == 17 else 4.5)
    # UINT4 indices are packed two a byte, and counted so
    index_bytes = 64 * 32 if opset == 17 else 64 * 32 // 2
    assert data["tensor_bytes"] == {"before": 64 * 32 * 4, "after": index_bytes + 16 * 4}


def test_dedup_codebook_above_max_error_writes_nothing(tmp_path: Path) -> None:
    src = _matmul_model(tmp_path / "m.onnx", 17)
    out = tmp_path / "out.onnx"
    r = run_cli("dedup", str(src), "-o", str(out), "--codebook", "2", "--max-error", "1e-4", "--no-ram")
    assert r.returncode == 2 and r.stderr.startswith("error: ") and "nothing written" in r.stderr
    assert not out.exists() and list(tmp_path.iterdir()) == [src]


@pytest.mark.parametrize("bits", ["0", "9"])
def test_dedup_refuses_bits_outside_1_to_8(tmp_path: Path, bits: str) -> None:
    src = save_onnx(tmp_path / "m.onnx", {"w": np.ones((16, 16), np.float32)})
    r = run_cli("dedup", str(src), "-o", str(tmp_path / "o.onnx"), "--codebook", bits)
    assert r.returncode == 2 and r.stderr.startswith("error: --codebook") and not (tmp_path / "o.onnx").exists()


def test_dedup_codebook_uniform_writes_dequantize_linear_and_verifies(tmp_path: Path) -> None:
    src = _matmul_model(tmp_path / "m.onnx", 21)
    out = tmp_path / "out.onnx"
    r = run_cli("dedup", str(src), "-o", str(out), "--codebook", "4", "--uniform", "--max-error", "0.3", "--json")
    assert r.returncode == 0, r.stderr
    model = onnx.load(str(out))
    assert "DequantizeLinear" in [n.op_type for n in model.graph.node] and "Gather" not in [n.op_type for n in model.graph.node]
    assert "W" not in {t.name for t in model.graph.initializer}
    data = json.loads(r.stdout)
    assert data["settings"]["codebook_uniform"] is True and data["verification"]["lossy"]
    assert 0 < data["verification"]["rel_error"] <= 0.3


def test_dedup_codebook_group_channels_gives_each_row_group_its_codebook_and_lowers_the_error(tmp_path: Path) -> None:
    src = _matmul_model(tmp_path / "m.onnx", 17)
    one = run_cli("dedup", str(src), "-o", str(tmp_path / "one.onnx"), "--codebook", "2", "--max-error", "1", "--json")
    grouped = run_cli("dedup", str(src), "-o", str(tmp_path / "g.onnx"), "--codebook", "2", "--codebook-group-channels", "8", "--max-error", "1", "--json")
    assert one.returncode == 0 and grouped.returncode == 0, grouped.stderr
    a, b = json.loads(one.stdout), json.loads(grouped.stdout)
    assert b["settings"]["codebook_group_channels"] == 8
    assert b["merges"][0]["rel_error"] < a["merges"][0]["rel_error"]
    assert b["tensor_bytes"]["after"] > a["tensor_bytes"]["after"]  # 8 codebooks cost more than one


@pytest.mark.parametrize("args", [["--uniform"], ["--codebook-group-channels", "8"], ["--codebook", "4", "--uniform", "--codebook-group-channels", "8"], ["--codebook", "4", "--codebook-group-channels", "0"]])
def test_dedup_codebook_form_options_need_codebook_and_one_form(tmp_path: Path, args: list[str]) -> None:
    src = _matmul_model(tmp_path / "m.onnx", 17)
    r = run_cli("dedup", str(src), "-o", str(tmp_path / "o.onnx"), *args)
    assert r.returncode == 2 and r.stderr.startswith("error: ") and r.stderr.count("\n") == 1
    assert not (tmp_path / "o.onnx").exists()
