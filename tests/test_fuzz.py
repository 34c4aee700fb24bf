"""Seeded fuzzing of the bad-input contract: truncated files of every format,
mutated safetensors headers and ONNX protobufs, hostile pickles in every
archive slot, and path tricks.

Each case must: exit 2 when it refuses (0 only where the input is still valid,
and then write a valid output), print exactly one ``error: `` line on a
refusal and never a traceback, leave no file behind and every input byte for
byte as it was, never run a payload (no marker file), and finish within 30 s.

The cases run in batches (``tests/fuzz/worker.py``: one Python that imports
sharescan once and calls ``sharescan.cli.main`` per case); a few run as real
``python -m sharescan`` processes. Only the cases pytest selected are run, so
``-k`` narrows the work too.
"""

from __future__ import annotations

from typing import Any

import pytest

from tests.fuzz.cases import CLASSES, all_cases
from tests.fuzz.plan import Case
from tests.fuzz.runner import run_cases

CASES = all_cases()


@pytest.fixture(scope="session")
def fuzz_results(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> dict[str, dict[str, Any]]:
    """Results of every fuzz case this session selected, run once."""
    selected = {item.callspec.params["case"].id for item in request.session.items if hasattr(item, "callspec") and isinstance(item.callspec.params.get("case"), Case)}
    return run_cases([c for c in CASES if c.id in selected], jobs=2, workdir=tmp_path_factory.mktemp("fuzz"))


def test_fuzz_suite_has_400_cases_across_every_class() -> None:
    counts = {cls: sum(c.cls == cls for c in CASES) for cls in CLASSES}
    assert sum(counts.values()) == len(CASES) >= 400, counts
    assert all(n >= 40 for n in counts.values()), counts


def test_fuzz_cases_are_the_same_on_every_listing() -> None:
    assert [c.to_json() for c in all_cases()] == [c.to_json() for c in CASES]


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_fuzz_case_keeps_the_bad_input_contract(case: Case, fuzz_results: dict[str, dict[str, Any]]) -> None:
    r = fuzz_results[case.id]
    detail = f"{r.get('command')}\n(cwd {r.get('cwd')}, {case.mode}, expect {r.get('expect')})\nexit {r.get('exit')}\n--- stderr ---\n{r.get('stderr_tail', '')}\n--- stdout ---\n{r.get('stdout_head', '')}\n{r.get('harness_traceback', '')}"
    assert not r["violations"], "; ".join(r["violations"]) + "\n" + detail


# --------------------------------------------------------------------------
# the checker itself: each invariant it guards is reported when broken


def _plan(tmp_path: Any, expect: str = "refuse") -> Any:
    from tests.fuzz.plan import Plan

    return Plan(["analyze", str(tmp_path / "m.safetensors"), "--json"], tmp_path, expect)


def test_fuzz_checker_accepts_a_clean_refusal(tmp_path: Any) -> None:
    from tests.fuzz.worker import check, snapshot

    (tmp_path / "m.safetensors").write_bytes(b"x")
    snap = snapshot(tmp_path)
    assert check(_plan(tmp_path), tmp_path, 2, "", "error: m.safetensors: corrupt; re-save it\n", 0.1, snap, snap) == []


def test_fuzz_checker_reports_each_broken_invariant(tmp_path: Any) -> None:
    from tests.fuzz.worker import check, snapshot

    (tmp_path / "m.safetensors").write_bytes(b"x")
    before = snapshot(tmp_path)
    (tmp_path / "m.safetensors").write_bytes(b"y")  # input changed
    (tmp_path / ".out.tmp123").write_bytes(b"partial")  # temp file left behind
    (tmp_path / "MARKER").touch()  # a payload ran
    after = snapshot(tmp_path)
    stderr = "Traceback (most recent call last):\nValueError: boom\n"
    found = " | ".join(check(_plan(tmp_path), tmp_path, 1, "partial", stderr, 31.0, before, after))
    for words in ("exit 1, expected 2", "traceback", "not one 'error: ' line", "stdout not empty", "marker file created", "took 31.0 s", "changed m.safetensors", "created .out.tmp123"):
        assert words in found, f"{words!r} not reported in {found!r}"
    assert "hang" in " ".join(check(_plan(tmp_path), tmp_path, "hang", "", "", 30.0, before, before))


def test_fuzz_checker_wants_a_valid_output_on_success(tmp_path: Any) -> None:
    from tests.fuzz.worker import check, snapshot

    snap = snapshot(tmp_path)
    assert check(_plan(tmp_path, "refuse"), tmp_path, 0, "{}", "", 0.1, snap, snap) == ["exit 0, expected 2"]
    assert any("not the JSON" in v for v in check(_plan(tmp_path, "either"), tmp_path, 0, "not json", "", 0.1, snap, snap))


def test_fuzz_runner_records_a_crashed_worker_and_runs_the_rest(tmp_path: Any) -> None:
    cases = [Case("self/crash", "self", "selftest_crash"), CASES[0]]
    results = run_cases(cases, jobs=1, workdir=tmp_path)
    assert "crash" in results["self/crash"]["violations"][0], results["self/crash"]
    assert results[CASES[0].id]["exit"] is not None, results[CASES[0].id]
