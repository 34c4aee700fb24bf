"""Value relations on the types numpy lacks (bfloat16, float8), read through ml_dtypes."""

from __future__ import annotations

import json
from pathlib import Path

import ml_dtypes
import numpy as np
import pytest

import sharescan
from sharescan.dtypes import DTYPES, from_float, negate_bits, neighbours, to_float
from tests.helpers import run_cli, save_onnx, save_safetensors

rng = np.random.default_rng(7)

ML_FLOATS = [name for name, dt in DTYPES.items() if not dt.numpy_native]


def _planted(name: str, shape: tuple[int, int] = (48, 40)) -> dict[str, np.ndarray]:
    """a; a near copy (three elements one step off); -a; an unrelated tensor. As ml_dtypes arrays."""
    t = getattr(ml_dtypes, name)
    a = rng.standard_normal(shape).astype(np.float32).astype(t)
    near = a.copy()
    flat = near.reshape(-1).view(f"u{near.itemsize}")
    # The three smallest nonzero elements one unit in the last place up: a
    # coarse float8 step on a large element alone would exceed the tolerance.
    magnitude = np.abs(a.reshape(-1).astype(np.float32))
    flat[np.argsort(np.where(magnitude > 0, magnitude, np.inf))[:3]] += 1
    return {"a": a, "near": near, "neg": -a, "other": rng.standard_normal(shape).astype(np.float32).astype(t)}


def _relations(data: dict) -> dict[str, list[list[str]]]:
    out: dict[str, list[list[str]]] = {}
    for g in data["groups"]:
        out.setdefault(g["relation"], []).append(sorted(m["name"] for m in g["members"]))
    return out


@pytest.mark.parametrize("name", ["float8_e4m3fn", "float8_e5m2", "bfloat16"])
def test_safetensors_float8_and_bfloat16_near_and_negated_pairs_found_by_the_cli(tmp_path: Path, name: str) -> None:
    path = save_safetensors(tmp_path / "m.safetensors", _planted(name))
    proc = run_cli("analyze", str(path), "--json")
    assert proc.returncode == 0, proc.stderr
    data = json.loads(proc.stdout)
    found = _relations(data)
    assert found["near"] == [["a", "near"]]
    assert found["negated"] == [["a", "neg"]]
    assert all(m["dtype"] == name for g in data["groups"] for m in g["members"])
    (near,) = [g for g in data["groups"] if g["relation"] == "near"]
    assert 0 < near["rel_error"] <= 2e-3 and near["max_abs_error"] > 0


@pytest.mark.parametrize("name", ["float8_e4m3fn", "float8_e5m2", "bfloat16"])
def test_onnx_float8_initializers_near_and_negated_pairs_found_by_the_cli(tmp_path: Path, name: str) -> None:
    path = save_onnx(tmp_path / "m.onnx", _planted(name), nodes=[])
    proc = run_cli("analyze", str(path), "--json")
    assert proc.returncode == 0, proc.stderr
    found = _relations(json.loads(proc.stdout))
    assert found["near"] == [["a", "near"]]
    assert found["negated"] == [["a", "neg"]]


def test_pytorch_float8_tensors_compared_by_value(tmp_path: Path) -> None:
    torch = pytest.importorskip("torch")
    w = torch.from_numpy(rng.standard_normal((32, 24)).astype(np.float32))
    tensors = {}
    for name in ("float8_e4m3fn", "float8_e5m2", "float8_e4m3fnuz", "float8_e5m2fnuz"):
        t = getattr(torch, name)
        a = w.to(t)
        tensors[name] = a
        tensors[f"{name}_neg"] = (-a.float()).to(t)
        tensors[f"{name}_x2"] = (a.float() * 2).to(t)  # doubling an e4m3/e5m2 value is exact in range
    path = tmp_path / "m.pt"
    torch.save(tensors, path)
    proc = run_cli("analyze", str(path), "--json")
    assert proc.returncode == 0, proc.stderr
    found = _relations(json.loads(proc.stdout))
    for name in ("float8_e4m3fn", "float8_e5m2", "float8_e4m3fnuz", "float8_e5m2fnuz"):
        assert [name, f"{name}_neg"] in found["negated"]
        assert [name, f"{name}_x2"] in found["scaled"]


@pytest.mark.parametrize("name", ML_FLOATS)
def test_value_conversion_round_trips_every_bit_pattern(name: str) -> None:
    dt = DTYPES[name]
    every = np.arange(1 << (8 * dt.itemsize), dtype=np.uint32).astype(dt.storage)
    values = to_float(every, name)
    assert values.dtype == np.float32
    finite = np.isfinite(values)
    np.testing.assert_array_equal(from_float(values[finite], name), every[finite])
    # And the values are ml_dtypes' own, not a hand-made decoding.
    np.testing.assert_array_equal(values, every.view(dt.values).astype(np.float32))


@pytest.mark.parametrize("name", ["float8_e4m3fnuz", "float8_e5m2fnuz"])
def test_fnuz_negation_keeps_zero_and_nan(name: str) -> None:
    every = np.arange(256, dtype=np.uint8)
    neg = negate_bits(every, name)
    assert neg[0] == 0 and neg[0x80] == 0x80  # no -0; the one NaN stays NaN
    ok = every != 0x80
    np.testing.assert_array_equal(to_float(neg, name)[ok], -to_float(every, name)[ok])


def test_fnuz_tensor_with_zeros_is_found_negated(tmp_path: Path) -> None:
    a = rng.standard_normal((16, 16)).astype(np.float32)
    a[::3] = 0  # a plain sign-bit flip would turn these zeros into NaN
    torch = pytest.importorskip("torch")
    x = torch.from_numpy(a).to(torch.float8_e4m3fnuz)
    path = tmp_path / "m.pt"
    torch.save({"a": x, "neg": (-x.float()).to(torch.float8_e4m3fnuz)}, path)
    result = sharescan.analyze([str(path)])
    assert [[m.name for m in g.members] for g in result.groups if g.relation == "negated"] == [["a", "neg"]]


@pytest.mark.parametrize("name", ["float8_e4m3fn", "float8_e5m2", "bfloat16"])
def test_float8_scaled_copy_is_exact_in_its_dtype(tmp_path: Path, name: str) -> None:
    a = from_float(rng.standard_normal((20, 30)).astype(np.float32), name)
    b = from_float(to_float(a, name) * np.float32(0.5), name)
    t = getattr(ml_dtypes, name)
    result = sharescan.analyze([str(save_safetensors(tmp_path / "m.safetensors", {"a": a.view(t), "b": b.view(t)}))])
    (group,) = [g for g in result.groups if g.relation == "scaled"]
    assert [m.name for m in group.members] == ["a", "b"]
    assert [m.scale for m in group.members] == [1.0, 0.5]


@pytest.mark.parametrize("name", ML_FLOATS)
def test_neighbours_are_one_step_either_side(name: str) -> None:
    for v in (1.0, -1.5, 0.25) if DTYPES[name].signed else (1.0, 4.0, 0.25):
        rounded, *around = neighbours(v, name)
        assert rounded == float(np.array([v], np.float32).astype(DTYPES[name].values).astype(np.float32)[0])
        assert len(around) == 2 and min(around) < rounded < max(around)
