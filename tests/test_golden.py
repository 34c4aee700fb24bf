"""Terminal and Markdown reports pinned against golden files.

Regenerate after an intended change with ``pytest tests/test_golden.py --overwrite``
and review the diff.
"""

from __future__ import annotations

import io
from pathlib import Path

import pytest

import sharescan
from sharescan.report.markdown import render_markdown
from sharescan.report.terminal import render_terminal
from tests.conftest import ROOT

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


@pytest.mark.parametrize("case", sorted(CASES))
def test_terminal_report_matches_golden(case: str, overwrite: bool, in_root: None) -> None:
    from rich.console import Console

    result = sharescan.analyze(CASES[case])
    buffer = io.StringIO()
    render_terminal(result, Console(file=buffer, width=110, color_system=None, force_terminal=False), top=12)
    _check(f"{case}.out", buffer.getvalue(), overwrite)


@pytest.mark.parametrize("case", sorted(CASES))
def test_markdown_report_matches_golden(case: str, overwrite: bool, in_root: None) -> None:
    result = sharescan.analyze(CASES[case])
    _check(f"{case}.md", render_markdown(result, top=12), overwrite)
