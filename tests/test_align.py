"""sharescan align: weight matching recovers permutations, keeps outputs, refuses what it cannot follow."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from torch import nn

from fixtures.architectures import DigitsMLP
from sharescan.align import AlignOptions, align_modules
from sharescan.align.graph import trace_sites
from sharescan.errors import InputError
from tests.conftest import FIXTURES
from tests.helpers import run_cli

PAIR = [str(FIXTURES / "pair_a.pt"), str(FIXTURES / "pair_b.pt")]
ARCH = "fixtures.architectures:DigitsMLP"


class BatchNormCNN(nn.Module):
    """Conv -> BN -> ReLU twice, then Flatten into a Linear: channels permuted through norms and a flatten."""

    def __init__(self) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(1, 6, 3, padding=1), nn.BatchNorm2d(6), nn.ReLU(),
            nn.Conv2d(6, 5, 3, padding=1), nn.BatchNorm2d(5), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(),
        )
        self.head = nn.Linear(5 * 4 * 4, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


class ResidualMLP(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc1 = nn.Linear(8, 8)
        self.fc2 = nn.Linear(8, 8)
        self.head = nn.Linear(8, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = torch.relu(self.fc1(x))
        return self.head(h + self.fc2(h))


class Attention(nn.Module):
    """Explicit multi-head self-attention: separate q/k/v Linears, heads split with view and transpose."""

    def __init__(self, dim: int = 12, heads: int = 3) -> None:
        super().__init__()
        self.heads, self.head_dim = heads, dim // heads
        self.q, self.k, self.v, self.out = (nn.Linear(dim, dim) for _ in range(4))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, t, c = x.shape[0], x.shape[1], x.shape[2]
        q = self.q(x).view(b, t, self.heads, self.head_dim).transpose(1, 2)
        k = self.k(x).view(b, t, self.heads, self.head_dim).transpose(1, 2)
        v = self.v(x).reshape(b, t, self.heads, -1).permute(0, 2, 1, 3)
        att = torch.softmax((q @ k.transpose(-2, -1)) * self.head_dim ** -0.5, dim=-1)
        return self.out((att @ v).transpose(1, 2).contiguous().view(b, t, c))


class Block(nn.Module):
    """A pre-LN transformer block: the residual stream is not permuted, the MLP's units and the heads are."""

    def __init__(self, dim: int = 12, heads: int = 3, hidden: int = 20) -> None:
        super().__init__()
        self.ln1, self.ln2 = nn.LayerNorm(dim), nn.LayerNorm(dim)
        self.attn = Attention(dim, heads)
        self.fc1, self.fc2 = nn.Linear(dim, hidden), nn.Linear(hidden, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.ln1(x))
        return x + self.fc2(nn.functional.gelu(self.fc1(self.ln2(x))))


class SdpaBlock(nn.Module):
    """Heads split with unflatten, combined by scaled_dot_product_attention, merged with flatten."""

    def __init__(self, dim: int = 8, heads: int = 2) -> None:
        super().__init__()
        self.heads = heads
        self.ln = nn.LayerNorm(dim)
        self.q, self.k, self.v, self.out = (nn.Linear(dim, dim) for _ in range(4))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.ln(x)
        q, k, v = (m(h).unflatten(-1, (self.heads, -1)).transpose(-3, -2) for m in (self.q, self.k, self.v))
        return x + self.out(nn.functional.scaled_dot_product_attention(q, k, v).transpose(-3, -2).flatten(-2))


class HeadsMixed(Block):
    """Softmax across heads: a head's scores depend on the others, so heads cannot be permuted."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a = self.attn
        q = a.q(self.ln1(x)).view(x.shape[0], x.shape[1], a.heads, a.head_dim).transpose(1, 2)
        k = a.k(self.ln1(x)).view(x.shape[0], x.shape[1], a.heads, a.head_dim).transpose(1, 2)
        v = a.v(self.ln1(x)).view(x.shape[0], x.shape[1], a.heads, a.head_dim).transpose(1, 2)
        att = torch.softmax(q @ k.transpose(-2, -1), dim=1)
        return x + a.out((att @ v).transpose(1, 2).reshape(x.shape[0], x.shape[1], -1))


def _permuted_block(model: Block, seed: int) -> Block:
    """A copy of ``model`` with its MLP units and its heads shuffled (whole heads: q, k, v rows and out columns)."""
    g = torch.Generator().manual_seed(seed)
    ph, pm = torch.randperm(3, generator=g), torch.randperm(20, generator=g)
    rows = (torch.arange(12).reshape(3, 4)[ph]).reshape(-1)  # head h's four rows move together
    s = {k: v.clone() for k, v in model.state_dict().items()}
    for n in ("attn.q", "attn.k", "attn.v"):
        s[f"{n}.weight"], s[f"{n}.bias"] = s[f"{n}.weight"][rows], s[f"{n}.bias"][rows]
    s["attn.out.weight"] = s["attn.out.weight"][:, rows]
    s["fc1.weight"], s["fc1.bias"], s["fc2.weight"] = s["fc1.weight"][pm], s["fc1.bias"][pm], s["fc2.weight"][:, pm]
    out = Block()
    out.load_state_dict(s)
    return out


def _permuted_mlp(model: DigitsMLP, seed: int) -> tuple[DigitsMLP, torch.Tensor, torch.Tensor]:
    """A copy of ``model`` with its hidden units shuffled: what another training run could have found."""
    g = torch.Generator().manual_seed(seed)
    p1, p2 = torch.randperm(64, generator=g), torch.randperm(32, generator=g)
    s = {k: v.clone() for k, v in model.state_dict().items()}
    s["features.0.weight"], s["features.0.bias"] = s["features.0.weight"][p1], s["features.0.bias"][p1]
    s["features.2.weight"], s["features.2.bias"] = s["features.2.weight"][p2][:, p1], s["features.2.bias"][p2]
    s["head.weight"] = s["head.weight"][:, p2]
    out = DigitsMLP()
    out.load_state_dict(s)
    return out, p1, p2


def _trained_mlp() -> DigitsMLP:
    m = DigitsMLP()
    m.load_state_dict(torch.load(PAIR[0], weights_only=True))
    return m


def test_aligning_a_permuted_copy_recovers_the_permutation_exactly() -> None:
    a = _trained_mlp()
    b, _, _ = _permuted_mlp(a, seed=3)
    r = align_modules(a, b)
    assert r.trunk_gap_before > 0.5 and r.units_moved > 80
    aligned = r.modules["B"].state_dict()
    for name, want in a.state_dict().items():
        assert torch.equal(aligned[name], want), name  # the inverse permutation, exactly
    assert r.trunk_gap_after == 0.0 and r.model_gap_after == 0.0
    assert all(g.gap_after == 0.0 for g in r.layers)
    assert r.max_abs_output_diff < 1e-5
    x = torch.rand(32, 64)
    with torch.no_grad():
        assert (r.modules["B"](x) - b(x)).abs().max() < 1e-5


def test_alignment_leaves_both_inputs_untouched() -> None:
    a = _trained_mlp()
    b, _, _ = _permuted_mlp(a, seed=4)
    before_a = {k: v.clone() for k, v in a.state_dict().items()}
    before_b = {k: v.clone() for k, v in b.state_dict().items()}
    align_modules(a, b)
    assert all(torch.equal(before_a[k], v) for k, v in a.state_dict().items())
    assert all(torch.equal(before_b[k], v) for k, v in b.state_dict().items())


def test_batchnorm_cnn_channels_are_permuted_through_norms_and_flatten() -> None:
    torch.manual_seed(0)
    a = BatchNormCNN()
    with torch.no_grad():  # statistics and affine parameters that differ per channel, so a wrong order would show
        for m in a.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.uniform_(-1, 1), m.running_var.uniform_(0.5, 2), m.weight.uniform_(0.5, 2), m.bias.uniform_(-1, 1)
    sites = trace_sites(a)
    assert [s.producer for s in sites] == ["features.0", "features.3"]
    assert sites[0].norms == ("features.1",) and sites[1].consumers[0].spatial == 16
    g = torch.Generator().manual_seed(1)
    p1, p2 = torch.randperm(6, generator=g), torch.randperm(5, generator=g)
    s = {k: v.clone() for k, v in a.state_dict().items()}
    for k in ("features.0.weight", "features.0.bias", *(f"features.1.{t}" for t in ("weight", "bias", "running_mean", "running_var"))):
        s[k] = s[k][p1]
    s["features.3.weight"] = s["features.3.weight"][:, p1][p2]
    for k in ("features.3.bias", *(f"features.4.{t}" for t in ("weight", "bias", "running_mean", "running_var"))):
        s[k] = s[k][p2]
    s["head.weight"] = s["head.weight"].reshape(10, 5, 16)[:, p2].reshape(10, 80)
    b = BatchNormCNN()
    b.load_state_dict(s)
    r = align_modules(a, b)
    assert r.input_shape == (1, 8, 8)
    assert r.trunk_gap_before > 0.1 and r.model_gap_after == 0.0 and r.max_abs_output_diff < 1e-5
    assert all(torch.equal(r.modules["B"].state_dict()[k], v) for k, v in a.state_dict().items())


def test_coordinate_descent_is_at_least_as_close_as_one_alternating_pass() -> None:
    torch.manual_seed(1)
    a, b = DigitsMLP(), DigitsMLP()  # two unrelated initialisations: many local optima
    full = align_modules(a, b, AlignOptions(starts=4))
    single = align_modules(a, b, AlignOptions(one_pass=True))
    assert single.passes == 1 and full.passes >= 1
    assert full.trunk_gap_after <= single.trunk_gap_after + 1e-12
    assert full.trunk_gap_after < full.trunk_gap_before


def test_different_architectures_are_refused_naming_the_layer() -> None:
    with pytest.raises(InputError, match=r"^layer features\.0: features\.0\.weight has shape \(64, 64\) in A and \(6, 1, 3, 3\) in B"):
        align_modules(DigitsMLP(), BatchNormCNN())


def test_a_residual_add_is_refused_naming_the_operation() -> None:
    with pytest.raises(InputError, match="residual add"):
        trace_sites(ResidualMLP())


def test_cli_refuses_a_residual_model_in_one_line_and_writes_nothing(tmp_path: Path) -> None:
    for name in ("a", "b"):
        torch.save(ResidualMLP().state_dict(), tmp_path / f"{name}.pt")
    out = tmp_path / "out.pt"
    proc = run_cli("align", str(tmp_path / "a.pt"), str(tmp_path / "b.pt"), "--arch", "tests.test_align:ResidualMLP", "-o", str(out))
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.startswith("error: ") and proc.stderr.count("\n") == 1 and "add" in proc.stderr
    assert not out.exists()


def test_cli_refuses_mismatched_architectures_in_one_line_exit_2(tmp_path: Path) -> None:
    out = tmp_path / "out.pt"
    proc = run_cli("align", PAIR[0], str(FIXTURES / "cnn.pt"), "--arch", ARCH, "-o", str(out))
    assert proc.returncode == 2
    assert proc.stderr.startswith("error: ") and proc.stderr.count("\n") == 1 and "features.0.weight" in proc.stderr
    assert not out.exists()


def test_cli_writes_an_aligned_b_that_computes_what_b_computes(tmp_path: Path) -> None:
    out, report = tmp_path / "b_aligned.pt", tmp_path / "align.md"
    proc = run_cli("align", *PAIR, "--arch", ARCH, "-o", str(out), "--json", "--report", str(report))
    assert proc.returncode == 0, proc.stderr
    data = json.loads(proc.stdout)
    assert data["schema_version"] == 1 and data["sites"] == ["features.0", "features.2"]
    assert data["trunk_gap_after"] <= data["trunk_gap_before"] and data["max_abs_output_diff"] < 1e-4
    assert [g["layer"] for g in data["layers"]] == ["features.0", "features.2", "head"]
    b, aligned = DigitsMLP(), DigitsMLP()
    b.load_state_dict(torch.load(PAIR[1], weights_only=True))
    aligned.load_state_dict(torch.load(out, weights_only=True))
    x = torch.rand(64, 64)
    with torch.no_grad():
        assert (aligned(x) - b(x)).abs().max() < 1e-4
    assert "trunk gap" in report.read_text()


def test_tie_align_reports_the_gaps_before_and_after_alignment(tmp_path: Path) -> None:
    proc = run_cli("tie", *PAIR, "--arch", ARCH, "--task", "tests.tie_tasks:small_pair", "--groups", "A:features.* = B:features.*",
                   "--epochs", "2", "--finetune-shared", "0", "--lambda", "10", "--max-drop", "100", "--align", "-o", str(tmp_path / "t.pt"), "--json")
    assert proc.returncode == 0, proc.stderr
    notes = json.loads(proc.stdout)["notes"]
    assert any(n.startswith("--align: B's units permuted to match A") and "trunk gap" in n for n in notes)
    assert any("group gaps before -> after alignment" in n for n in notes)
    assert (tmp_path / "t.pt").exists()


def test_transformer_block_sites_are_the_mlp_units_and_the_heads() -> None:
    sites = trace_sites(Block())
    assert [(s.producers, s.units, s.block) for s in sites] == [(("attn.q", "attn.k", "attn.v"), 3, 4), (("fc1",), 20, 1)]
    assert sites[0].consumers[0].module == "attn.out" and sites[0].consumers[0].spatial == 4
    assert [c.module for c in sites[1].consumers] == ["fc2"]


def test_transformer_block_with_permuted_heads_and_mlp_units_is_recovered_exactly() -> None:
    torch.manual_seed(0)
    a = Block()
    b = _permuted_block(a, seed=5)
    r = align_modules(a, b, AlignOptions(input_shape=(5, 12)))
    assert r.trunk_gap_before > 0.3 and r.units_moved > 10
    aligned = r.modules["B"].state_dict()
    for name, want in a.state_dict().items():
        assert torch.equal(aligned[name], want), name
    assert r.trunk_gap_after == 0.0 and r.model_gap_after == 0.0 and r.max_abs_output_diff < 1e-5
    x = torch.randn(4, 7, 12)
    with torch.no_grad():
        assert (r.modules["B"](x) - b(x)).abs().max() < 1e-5
        assert (r.modules["B"](x) - a(x)).abs().max() < 1e-5


def test_sdpa_heads_split_by_unflatten_are_aligned() -> None:
    torch.manual_seed(2)
    a = SdpaBlock()
    sites = trace_sites(a)
    assert [(s.producers, s.units, s.block) for s in sites] == [(("q", "k", "v"), 2, 4)]
    s = {k: v.clone() for k, v in a.state_dict().items()}
    rows = torch.tensor([4, 5, 6, 7, 0, 1, 2, 3])
    for n in ("q", "k", "v"):
        s[f"{n}.weight"], s[f"{n}.bias"] = s[f"{n}.weight"][rows], s[f"{n}.bias"][rows]
    s["out.weight"] = s["out.weight"][:, rows]
    b = SdpaBlock()
    b.load_state_dict(s)
    r = align_modules(a, b, AlignOptions(input_shape=(3, 8)))
    assert r.model_gap_before > 0.1 and r.model_gap_after == 0.0 and r.max_abs_output_diff < 1e-5


def test_softmax_across_heads_is_refused_naming_the_operation() -> None:
    with pytest.raises(InputError, match=r"^operation softmax \(softmax\): softmax across attn\.q's heads \(dim=1\)") as e:
        trace_sites(HeadsMixed())
    assert "\n" not in str(e.value)


def test_tie_align_of_every_layer_halves_the_pair_and_aligns_the_head_columns_too(tmp_path: Path) -> None:
    from sharescan.tying.run import TieOptions, tie

    # B: pair_a with both hidden layers' units shuffled (the same function), so alignment has work to do.
    state = torch.load(PAIR[0], weights_only=True)
    g = torch.Generator().manual_seed(3)
    p0, p2 = torch.randperm(64, generator=g), torch.randperm(32, generator=g)
    shuffled = dict(state)
    shuffled["features.0.weight"], shuffled["features.0.bias"] = state["features.0.weight"][p0], state["features.0.bias"][p0]
    shuffled["features.2.weight"], shuffled["features.2.bias"] = state["features.2.weight"][p2][:, p0], state["features.2.bias"][p2]
    shuffled["head.weight"] = state["head.weight"][:, p2]
    torch.save(shuffled, tmp_path / "b.pt")
    options = TieOptions(groups="A:* = B:*", task="tests.tie_tasks:small_pair", arch=ARCH, epochs=2, finetune_shared=0, lam=10.0, max_drop=100.0, align=True)
    r = tie([PAIR[0], str(tmp_path / "b.pt")], str(tmp_path / "t.pt"), options)
    assert r.bytes_after * 2 == r.bytes_before  # every parameter stored once for both models
    a, b = r.modules["A"], r.modules["B"]
    assert all(pa is pb for pa, pb in zip(a.parameters(), b.parameters()))
    # The head's input columns follow the second hidden layer's permutation: its gap vanishes with the others.
    gaps = next(n for n in r.notes if "group gaps before -> after alignment" in n)
    before, after = (float(v) for v in gaps.split("A:head.weight = B:head.weight ")[1].split(",")[0].split(" -> "))
    assert before > 0.1 and after < 1e-6
