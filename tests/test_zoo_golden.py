"""The zoo's terminal and Markdown reports pinned against golden files, and fitting their width.

Regenerate after an intended change with ``pytest tests/test_zoo_golden.py --overwrite``
and review the diff. Timing is fixed: it is the one part that differs between runs.
"""

from __future__ import annotations

import io
from pathlib import Path

import pytest

from sharescan.zoo import ZooOptions, ZooResult, scan_zoo
from sharescan.zoo.report import render_zoo_markdown, render_zoo_terminal
from sharescan.zoo.result import ZooTiming
from tests.test_zoo import _make_zoo

GOLDEN = Path(__file__).parent / "golden"
WIDTHS = (80, 120)


@pytest.fixture
def result(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> ZooResult:
    monkeypatch.chdir(tmp_path)  # reports show paths as listed: keep them relative
    _make_zoo(tmp_path / "zoo")
    (tmp_path / "zoo" / "truncated.onnx").write_bytes(b"\x08")
    scanned = scan_zoo("zoo", ZooOptions(scheduler="none"))
    return scanned.with_timing(ZooTiming(1.5, 7, 0, False, 40, 6, 0.5, 1.0))


def _terminal(result: ZooResult, width: int) -> str:
    from rich.console import Console

    buffer = io.StringIO()
    render_zoo_terminal(result, Console(file=buffer, width=width, color_system=None, force_terminal=False))
    return buffer.getvalue()


def _check(name: str, text: str, overwrite: bool) -> None:
    path = GOLDEN / name
    if overwrite:
        path.write_text(text)
    assert path.read_text() == text, f"{name} changed; rerun with --overwrite if intended"


def test_zoo_reports_match_golden(result: ZooResult, overwrite: bool) -> None:
    for width in WIDTHS:
        _check(f"zoo_{width}.out", _terminal(result, width), overwrite)
    _check("zoo.md", render_zoo_markdown(result), overwrite)


@pytest.mark.parametrize("width", WIDTHS)
def test_zoo_terminal_report_fits_its_width(result: ZooResult, width: int) -> None:
    assert max(len(line.rstrip()) for line in _terminal(result, width).splitlines()) <= width
