"""Run every fuzz case of tests/test_fuzz.py and write the results.

    python benchmarks/fuzz_report.py [--jobs 2] [--failures PATH]

Writes reports/fuzz.json (one record per case, and counts per class) and
reports/robustness_fuzz.md (a section: counts per class, then the failing
cases). With --failures, also writes the failing cases grouped by class to
PATH. Exits 0 whether or not cases fail: this is a report, the test is
tests/test_fuzz.py.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.fuzz.cases import all_cases  # noqa: E402
from tests.fuzz.runner import failures_markdown, run_cases, summary  # noqa: E402


def _brief(result: dict) -> dict:
    """A result without the long output tails (the test shows those)."""
    return {k: v for k, v in result.items() if k not in ("stderr_tail", "stdout_head", "harness_traceback")}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=2, help="worker processes [default: 2]")
    parser.add_argument("--failures", type=Path, help="also write the failing cases, grouped by class, here")
    parser.add_argument("-k", dest="match", default="", help="only cases whose id contains this")
    args = parser.parse_args()

    cases = [c for c in all_cases() if args.match in c.id]
    start = time.perf_counter()
    results = run_cases(cases, jobs=args.jobs)
    seconds = time.perf_counter() - start
    counts = summary(cases, results)
    failed = sum(r["failed"] for r in counts.values())
    when = time.strftime("%Y-%m-%d %H:%M")
    header = f"## Fuzzing the bad-input contract\n\n{len(cases)} seeded cases, {failed} failing; {seconds:.0f} s with {args.jobs} workers on {platform.machine()} ({when}). Command: `python benchmarks/fuzz_report.py`."

    reports = ROOT / "reports"
    if args.match:  # a partial run does not replace the full report
        reports = Path(tempfile.mkdtemp(prefix="fuzz-report-"))
    record = {"cases": len(cases), "failed": failed, "seconds": round(seconds, 1), "jobs": args.jobs, "per_class": counts, "results": [_brief(results[c.id]) for c in cases]}
    (reports / "fuzz.json").write_text(json.dumps(record, indent=1) + "\n")
    (reports / "robustness_fuzz.md").write_text(failures_markdown(cases, results, header))
    if args.failures:
        args.failures.write_text(failures_markdown(cases, results, header))
    print(f"{len(cases)} cases, {failed} failing, {seconds:.0f} s; reports in {reports}")
    for cls, row in counts.items():
        print(f"  {cls:20} {row['cases']:4} cases {row['failed']:4} failing")


if __name__ == "__main__":
    main()
