"""The command's process ends without the interpreter's teardown, and loses nothing by it:
whole output, exit handlers run, the exit code kept."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np

from tests.conftest import FIXTURES, ROOT
from tests.helpers import save_safetensors

# The console script's way in (main() without argv), with an exit handler of the caller's.
SCRIPT = (
    "import atexit, sys\n"
    "marker = sys.argv[1]\n"
    "atexit.register(lambda: open(marker, 'w').write('ran'))\n"
    "from sharescan.cli import main\n"
    "sys.argv = ['sharescan', *sys.argv[2:]]\n"
    "main()\n"
)


def _run(marker: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-c", SCRIPT, str(marker), *args], cwd=ROOT, capture_output=True, text=True, timeout=120)


def test_analyze_json_is_whole_and_exit_handlers_run(tmp_path: Path) -> None:
    marker = tmp_path / "marker"
    out = _run(marker, "analyze", str(FIXTURES / "tiny_lm.safetensors"), "--json")
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)["models"]  # the whole document reached the pipe
    assert marker.read_text() == "ran"


def test_exit_codes_survive_the_early_exit(tmp_path: Path) -> None:
    marker = tmp_path / "marker"
    bad = _run(marker, "analyze", str(tmp_path / "missing.safetensors"))
    assert bad.returncode == 2 and bad.stderr.startswith("error: ") and len(bad.stderr.splitlines()) == 1
    assert marker.read_text() == "ran"
    w = np.arange(64, dtype=np.float32).reshape(8, 8)
    twice = save_safetensors(tmp_path / "twice.safetensors", {"a": w, "b": w.copy()})
    over = _run(tmp_path / "marker2", "analyze", str(twice), "--json", "--fail-above", "0")
    assert over.returncode == 1, over.stderr
    assert json.loads(over.stdout)["totals"]["reclaimable_bytes"] > 0


def test_main_with_argv_returns_to_its_caller() -> None:
    """An in-process caller (tests, embedding code) gets control back, not a killed process."""
    code = "from sharescan.cli import main\nmain(['--version'])\nprint('back')\n"
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0 and out.stdout.splitlines()[-1] == "back"


def test_main_called_from_a_function_returns_to_it() -> None:
    """A harness that sets sys.argv and calls main() in a loop (the fuzz worker) keeps running."""
    code = (
        "import sys\n"
        "from sharescan.cli import main\n"
        "def case(args):\n"
        "    sys.argv = ['sharescan', *args]\n"
        "    try:\n"
        "        main()\n"
        "    except SystemExit as e:\n"
        "        return e.code\n"
        "    return 0\n"
        "print(case(['--version']), case(['analyze', 'missing.onnx']), 'back')\n"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.splitlines()[-1] == "0 2 back"


def test_the_collector_resumes_after_analyze_unless_the_process_ends_with_it(tmp_path: Path) -> None:
    """Resuming would start with a collection over everything the analysis made (8 ms for GPT-2):
    skipped where the process ends next, kept for a caller that goes on."""
    model = str(FIXTURES / "tiny_lm.safetensors")
    ending = "import atexit, gc, sys\natexit.register(lambda: print('collector', gc.isenabled(), file=sys.stderr))\nfrom sharescan.cli import main\nsys.argv = ['sharescan', 'analyze', sys.argv[1], '--json']\nmain()\n"
    out = subprocess.run([sys.executable, "-c", ending, model], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0 and out.stderr.splitlines()[-1] == "collector False"
    going_on = "import gc, sys\nfrom sharescan.cli import main\nmain(['analyze', sys.argv[1], '--json'])\nprint('collector', gc.isenabled(), file=sys.stderr)\n"
    out = subprocess.run([sys.executable, "-c", going_on, model], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0 and out.stderr.splitlines()[-1] == "collector True"


def test_a_stream_closed_at_start_keeps_the_exit_code_and_gives_no_traceback(tmp_path: Path) -> None:
    """A stream closed when the process starts is None in Python: the early exit flushes only the open ones."""
    script = str(Path(sys.executable).parent / "sharescan")
    version = subprocess.run(f"{script} --version >&-", shell=True, cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert version.returncode == 0 and "Traceback" not in version.stderr, version.stderr
    missing = subprocess.run(f"{script} analyze {tmp_path / 'missing.onnx'} 2>&-", shell=True, cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert missing.returncode == 2


def test_a_profiler_or_harness_that_runs_the_module_gets_control_back(tmp_path: Path) -> None:
    profile = tmp_path / "x.prof"
    subprocess.run([sys.executable, "-m", "cProfile", "-o", str(profile), "-m", "sharescan", "--version"], cwd=ROOT, capture_output=True, timeout=60, check=True)
    assert profile.exists() and profile.stat().st_size > 0, "python -m cProfile -m sharescan wrote no profile"
    harness = "import runpy, sys\nsys.argv = ['sharescan', '--version']\ndef run():\n    runpy.run_module('sharescan', run_name='__main__')\nrun()\nprint('harness goes on')\n"
    out = subprocess.run([sys.executable, "-c", harness], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert out.stdout.splitlines()[-1] == "harness goes on", (out.stdout, out.stderr)
