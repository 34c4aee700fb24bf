"""sharescan palettize: codebook checkpoints of the digits MLP, soft-sharing fine-tuning, ONNX, refusals."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from sharescan.codebook.palettize import CODEBOOK, INDICES, dense_state_dict, soft_share_penalty
from tests.conftest import FIXTURES
from tests.helpers import run_cli

ARCH = "fixtures.architectures:DigitsMLP"
TASK = "fixtures.digits_task:pair"
WEIGHTS = ("features.0.weight", "features.2.weight", "head.weight")


def test_post_training_4_bits_rebuilds_at_most_16_values_per_weight(tmp_path: Path) -> None:
    out = tmp_path / "p.pt"
    proc = run_cli("palettize", str(FIXTURES / "pair_a.pt"), "--arch", ARCH, "--bits", "4", "-o", str(out), "--json")
    assert proc.returncode == 0, proc.stderr
    state = torch.load(out)
    for name in WEIGHTS:
        assert state[name + INDICES].dtype == torch.uint8
        assert state[name + CODEBOOK].shape == (16,)
        assert name not in state
    dense = dense_state_dict(state)
    original = torch.load(FIXTURES / "pair_a.pt")
    assert set(dense) == set(original)
    for name in WEIGHTS:
        assert dense[name].unique().numel() <= 16
        assert dense[name].shape == original[name].shape
        # snapped to nearby values, not arbitrary ones
        assert float((dense[name] - original[name]).norm() / original[name].norm()) < 0.1
    report = json.loads(proc.stdout)
    assert report["bytes_after"] < report["bytes_before"] / 3
    assert report["metric_before"] is None


def test_task_with_2_epochs_reports_the_metric_three_times(tmp_path: Path) -> None:
    proc = run_cli("palettize", str(FIXTURES / "pair_a.pt"), "--arch", ARCH, "--bits", "3", "--task", TASK, "--epochs", "2", "-o", str(tmp_path / "p.safetensors"), "--json")
    assert proc.returncode == 0, proc.stderr
    r = json.loads(proc.stdout)
    for key in ("metric_before", "metric_post_training", "metric_fine_tuned"):
        assert 50 < r[key] <= 100
    assert len(r["lambdas"]) == 2 and r["lambdas"][1] >= r["lambdas"][0]
    from safetensors.torch import load_file

    dense = dense_state_dict(load_file(str(tmp_path / "p.safetensors")))
    assert all(dense[n].unique().numel() <= 8 for n in WEIGHTS)


def test_terminal_report_names_the_metric_and_bytes(tmp_path: Path) -> None:
    proc = run_cli("palettize", str(FIXTURES / "pair_a.pt"), "--arch", ARCH, "--bits", "3", "--task", TASK, "--epochs", "1", "-o", str(tmp_path / "p.pt"))
    assert proc.returncode == 0, proc.stderr
    assert "test accuracy (%): before" in proc.stdout and "bytes: 26,280 ->" in proc.stdout


@pytest.mark.parametrize("bits", ["0", "9"])
def test_bits_outside_1_to_8_are_refused_in_one_line_and_nothing_written(tmp_path: Path, bits: str) -> None:
    out = tmp_path / "p.pt"
    proc = run_cli("palettize", str(FIXTURES / "pair_a.pt"), "--arch", ARCH, "--bits", bits, "-o", str(out))
    assert proc.returncode == 2
    assert proc.stderr.startswith(f"error: --bits {bits}") and proc.stderr.count("\n") == 1
    assert not out.exists()


class CounterNet(torch.nn.Module):
    """A model with an integer buffer, a tiny weight and a weight holding Inf beside one ordinary weight."""

    def __init__(self) -> None:
        super().__init__()
        self.big = torch.nn.Linear(16, 16)
        self.tiny = torch.nn.Linear(2, 2)
        self.inf = torch.nn.Linear(8, 8)
        self.register_buffer("steps", torch.arange(100, dtype=torch.int64).reshape(10, 10))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.big(x)


def test_integer_tiny_and_inf_tensors_are_left_as_they_are_and_listed(tmp_path: Path) -> None:
    from sharescan.codebook.palettize import PalettizeOptions, palettize

    model = CounterNet()
    with torch.no_grad():
        model.inf.weight[3, 3] = float("inf")
    src = tmp_path / "m.pt"
    torch.save(model.state_dict(), src)
    r = palettize(src, tmp_path / "p.pt", PalettizeOptions(bits=2, arch="tests.test_palettize:CounterNet"))
    assert r.tensors == ("big.weight",)
    why = {s.split(":")[0]: s for s in r.skipped}
    assert "integer tensors are not clustered" in why["steps"]
    assert "no more than its codebook" in why["tiny.weight"]  # 4 elements, a 2-bit codebook of 4
    assert "NaN or Inf" in why["inf.weight"]
    state = torch.load(tmp_path / "p.pt")
    assert torch.equal(state["steps"], model.steps) and torch.equal(state["tiny.weight"], model.tiny.weight)
    assert torch.isinf(state["inf.weight"]).any() and "inf.weight" + INDICES not in state


@pytest.mark.parametrize(("bits", "index_type", "opset"), [(4, "UINT4", 21), (5, "UINT8", 17)])
def test_onnx_indices_are_uint4_at_4_bits_or_fewer(tmp_path: Path, bits: int, index_type: str, opset: int) -> None:
    import onnx

    onnx_out = tmp_path / "p.onnx"
    proc = run_cli("palettize", str(FIXTURES / "pair_a.pt"), "--arch", ARCH, "--bits", str(bits), "--task", TASK, "--epochs", "0", "-o", str(tmp_path / "p.pt"), "--onnx", str(onnx_out))
    assert proc.returncode == 0, proc.stderr
    m = onnx.load(str(onnx_out))
    onnx.checker.check_model(m, full_check=True)
    assert next(o.version for o in m.opset_import if o.domain in ("", "ai.onnx")) == opset
    indices = [t for t in m.graph.initializer if t.name.endswith("_codebook_index")]
    assert len(indices) == 3 and {onnx.TensorProto.DataType.Name(t.data_type) for t in indices} == {index_type}


def test_onnx_is_written_verified_and_rebuilds_weights_by_gather(tmp_path: Path) -> None:
    import onnx
    import onnxruntime as ort

    out, onnx_out = tmp_path / "p.pt", tmp_path / "p.onnx"
    proc = run_cli("palettize", str(FIXTURES / "pair_a.pt"), "--arch", ARCH, "--bits", "4", "--task", TASK, "--epochs", "0", "-o", str(out), "--onnx", str(onnx_out), "--json")
    assert proc.returncode == 0, proc.stderr
    r = json.loads(proc.stdout)
    assert r["onnx_rel_error"] < 1e-3
    m = onnx.load(str(onnx_out))
    assert sum(n.op_type == "Gather" for n in m.graph.node) == 3
    # the ONNX model computes what the rebuilt checkpoint computes
    from fixtures.architectures import DigitsMLP

    model = DigitsMLP()
    model.load_state_dict(dense_state_dict(torch.load(out)))
    x = np.load(FIXTURES / "digits_pair.npz")["x_test_a"][:16]
    got = ort.InferenceSession(str(onnx_out), providers=["CPUExecutionProvider"]).run(None, {"input": x})[0]
    with torch.no_grad():
        np.testing.assert_allclose(got, model(torch.as_tensor(x)).numpy(), rtol=1e-4, atol=1e-5)


def test_onnx_beyond_max_error_writes_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from sharescan.codebook import palettize as mod
    from sharescan.errors import VerificationError

    monkeypatch.setattr("sharescan.onnx_rewrite.verify.torch_vs_onnxruntime", lambda *a: (1.0, 0.5))
    out, onnx_out = tmp_path / "p.pt", tmp_path / "p.onnx"
    with pytest.raises(VerificationError, match="above --max-error"):
        mod.palettize(FIXTURES / "pair_a.pt", out, mod.PalettizeOptions(bits=4, arch=ARCH, task=TASK, epochs=0), onnx_out)
    assert not out.exists() and not onnx_out.exists()


def test_integer_and_nonfinite_tensors_are_skipped_with_a_reason(tmp_path: Path) -> None:
    state = torch.load(FIXTURES / "pair_a.pt")
    state["features.2.weight"][0, 0] = float("nan")
    src = tmp_path / "nan.pt"
    torch.save(state, src)
    from sharescan.codebook.palettize import PalettizeOptions, palettize

    r = palettize(src, tmp_path / "p.pt", PalettizeOptions(bits=2, arch=ARCH))
    assert "features.2.weight" not in r.tensors and any(s.startswith("features.2.weight: holds NaN") for s in r.skipped)
    assert torch.isnan(torch.load(tmp_path / "p.pt")["features.2.weight"]).any()


def test_group_channels_gives_each_group_its_own_codebook(tmp_path: Path) -> None:
    out = tmp_path / "p.pt"
    proc = run_cli("palettize", str(FIXTURES / "pair_a.pt"), "--arch", ARCH, "--bits", "2", "--group-channels", "2", "-o", str(out))
    assert proc.returncode == 0, proc.stderr
    state = torch.load(out)
    assert state["features.0.weight" + CODEBOOK].shape == (32, 4)
    dense = dense_state_dict(state)
    w = dense["features.0.weight"]
    assert all(w[g : g + 2].unique().numel() <= 4 for g in range(0, 64, 2))


def test_group_channels_that_do_not_divide_the_rows_give_a_smaller_last_group(tmp_path: Path) -> None:
    # 64 rows in groups of at most 24: ceil(64 / 24) = 3 groups of ceil(64 / 3) = 22 rows (22, 22, 20),
    # the split dense_state_dict rebuilds by; an embedding of 30,522 rows needs no divisor either.
    out = tmp_path / "p.pt"
    proc = run_cli("palettize", str(FIXTURES / "pair_a.pt"), "--arch", ARCH, "--bits", "2", "--group-channels", "24", "-o", str(out))
    assert proc.returncode == 0, proc.stderr
    state = torch.load(out)
    book = state["features.0.weight" + CODEBOOK]
    assert book.shape == (3, 4)
    w = dense_state_dict(state)["features.0.weight"]
    original = torch.load(FIXTURES / "pair_a.pt")["features.0.weight"]
    for g, rows in enumerate((slice(0, 22), slice(22, 44), slice(44, 64))):
        assert set(w[rows].unique().tolist()) <= set(book[g].tolist())
        # each row snapped to the nearest center of its own group's codebook
        nearest = book[g][(original[rows][..., None] - book[g]).abs().argmin(dim=-1)]
        assert torch.equal(w[rows], nearest)


def test_nearest_by_binary_search_equals_the_argmin_over_every_center() -> None:
    from sharescan.codebook.palettize import _nearest

    g = torch.Generator().manual_seed(3)
    w = torch.randn(10, 7, generator=g)
    c = torch.randn(4, 5, generator=g)  # unsorted centers, 4 groups over 10 rows: 3, 3, 3, 1
    idx, value = _nearest(w, c)
    group = torch.tensor([0, 0, 0, 1, 1, 1, 2, 2, 2, 3])
    brute = (w[:, :, None] - c[group][:, None, :]).abs().argmin(dim=2)
    assert torch.equal(idx, brute)
    assert torch.equal(value, torch.gather(c[group], 1, brute))
    flat_idx, flat_value = _nearest(w, c[0])
    assert torch.equal(flat_idx, (w[:, :, None] - c[0]).abs().argmin(dim=2)) and torch.equal(flat_value, c[0][flat_idx])


def test_soft_share_penalty_pulls_the_centers_too() -> None:
    w = torch.tensor([[0.0, 1.0]])
    c = torch.tensor([0.2, 3.0], requires_grad=True)
    soft_share_penalty([w], [c]).backward()
    assert c.grad is not None and c.grad.tolist() == pytest.approx([2 * 0.2 + 2 * (-0.8), 0.0])


def test_soft_share_penalty_is_the_squared_distance_to_the_nearest_center() -> None:
    w = torch.tensor([[0.0, 1.0], [2.9, -1.0]])
    c = torch.tensor([0.1, 3.0])
    expected = 0.1**2 + 0.9**2 + 0.1**2 + 1.1**2
    assert float(soft_share_penalty([w], [c])) == pytest.approx(expected)
