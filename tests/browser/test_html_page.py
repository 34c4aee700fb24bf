"""The HTML report in a real browser: loads offline without errors, shows the JSON's numbers, sorts on click."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest

from tests.browser.chromium import chromium
from tests.conftest import FIXTURES
from tests.helpers import run_cli

CASES = {
    "tied_lm": (FIXTURES / "tiny_lm.pt", FIXTURES / "tiny_lm_folded.onnx"),
    "digits_pair": (FIXTURES / "pair_a.safetensors", FIXTURES / "pair_b.safetensors"),
}

pytestmark = pytest.mark.xdist_group("browser")  # one worker, one browser launch


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    try:
        with chromium() as b:
            yield b
    except RuntimeError as e:
        pytest.fail(str(e), pytrace=False)


@pytest.fixture(scope="module", params=sorted(CASES))
def page(request: pytest.FixtureRequest, browser: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Any, dict[str, Any], list[str]]]:
    """The page ``analyze --html`` wrote for one case, loaded from file://; with the problems seen while loading."""
    out = tmp_path_factory.mktemp(request.param) / "report.html"
    proc = run_cli("analyze", *map(str, CASES[request.param]), "--html", str(out), "--json")
    assert proc.returncode == 0, proc.stderr
    problems: list[str] = []
    tab = browser.new_page()
    tab.on("console", lambda m: problems.append(f"console {m.type}: {m.text}") if m.type in ("error", "warning") else None)
    tab.on("pageerror", lambda e: problems.append(f"page error: {e}"))
    tab.on("requestfailed", lambda r: problems.append(f"failed request: {r.url}"))
    tab.on("request", lambda r: None if r.url.startswith("file://") else problems.append(f"request off the file: {r.url}"))
    tab.goto(out.as_uri())
    data = tab.evaluate("JSON.parse(document.getElementById('sharescan-result').textContent)")
    assert data == json.loads(proc.stdout)
    yield tab, data, problems
    tab.close()


def _column(tab: Any, col: int) -> list[str]:
    return tab.eval_on_selector_all("#groups tbody tr", f"rows => rows.map(r => r.cells[{col}].dataset.sort)")


def test_page_loads_offline_without_errors_or_requests(page: tuple[Any, dict[str, Any], list[str]]) -> None:
    tab, _, problems = page
    assert problems == []
    assert tab.title() == "sharescan analysis"


def test_summary_and_model_rows_show_the_json_numbers(page: tuple[Any, dict[str, Any], list[str]]) -> None:
    tab, data, _ = page
    t = data["totals"]
    for key, n in (("stored", t["stored_bytes"]), ("unique", t["unique_bytes"]), ("reclaimable", t["reclaimable_bytes"]), ("after", t["after_sharing_bytes"])):
        assert tab.inner_text(f'#total-{key} [data-field="{key}"]') == f"{n:,} B"
    assert tab.inner_text('#total-reclaimable [data-field="reclaimable_pct"]') == f"{100 * t['reclaimable_fraction']:.2f}% of unique"
    rows = tab.query_selector_all("#models tbody tr")
    assert len(rows) == len(data["models"])
    for row, m in zip(rows, data["models"]):
        assert row.inner_text().split("\t")[1] == m["path"]
        for field in ("stored_bytes", "unique_bytes", "reclaimable_bytes"):
            assert row.query_selector(f'[data-field="{field}"]').inner_text() == f"{m[field]:,} B"


def test_group_rows_and_relation_bars_show_the_json_numbers(page: tuple[Any, dict[str, Any], list[str]]) -> None:
    tab, data, _ = page
    rows = tab.query_selector_all("#groups tbody tr")
    assert len(rows) == min(50, len(data["groups"])) > 0
    for row, g in zip(rows, data["groups"]):
        cells = [c.inner_text() for c in row.query_selector_all("td")]
        assert cells[1].startswith(g["relation"])
        assert cells[2] == str(len(g["members"]))
        assert g["members"][0]["name"] in cells[3]
        assert cells[4] == f"{g['bytes_each']:,} B" and cells[5] == f"{g['reclaimable_bytes']:,} B"
    labels = {e.get_attribute("data-relation"): e.text_content() for e in tab.query_selector_all("#relation-bars .bar-label")}
    by_relation = data["totals"]["reclaimable_by_relation"]
    assert set(labels) == set(by_relation)
    for relation, n in by_relation.items():
        assert labels[relation].split(" (")[0] == f"{n:,} B"
    # Each candidate pair is outlined twice in the heatmap (a row vs b, b row vs a).
    assert len(tab.query_selector_all("#heatmap rect.cell.candidate")) == 2 * len(data["candidates"])


def test_clicking_a_header_sorts_the_group_table(page: tuple[Any, dict[str, Any], list[str]]) -> None:
    tab, data, _ = page
    before = sorted(_column(tab, 0), key=int)
    tab.click("#groups th:nth-child(6)")  # reclaimable
    ascending = [int(v) for v in _column(tab, 5)]
    assert ascending == sorted(ascending) and tab.get_attribute("#groups th:nth-child(6)", "aria-sort") == "ascending"
    tab.click("#groups th:nth-child(6)")
    descending = [int(v) for v in _column(tab, 5)]
    assert descending == sorted(ascending, reverse=True)
    tab.click("#groups th:nth-child(2)")  # relation, as text
    relations = _column(tab, 1)
    assert relations == sorted(relations)
    tab.click("#groups th:nth-child(1)")  # back to the JSON's order
    assert _column(tab, 0) == before
