"""benchmarks/make_zoo.py writes the relations its truth.json says it planted (checked from the files)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from benchmarks import make_zoo as mz


@pytest.fixture(scope="module")
def zoo(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    out = tmp_path_factory.mktemp("zoo")
    # A short base training keeps the test fast; the relations planted do not depend on how good the base is.
    patch = pytest.MonkeyPatch()
    patch.setattr(mz, "BASE_STEPS", 300)
    try:
        truth = mz.make_zoo(12, out, seed=3, cache=out / "cache")
    finally:
        patch.undo()
    return out, truth


def _base(out: Path, truth: dict) -> dict[str, np.ndarray]:
    from safetensors.numpy import load_file

    return load_file(str(out / truth["base"]))


def test_manifest_lists_every_file_written_and_truth_matches_disk(zoo: tuple[Path, dict]) -> None:
    out, truth = zoo
    listed = (out / "manifest.txt").read_text().split()
    on_disk = sorted(str(p.relative_to(out)) for p in (out / "models").iterdir())
    assert sorted(listed) == on_disk
    assert sorted(listed) == sorted([m["path"] for m in truth["models"]] + [u["path"] for u in truth["unreadable"]])
    assert truth["file_bytes"] == sum((out / p).stat().st_size for p in listed)
    assert json.loads((out / "truth.json").read_text()) == truth


def test_every_kind_and_format_is_planted(zoo: tuple[Path, dict]) -> None:
    _, truth = zoo
    assert all(count >= 1 for count in truth["kinds"].values())
    assert sum(truth["kinds"].values()) == 12
    assert {m["format"] for m in truth["models"]} == {"safetensors", "pytorch", "onnx"}
    relations = {(t["relation"], t["transposed"]) for m in truth["models"] for t in m["tensors"].values()}
    assert {("identical", False), ("identical", True), ("near", False), ("near", True), ("unrelated", False)} <= relations


def test_frozen_layers_are_bit_identical_to_the_base_and_onnx_stores_them_transposed(zoo: tuple[Path, dict]) -> None:
    out, truth = zoo
    base = _base(out, truth)
    checked = 0
    for m in truth["models"]:
        for name, t in m["tensors"].items():
            if t["relation"] != "identical":
                continue
            stored = mz.read_tensor(out / m["path"], name)
            want = base[t["param"]].T if t["transposed"] else base[t["param"]]
            assert stored.dtype == want.dtype and stored.shape == want.shape
            assert stored.tobytes() == np.ascontiguousarray(want).tobytes(), (m["path"], name)
            checked += 1
    assert checked >= 6 * 2  # the base's own tensors and at least one other model's


def test_near_tensors_are_within_tol_of_the_base_and_not_equal(zoo: tuple[Path, dict]) -> None:
    out, truth = zoo
    base = _base(out, truth)
    near = 0
    for m in truth["models"]:
        params = mz.load_params(out / m["path"], m["tensors"])
        for t in m["tensors"].values():
            b = base[t["param"]]
            dist = float(np.linalg.norm(params[t["param"]] - b) / np.linalg.norm(b))
            assert dist == pytest.approx(t["rel_distance"], rel=1e-5, abs=1e-12)
            if t["relation"] == "near":
                assert 0 < dist <= truth["tol"]
                near += 1
            elif t["relation"] in ("tuned", "unrelated"):
                assert dist > truth["tol"]
    assert near >= 3


def test_onnx_variant_computes_with_the_transposed_weight(zoo: tuple[Path, dict]) -> None:
    import onnx
    import onnxruntime as ort

    out, truth = zoo
    m = next(m for m in truth["models"] if m["format"] == "onnx" and any(t["relation"] == "near" for t in m["tensors"].values()))
    path = out / m["path"]
    graph = onnx.load(str(path)).graph
    weights = {init.name for init in graph.initializer if init.name.startswith("onnx::MatMul_")}
    matmul_inputs = {node.input[1] for node in graph.node if node.op_type == "MatMul"}
    assert weights == matmul_inputs and len(weights) == 3
    params = mz.load_params(path, m["tensors"])
    x, y = mz.digits_task(tuple(m["task"]["shift"]))
    logits = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run(None, {"input": x})[0]
    assert float((logits.argmax(1) == y).mean() * 100) == pytest.approx(mz.accuracy(params, x, y))
    assert mz.accuracy(params, x, y) == pytest.approx(m["accuracy"])


def test_unreadable_files_do_not_load(zoo: tuple[Path, dict]) -> None:
    out, truth = zoo
    assert len(truth["unreadable"]) >= 2
    for u in truth["unreadable"]:
        path = out / u["path"]
        source = next(m for m in truth["models"] if m["format"] == u["format"])
        with pytest.raises(Exception):  # noqa: B017 - each format's reader raises its own error type
            mz.read_tensor(path, next(iter(source["tensors"])))
