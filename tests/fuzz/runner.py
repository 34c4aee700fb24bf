"""Start workers, watch them, and collect one result per case.

Cases are dealt round-robin to ``jobs`` workers. A worker that dies (a crash
in native code) or stops reporting (a hang the alarm could not break) is
killed; its current case is recorded as such and a fresh worker takes the
rest.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from tests.fuzz.plan import REPO, Case
from tests.fuzz.worker import LIMIT_S

__all__ = ["run_cases", "failures_markdown", "summary"]

WATCHDOG_S = LIMIT_S + 30  # build, run and validation of one case, after which the worker is killed


def _dead(case: Case, why: str) -> dict[str, Any]:
    return {"id": case.id, "cls": case.cls, "mode": case.mode, "exit": None, "command": "", "stderr_last": "", "violations": [why]}


def _drive(cases: list[Case], workdir: Path, results: dict[str, dict[str, Any]]) -> None:
    """Run ``cases`` through as many worker processes as it takes."""
    todo = list(cases)
    by_id = {c.id: c for c in cases}
    attempt = 0
    while todo:
        attempt += 1
        stem = workdir / f"w{os.getpid()}-{threading.get_ident()}-{attempt}"
        cases_file, results_file, root = stem.with_suffix(".cases.json"), stem.with_suffix(".jsonl"), stem.with_suffix(".d")
        root.mkdir(parents=True)
        cases_file.write_text(json.dumps([c.to_json() for c in todo]))
        results_file.touch()
        env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])))
        proc = subprocess.Popen([sys.executable, "-m", "tests.fuzz.worker", str(cases_file), str(results_file), str(root)], cwd=REPO, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        current: str | None = None
        started = time.monotonic()
        offset = 0
        killed = None
        progressed = False
        while True:
            with open(results_file, encoding="utf-8") as f:
                f.seek(offset)
                chunk = f.read()
            complete = chunk[: chunk.rfind("\n") + 1]
            offset += len(complete.encode())
            for line in complete.splitlines():
                record = json.loads(line)
                if "start" in record:
                    current, started, progressed = record["start"], time.monotonic(), True
                else:
                    results[record["id"]] = record
                    current = None
            if proc.poll() is not None and not chunk[len(complete):]:
                break
            if current is not None and time.monotonic() - started > WATCHDOG_S:
                proc.kill()
                proc.wait()
                killed = current
                break
            time.sleep(0.05)
        stderr = proc.stderr.read().decode(errors="replace") if proc.stderr else ""
        if killed:
            results[killed] = _dead(by_id[killed], f"hang: worker killed after {WATCHDOG_S} s without a result")
        elif current is not None:
            results[current] = _dead(by_id[current], f"crash: the Python running it died (exit {proc.returncode}): {stderr.strip().splitlines()[-1] if stderr.strip() else ''}"[:400])
        elif not progressed:
            raise RuntimeError(f"fuzz worker (exit {proc.returncode}) ran no case:\n{stderr[-3000:]}")
        subprocess.run(["chattr", "-R", "-i", str(root)], capture_output=True)
        shutil.rmtree(root, ignore_errors=True)
        todo = [c for c in todo if c.id not in results]


def run_cases(cases: list[Case], jobs: int = 2, workdir: Path | None = None) -> dict[str, dict[str, Any]]:
    """One result per case id: the command, exit code, stderr and the invariants it broke."""
    results: dict[str, dict[str, Any]] = {}
    own = workdir is None
    base = Path(tempfile.mkdtemp(prefix="sharescan-fuzz-")) if own else workdir
    try:
        errors: list[BaseException] = []

        def drive(part: list[Case]) -> None:
            try:
                _drive(part, base, results)
            except BaseException as e:  # noqa: BLE001 - handed to the caller below
                errors.append(e)

        jobs = max(1, jobs)
        threads = [threading.Thread(target=drive, args=(cases[i::jobs],)) for i in range(jobs)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        if errors:
            raise errors[0]
    finally:
        if own:
            subprocess.run(["chattr", "-R", "-i", str(base)], capture_output=True)
            shutil.rmtree(base, ignore_errors=True)
    missing = [c.id for c in cases if c.id not in results]
    if missing:
        raise RuntimeError(f"no result for {len(missing)} cases, first {missing[0]}")
    return results


def summary(cases: list[Case], results: dict[str, dict[str, Any]]) -> dict[str, dict[str, int]]:
    """Per class: cases, passed, failed."""
    out: dict[str, dict[str, int]] = {}
    for c in cases:
        row = out.setdefault(c.cls, {"cases": 0, "passed": 0, "failed": 0})
        row["cases"] += 1
        row["failed" if results[c.id]["violations"] else "passed"] += 1
    return out


def failures_markdown(cases: list[Case], results: dict[str, dict[str, Any]], header: str) -> str:
    """The failing cases grouped by class: id, command, exit, stderr's last line, what broke."""
    lines = [header, ""]
    lines += [
        "A case id is class/variant/command. Every case must exit 2 with one `error: ` line (or 0 where the input is still valid, with a valid output),",
        "print no traceback, leave every file in its folder as it was, never run a payload, and finish within 30 s.",
        "\"exit 0, expected 2\" means a damaged or hostile input was accepted.",
        "",
    ]
    counts = summary(cases, results)
    lines += ["| class | cases | passed | failed |", "| --- | ---: | ---: | ---: |"]
    lines += [f"| {cls} | {r['cases']} | {r['passed']} | {r['failed']} |" for cls, r in counts.items()]
    for cls in counts:
        failed = [results[c.id] for c in cases if c.cls == cls and results[c.id]["violations"]]
        if not failed:
            continue
        lines += ["", f"### {cls} ({len(failed)} failing)", ""]
        for r in failed:
            last = r.get("stderr_last", "").replace("`", "'")[:300]
            lines.append(f"- `{r['id']}` exit {r.get('exit')}: {'; '.join(r['violations'])}")
            lines.append(f"  - command: `{r.get('command', '')}`")
            if last:
                lines.append(f"  - stderr: `{last}`")
    return "\n".join(lines) + "\n"
