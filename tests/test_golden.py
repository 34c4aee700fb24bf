"""Terminal, Markdown and JSON reports pinned against golden files.

Regenerate after an intended change with ``pytest tests/test_golden.py --overwrite``
and review the diff.
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest

import sharescan
from sharescan.report.markdown import render_markdown
from sharescan.report.terminal import render_terminal
from sharescan.result import AnalysisResult
from tests.conftest import ROOT
from tests.helpers import save_safetensors

GOLDEN = Path(__file__).parent / "golden"

CASES = {
    "tied_lm_exports": ["fixtures/tiny_lm.pt", "fixtures/tiny_lm_folded.onnx", "fixtures/tiny_lm.safetensors"],
    "digits_pair": ["fixtures/pair_a.safetensors", "fixtures/pair_b.safetensors"],
}


def _check(name: str, text: str, overwrite: bool) -> None:
    path = GOLDEN / name
    if overwrite:
        path.write_text(text)
    assert path.read_text() == text, f"{name} changed; rerun with --overwrite if intended"


@pytest.fixture
def in_root(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(ROOT)  # reports show paths as given: keep them relative


def _planted(folder: Path) -> str:
    """A model with one of each value relation: near, near-transposed, and duplicate rows."""
    rng = np.random.default_rng(7)
    base = rng.standard_normal((64, 48)).astype(np.float32)
    emb = rng.standard_normal((300, 16)).astype(np.float32)
    emb[200:] = 0.0  # 100 untrained all-zero rows
    emb[10] = emb[11] * (1 + 1e-4)  # one near-equal row
    tensors = {
        "layer0.weight": base,
        "layer1.weight": (base + 1e-4 * rng.standard_normal(base.shape)).astype(np.float32),
        "head.weight": (base.T + 5e-4 * rng.standard_normal(base.T.shape)).astype(np.float32),
        "layer2.weight": (base + 0.05 * rng.standard_normal(base.shape)).astype(np.float32),
        "embed.weight": emb,
    }
    save_safetensors(folder / "planted.safetensors", tensors)
    return "planted.safetensors"


# A terminal report is pinned at the narrowest width it must read well at, and at a pipe's default.
WIDTHS = (80, 120)


def _terminal(result: AnalysisResult, width: int, top: int = 50) -> str:
    from rich.console import Console

    buffer = io.StringIO()
    render_terminal(result, Console(file=buffer, width=width, color_system=None, force_terminal=False), top=top)
    return buffer.getvalue()


def test_value_relations_reports_match_golden(overwrite: bool, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    result = sharescan.analyze([_planted(tmp_path)])
    for width in WIDTHS:
        _check(f"planted_{width}.out", _terminal(result, width), overwrite)
    _check("planted.md", render_markdown(result), overwrite)


@pytest.mark.parametrize("width", WIDTHS)
@pytest.mark.parametrize("case", sorted(CASES))
def test_terminal_report_matches_golden(case: str, width: int, overwrite: bool, in_root: None) -> None:
    _check(f"{case}_{width}.out", _terminal(sharescan.analyze(CASES[case]), width, top=12), overwrite)


@pytest.mark.parametrize("width", WIDTHS)
@pytest.mark.parametrize("case", sorted(CASES))
def test_terminal_report_fits_its_width(case: str, width: int, in_root: None) -> None:
    lines = _terminal(sharescan.analyze(CASES[case]), width, top=12).splitlines()
    assert max(len(line.rstrip()) for line in lines) <= width


@pytest.mark.parametrize("case", sorted(CASES))
def test_markdown_report_matches_golden(case: str, overwrite: bool, in_root: None) -> None:
    result = sharescan.analyze(CASES[case])
    _check(f"{case}.md", render_markdown(result, top=12), overwrite)


def _rounded(value: object) -> object:
    """JSON with floats at 6 significant digits: BLAS summation order may move the last bits between CPUs."""
    if isinstance(value, float):
        return float(f"{value:.6g}")
    if isinstance(value, dict):
        return {k: _rounded(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_rounded(v) for v in value]
    return value


@pytest.mark.parametrize("case", sorted(CASES))
def test_json_report_matches_golden(case: str, overwrite: bool, in_root: None) -> None:
    import json

    from sharescan.report.json_report import render_json

    data = _rounded(json.loads(render_json(sharescan.analyze(CASES[case]))))
    _check(f"{case}.json", json.dumps(data, indent=2, sort_keys=False) + "\n", overwrite)


def test_long_names_are_shortened_in_the_middle_and_only_when_needed() -> None:
    from sharescan.report.layout import fit_label, fit_words, shorten_middle

    name = "model.encoder.layers.11.self_attn.q_proj.weight"
    short = shorten_middle(name, 21)
    assert len(short) == 21 and short == "model.enco…roj.weight" and "…" in short
    assert shorten_middle(name, len(name)) == name
    assert fit_label("a.weight", "[4x4 float32]", 40) == "a.weight [4x4 float32]"
    assert fit_label("a.weight", "[4x4 float32]", 12) == "a.weight\n[4x4 float32]"
    assert fit_words("Transpose(onnx::MatMul_287)", 18) == "Transpose(\nonnx::MatMul_287)"
