"""Run many fuzz cases in one Python that imports sharescan (and torch) once.

``python -m tests.fuzz.worker CASES.json RESULTS.jsonl WORKDIR``: for each
case, build its files in WORKDIR/<n>, hash everything there, run the command
(``sharescan.cli.main`` with ``sys.argv`` set, or a real ``python -m
sharescan``), check the contract, and append one JSON line. A ``start`` line
goes first, so the runner can tell which case hung or killed the process.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import traceback
import warnings
from pathlib import Path
from typing import Any

from tests.fuzz.plan import REPO, Case, Plan

__all__ = ["run_case", "LIMIT_S"]

LIMIT_S = 30  # a case that takes longer has hung


class CaseTimeout(BaseException):
    """Raised by SIGALRM; a BaseException so that ``except Exception`` in the code under test cannot swallow it."""


def _alarm(signum: int, frame: Any) -> None:
    raise CaseTimeout()


def snapshot(root: Path) -> dict[str, str]:
    """Every entry under root, links not followed: kind and content hash."""
    out = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            p = Path(dirpath) / name
            rel = str(p.relative_to(root))
            if p.is_symlink():
                out[rel] = "link:" + os.readlink(p)
            elif p.is_dir():
                out[rel] = "dir"
            elif p.is_file():
                out[rel] = hashlib.sha256(p.read_bytes()).hexdigest()
            else:
                out[rel] = "special"
    return out


def _fresh_warnings() -> None:
    """Forget which warnings were shown, so each case prints what a fresh process would."""
    warnings.onceregistry.clear()  # type: ignore[attr-defined]
    for module in list(sys.modules.values()):
        registry = getattr(module, "__warningregistry__", None)
        if isinstance(registry, dict):
            registry.clear()


def _run_inproc(plan: Plan, tmp: Path) -> tuple[int | str, str, str]:
    from sharescan.cli import main

    _fresh_warnings()
    with tempfile.TemporaryFile() as out_f, tempfile.TemporaryFile() as err_f:
        sys.stdout.flush()
        sys.stderr.flush()
        saved = os.dup(1), os.dup(2)
        os.dup2(out_f.fileno(), 1)
        os.dup2(err_f.fileno(), 2)
        old_argv, old_cwd = sys.argv, os.getcwd()
        code: int | str = 0
        try:
            sys.argv = ["sharescan", *plan.argv]
            os.chdir(plan.cwd)
            tempfile.tempdir = str(tmp)  # temporary files left behind show up in the case folder
            signal.alarm(LIMIT_S)
            try:
                main()
            except SystemExit as e:
                code = e.code if isinstance(e.code, int) else 0 if e.code is None else 1
                if isinstance(e.code, str):
                    print(e.code, file=sys.stderr)
            except CaseTimeout:
                code = "hang"
            except BaseException:
                traceback.print_exc()
                code = 1
            finally:
                signal.alarm(0)
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            os.dup2(saved[0], 1)
            os.dup2(saved[1], 2)
            os.close(saved[0])
            os.close(saved[1])
            sys.argv = old_argv
            os.chdir(old_cwd)
            tempfile.tempdir = None
        out_f.seek(0)
        err_f.seek(0)
        return code, out_f.read().decode(errors="replace"), err_f.read().decode(errors="replace")


def _entry_point() -> list[str]:
    """The installed ``sharescan`` script beside this Python, else ``python -m sharescan``."""
    script = Path(sys.executable).parent / "sharescan"
    return [str(script)] if script.is_file() else [sys.executable, "-m", "sharescan"]


def _run_subprocess(plan: Plan, tmp: Path) -> tuple[int | str, str, str]:
    env = dict(os.environ, TMPDIR=str(tmp), PYTHONPATH=os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])))
    try:
        proc = subprocess.run([*_entry_point(), *plan.argv], cwd=plan.cwd, env=env, capture_output=True, text=True, timeout=LIMIT_S, stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired as e:
        return "hang", _text(e.stdout), _text(e.stderr)
    return proc.returncode, proc.stdout, proc.stderr


def _text(data: bytes | str | None) -> str:
    return data.decode(errors="replace") if isinstance(data, bytes) else data or ""


def _valid_output(plan: Plan, stdout: str) -> str | None:
    """Why a successful run's output is not valid, or None."""
    command = plan.argv[0]
    if "--json" in plan.argv:
        try:
            json.loads(stdout)
        except ValueError:
            return "exit 0 but stdout is not the JSON asked for"
    if command == "dedup":
        out = Path(plan.argv[plan.argv.index("-o") + 1])
        out = out if out.is_absolute() else plan.cwd / out
        try:
            import onnx
            import onnxruntime

            onnx.checker.check_model(str(out))
            onnxruntime.InferenceSession(str(out), providers=["CPUExecutionProvider"])
        except Exception as e:  # noqa: BLE001 - any failure means the written model is unusable
            return f"exit 0 but the written model is not valid: {type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"[:300]
    if "--report" in plan.argv and not Path(plan.argv[plan.argv.index("--report") + 1]).exists():
        return "exit 0 but the --report file is missing"
    return None


def _changes(before: dict[str, str], after: dict[str, str], root: Path, allowed: set[str]) -> list[str]:
    names = sorted(set(before) | set(after))
    out = []
    for n in names:
        if before.get(n) == after.get(n) or n in allowed or n == "MARKER":
            continue
        what = "created" if n not in before else "removed" if n not in after else "changed"
        out.append(f"{what} {n}")
    return out


def _names_a_file(plan: Plan, line: str) -> bool:
    """Whether an error line names (the base name of) a file or folder the command was given."""
    names = {Path(a.split("\x00")[0]).name for a in plan.argv if "/" in a} - {"", ".", ".."}
    return not names or any(n in line for n in names)


def check(plan: Plan, root: Path, code: int | str, stdout: str, stderr: str, seconds: float, before: dict[str, str], after: dict[str, str]) -> list[str]:
    """Every broken invariant of one run, in words."""
    v = []
    allowed_codes = {"refuse": (2,), "either": (0, 2), "ok": (0,)}[plan.expect]
    if code == "hang":
        v.append(f"hang: still running after {LIMIT_S} s")
    elif code not in allowed_codes:
        v.append(f"exit {code}, expected {' or '.join(map(str, allowed_codes))}")
    if "Traceback" in stderr or "Traceback" in stdout:
        v.append("traceback printed")
    if code != 0:
        lines = [line for line in stderr.splitlines() if line.strip()]
        if len(lines) != 1 or not lines[0].startswith("error: "):
            v.append(f"stderr is not one 'error: ' line ({len(lines)} lines)")
        elif not _names_a_file(plan, lines[0]):
            v.append("the error line names none of the command's files (where?)")
        if stdout.strip():
            v.append("stdout not empty on refusal")
    if (root / "MARKER").exists():
        v.append("payload ran: marker file created")
    if seconds > LIMIT_S:
        v.append(f"took {seconds:.1f} s")
    allowed = set()
    if code == 0:
        allowed = {str(p.relative_to(root)) for p in plan.outputs if p.is_relative_to(root)}
        why = _valid_output(plan, stdout)
        if why:
            v.append(why)
    changes = _changes(before, after, root, allowed)
    if changes:
        v.append(("files changed: " if code == 0 else "refused but files changed: ") + ", ".join(changes[:6]) + (" ..." if len(changes) > 6 else ""))
    return v


def release(paths: list[Path]) -> None:
    for p in paths:
        subprocess.run(["chattr", "-i", str(p)], capture_output=True)


def run_case(case: Case, root: Path) -> dict[str, Any]:
    from tests.fuzz.builders import BUILDERS

    result: dict[str, Any] = {"id": case.id, "cls": case.cls, "mode": case.mode}
    root.mkdir(parents=True)
    plan = None
    try:
        plan = BUILDERS[case.builder](root, case.params)
        result.update(command=plan.command, cwd=str(plan.cwd), expect=plan.expect)
        tmp = root / ".tmp"
        tmp.mkdir()
        before = snapshot(root)
        start = time.perf_counter()
        code, stdout, stderr = (_run_subprocess if case.mode == "subprocess" else _run_inproc)(plan, tmp)
        seconds = time.perf_counter() - start
        after = snapshot(root)
        result.update(exit=code, seconds=round(seconds, 3), stderr_tail=stderr[-2000:], stdout_head=stdout[:300])
        result["stderr_last"] = next((line for line in reversed(stderr.splitlines()) if line.strip()), "")
        result["violations"] = check(plan, root, code, stdout, stderr, seconds, before, after)
    except BaseException as e:  # noqa: BLE001 - a case that cannot be built is reported, not fatal
        result.setdefault("exit", None)
        result["violations"] = [f"harness error: {type(e).__name__}: {e}"[:500]]
        result["harness_traceback"] = traceback.format_exc()[-3000:]
    finally:
        if plan is not None:
            release(plan.immutable)
        shutil.rmtree(root, ignore_errors=True)
    # The case folder is random: name it $CASE so that reports compare across runs.
    return {k: v.replace(str(root), "$CASE") if isinstance(v, str) else v for k, v in result.items()}


def main() -> None:
    cases_path, results_path, workdir = sys.argv[1:4]
    signal.signal(signal.SIGALRM, _alarm)
    # Import everything heavy once, before the first case's clock starts.
    import onnx  # noqa: F401
    import onnxruntime  # noqa: F401
    import torch  # noqa: F401

    import sharescan.cli  # noqa: F401
    from tests.fuzz import paths  # noqa: F401 - registers the path-trick builder

    cases = [Case(**c) for c in json.loads(Path(cases_path).read_text())]
    with open(results_path, "a", encoding="utf-8") as results:
        for n, case in enumerate(cases):
            results.write(json.dumps({"start": case.id, "t": time.time()}) + "\n")
            results.flush()
            result = run_case(case, Path(workdir) / f"{os.getpid()}-{n}")
            results.write(json.dumps(result) + "\n")
            results.flush()


if __name__ == "__main__":
    main()
