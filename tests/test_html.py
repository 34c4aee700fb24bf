"""The HTML report: self-contained, escaped, the same numbers as the JSON, written whole by ``analyze --html``."""

from __future__ import annotations

import json
import re
from html.parser import HTMLParser
from pathlib import Path

from sharescan.report.html import distance_heatmap, render_html
from sharescan.result import AnalysisResult, CandidateReport, GroupReport, Member, ModelReport, Settings, Totals
from tests.conftest import ROOT
from tests.helpers import run_cli

FOLDED = str(ROOT / "fixtures" / "tiny_lm_folded.onnx")
LM_PT = str(ROOT / "fixtures" / "tiny_lm.pt")


def _embedded(page: str) -> dict:
    m = re.search(r'<script type="application/json" id="sharescan-result">(.*?)</script>', page, re.S)
    assert m is not None
    return json.loads(m.group(1))


class _Tags(HTMLParser):
    """Every start tag with its attributes, and the text of <script> elements."""

    def __init__(self) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self.texts: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs)))

    def handle_data(self, data: str) -> None:
        self.texts.append(data)


def _hostile_result() -> AnalysisResult:
    """Names a model could carry that would break a page pasted in unescaped."""
    evil = '</script><script>alert(1)</script><img src=x onerror="alert(2)">&amp;'
    a = Member("a<b>.onnx", evil, (4, 4), "float32")
    b = Member("a<b>.onnx", "w&\"'", (4, 4), "float32")
    c = Member("a<b>.onnx", "w2", (4, 4), "float32")
    model = ModelReport("a<b>.onnx", "onnx", 3, 192, 192, 64, 200)
    group = GroupReport("identical", (a, b), 64, 64, 0.0, 0.0)
    cand = CandidateReport(a, c, False, 0.25, 0.5)
    totals = Totals(192, 192, 64, (("aliased", 0), ("identical", 64)))
    return AnalysisResult((model,), (group,), totals, Settings(0.002, 0.002), (cand,), (f"warning about {evil}",))


def test_every_name_is_escaped_and_the_embedded_json_is_the_result() -> None:
    result = _hostile_result()
    page = render_html(result)
    assert _embedded(page) == json.loads(json.dumps(result.to_dict()))
    parser = _Tags()
    parser.feed(page)
    assert [t for t, _ in parser.tags].count("script") == 2  # the JSON block and the page's own code, nothing injected
    assert "img" not in [t for t, _ in parser.tags]
    assert not any(k.startswith("on") for _, attrs in parser.tags for k in attrs)
    assert "<script>alert" not in page and 'onerror="' not in page  # the names appear escaped only


def test_page_fetches_nothing() -> None:
    page = render_html(_hostile_result())
    parser = _Tags()
    parser.feed(page)
    assert "default-src 'none'" in page  # the Content-Security-Policy refuses every fetch
    assert not re.search(r"https?://(?!www\.w3\.org/2000/svg)", page)  # the SVG namespace is a name, never fetched
    for tag, attrs in parser.tags:
        assert not (tag in {"link", "img", "iframe"} or (tag == "script" and "src" in attrs)), tag


def test_heatmap_holds_group_and_candidate_distances_symmetrically() -> None:
    result = _hostile_result()
    heat = distance_heatmap(result)
    assert len(heat.labels) == 3 and heat.dropped == 0
    cells = {(c.row, c.col): c for c in heat.cells}
    assert all((c.col, c.row) in cells and cells[(c.col, c.row)].distance == c.distance for c in heat.cells)
    candidates = [c for c in heat.cells if c.candidate]
    assert len(candidates) == 2 and {c.distance for c in candidates} == {0.25}
    assert {c.distance for c in heat.cells if not c.candidate} == {0.0}


def test_heatmap_keeps_at_most_limit_tensors_and_counts_the_rest() -> None:
    members = tuple(Member("m.onnx", f"t{k}", (2, 2), "float32") for k in range(10))
    groups = tuple(GroupReport("identical", (members[0], m), 16, 16, 0.0, 0.0) for m in members[1:])
    result = AnalysisResult((ModelReport("m.onnx", "onnx", 10, 160, 160, 144, 200),), groups, Totals(160, 160, 144, (("identical", 144),)), Settings(None, None))
    heat = distance_heatmap(result, limit=4)
    assert len(heat.labels) == 4 and heat.dropped == 6
    assert all(c.row < 4 and c.col < 4 for c in heat.cells)


def test_analyze_html_writes_a_page_whose_json_equals_the_json_output(tmp_path: Path) -> None:
    out = tmp_path / "r.html"
    proc = run_cli("analyze", LM_PT, FOLDED, "--html", str(out), "--json")
    assert proc.returncode == 0, proc.stderr
    page = out.read_text(encoding="utf-8")
    assert _embedded(page) == json.loads(proc.stdout)
    assert list(tmp_path.iterdir()) == [out]  # the atomic writer left no temporary file


def test_analyze_html_refuses_to_overwrite_an_input_or_the_markdown_report(tmp_path: Path) -> None:
    model = tmp_path / "m.onnx"
    model.write_bytes(Path(FOLDED).read_bytes())
    before = model.read_bytes()
    proc = run_cli("analyze", str(model), "--html", str(model))
    assert proc.returncode == 2 and proc.stderr.startswith("error: ") and "--html path" in proc.stderr
    assert model.read_bytes() == before
    same = tmp_path / "r.md"
    proc = run_cli("analyze", str(model), "--html", str(same), "--report", str(same))
    assert proc.returncode == 2 and "--html and --report name the same file" in proc.stderr
    assert not same.exists()
