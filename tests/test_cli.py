"""The command line: pure JSON, exit codes, reports written whole, torch never imported needlessly.

Most cases run ``sharescan.cli.main`` in this process; the import checks and
what a real process prints on stderr run in a subprocess.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import FIXTURES, ROOT
from tests.helpers import run_cli

FOLDED = "fixtures/tiny_lm_folded.onnx"


def test_json_output_is_pure_json_with_the_documented_keys() -> None:
    proc = run_cli("analyze", FOLDED, "--json")
    assert proc.returncode == 0, proc.stderr
    data = json.loads(proc.stdout)
    assert data["schema_version"] == 1
    assert set(data) == {"schema_version", "settings", "models", "groups", "candidates", "totals", "warnings"}
    assert data["settings"] == {"tol": 2e-3, "row_tol": 2e-3}
    assert set(data["models"][0]) >= {"path", "format", "n_tensors", "stored_bytes", "unique_bytes"}
    group = data["groups"][0]
    assert set(group) >= {"relation", "members", "reclaimable_bytes", "max_abs_error", "rel_error"}
    assert set(group["members"][0]) == {"model", "name", "shape", "dtype"}
    assert set(data["totals"]) >= {"stored_bytes", "unique_bytes", "reclaimable_bytes", "reclaimable_by_relation"}
    assert data["totals"]["reclaimable_by_relation"]["transposed"] == 8640


def test_markdown_report_is_written_and_terminal_report_printed(tmp_path: Path) -> None:
    report = tmp_path / "r.md"
    proc = run_cli("analyze", FOLDED, "--report", str(report))
    assert proc.returncode == 0, proc.stderr
    assert "transposed" in proc.stdout and "reclaimable" in proc.stdout
    text = report.read_text()
    assert text.startswith("# sharescan analysis") and "onnx::MatMul_307" in text
    assert [p.name for p in tmp_path.iterdir()] == ["r.md"]  # no temporary file left


@pytest.mark.parametrize(
    ("limit", "code"),
    [("1%", 1), ("99%", 0), ("8639", 1), ("8640000", 0), ("8KiB", 1), ("1MB", 0)],
)
def test_fail_above_exits_1_only_when_exceeded(limit: str, code: int) -> None:
    proc = run_cli("analyze", "fixtures/tiny_lm.pt", FOLDED, "--json", "--fail-above", limit)
    assert proc.returncode == code, proc.stderr
    json.loads(proc.stdout)  # the report is still complete
    assert ("exceeds --fail-above" in proc.stderr) == (code == 1)


def test_help_lists_examples_and_version_prints() -> None:
    assert "Examples:" in run_cli("analyze", "--help").stdout
    assert run_cli("--version").stdout.strip() == "sharescan, version 0.1.0"


@pytest.mark.parametrize("command", ["analyze", "dedup", "export", "tie"])
def test_every_command_shows_examples_and_exit_codes_in_its_help(command: str) -> None:
    proc = run_cli(command, "--help")
    assert proc.returncode == 0, proc.stderr
    assert f"sharescan {command} " in proc.stdout.split("Examples:")[1]
    assert "Exit codes: 0" in " ".join(proc.stdout.split())


@pytest.mark.parametrize("command", ["analyze", "export", "tie"])
def test_trust_code_keeps_its_trust_pickle_alias(command: str) -> None:
    assert "--trust-code, --trust-pickle" in run_cli(command, "--help").stdout


def test_no_arguments_print_the_commands() -> None:
    proc = run_cli()
    assert proc.returncode == 0 and proc.stderr == ""
    assert all(verb in proc.stdout for verb in ("analyze", "dedup", "export", "tie"))


def _modules_after(args: list[str]) -> set[str]:
    code = (
        "import sys\n"
        "from sharescan.cli import cli\n"
        f"try:\n    cli.main({args!r}, standalone_mode=False)\nexcept SystemExit:\n    pass\n"
        "print('\\n'.join(sys.modules))\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    return set(proc.stdout.split())


@pytest.mark.parametrize(
    "args",
    [["--help"], ["--version"], ["analyze", FOLDED, "--json"], ["analyze", "fixtures/tiny_lm.safetensors", "--json"], ["analyze", "fixtures/tiny_lm_hf", "--json"]],
)
def test_torch_is_not_imported_for_help_version_onnx_or_safetensors(args: list[str]) -> None:
    modules = _modules_after(args)
    assert "torch" not in modules
    if args[0] == "analyze":
        assert "sharescan.analysis" in modules  # the analysis really ran


def test_help_imports_no_verb_module_nor_numpy_torch_dask_or_onnx() -> None:
    modules = _modules_after(["--help"])
    heavy = {"numpy", "torch", "dask", "onnx", "onnxruntime", "scipy"}
    assert not {m for m in modules if m.split(".")[0] in heavy}
    assert not {m for m in modules if m.startswith("sharescan.cli.") and not m.startswith("sharescan.cli._")}


def test_analyze_imports_its_own_verb_only() -> None:
    modules = _modules_after(["analyze", "fixtures/tiny_lm.safetensors", "--json"])
    verbs = {m for m in modules if m.startswith("sharescan.cli.") and not m.startswith("sharescan.cli._")}
    assert verbs == {"sharescan.cli.analyze"}
    assert "sharescan.tying.run" not in modules


def test_the_group_lists_every_verb_module_with_its_own_first_sentence() -> None:
    import importlib

    import click

    from sharescan.cli import VERBS

    modules = {p.stem for p in (ROOT / "sharescan" / "cli").glob("*.py") if not p.stem.startswith("_")}
    assert set(VERBS) == modules
    for verb, summary in VERBS.items():
        command = getattr(importlib.import_module(f"sharescan.cli.{verb}"), verb)
        assert isinstance(command, click.Command)
        assert command.get_short_help_str(1000) == summary  # --help shows what the command itself says


@pytest.mark.parametrize(("given", "expected"), [(None, "1"), ("3", "3")])
def test_analyze_runs_blas_on_one_thread_unless_the_user_chose(given: str | None, expected: str) -> None:
    import os

    code = (
        "import os\n"
        "from sharescan.cli import cli\n"
        "try:\n    cli.main(['analyze', 'fixtures/tiny_lm.safetensors', '--json'], standalone_mode=False)\nexcept SystemExit:\n    pass\n"
        "print(os.environ.get('OPENBLAS_NUM_THREADS'))\n"
    )
    env = {k: v for k, v in os.environ.items() if k != "OPENBLAS_NUM_THREADS"} | ({} if given is None else {"OPENBLAS_NUM_THREADS": given})
    proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120, env=env)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split()[-1] == expected


def test_plain_state_dicts_are_read_without_torch_and_pickled_modules_with_it() -> None:
    # A zip state dict's tensors are read from its records; only unpickling Python objects needs torch.
    assert "torch" not in _modules_after(["analyze", "fixtures/tiny_lm.pt", "--json"])
    assert "torch" in _modules_after(["analyze", "fixtures/mlp_module.pkl.pt", "--json", "--trust-code"])


def test_progress_bar_stays_off_stderr_when_not_a_terminal() -> None:
    proc = run_cli("analyze", str(FIXTURES / "tiny_lm.safetensors"), "--json", isolated=True)
    assert proc.returncode == 0
    assert proc.stderr == ""


def test_first_line_is_the_answer_and_one_model_in_two_formats_saves_across_models() -> None:
    proc = run_cli("analyze", FOLDED, "fixtures/tiny_lm.pt")
    assert proc.returncode == 0, proc.stderr
    first = proc.stdout.splitlines()[0]
    assert first.startswith("Reclaimable: ") and "% of unique)" in first and "after sharing" in first and first.endswith(" within")  # one line at 120 columns
    totals = json.loads(run_cli("analyze", FOLDED, "fixtures/tiny_lm.pt", "--json").stdout)["totals"]
    across, within = totals["reclaimable_across_models_bytes"], totals["reclaimable_within_models_bytes"]
    assert across + within == totals["reclaimable_bytes"]
    assert across > 10 * within  # the export copies the checkpoint: the saving lies across the two files
    assert f"{across / 1024:.2f} KiB across models" in first


def test_quiet_prints_only_the_summary_line() -> None:
    proc = run_cli("-q", "analyze", FOLDED, "fixtures/tiny_lm.pt")
    assert proc.returncode == 0, proc.stderr
    assert len(proc.stdout.splitlines()) == 1 and proc.stdout.startswith("Reclaimable: ") and "across models" in proc.stdout


@pytest.mark.parametrize(("flags", "level"), [((), "WARNING"), (("-q",), "ERROR"), (("-v",), "INFO"), (("-vv",), "DEBUG")])
def test_quiet_and_verbose_set_the_log_level(flags: tuple[str, ...], level: str) -> None:
    import logging

    logger = logging.getLogger("sharescan")
    before = logger.level
    try:
        assert run_cli(*flags, "analyze", FOLDED, "--json").returncode == 0
        assert logging.getLevelName(logger.level) == level
    finally:
        logger.setLevel(before)  # other tests read these loggers


def test_groups_under_min_bytes_fold_into_one_line_in_the_terminal_only(tmp_path: Path) -> None:
    groups = json.loads(run_cli("analyze", FOLDED, "--json").stdout)["groups"]
    small = [g for g in groups if g["reclaimable_bytes"] < 1500]
    assert 0 < len(small) < len(groups)
    report = tmp_path / "r.md"
    proc = run_cli("analyze", FOLDED, "--min-bytes", "1500", "--top", "1000", "--report", str(report))
    assert proc.returncode == 0, proc.stderr
    assert f"{len(small)} group(s) under 1.46 KiB each reclaim" in proc.stdout
    assert f"## Groups ({len(groups)})" in report.read_text() and f"| {len(groups)} |" in report.read_text()  # Markdown keeps all
    table = proc.stdout[proc.stdout.index("Groups (") : proc.stdout.index("group(s) under")]
    assert f"\n{len(groups) - len(small)}  " in table and f"\n{len(groups) - len(small) + 1}  " not in table  # large groups only
    default = run_cli("analyze", FOLDED).stdout  # 1 KiB by default
    assert f"{sum(g['reclaimable_bytes'] < 1024 for g in groups)} group(s) under 1.00 KiB each" in default


@pytest.mark.parametrize("value", ["5%", "ten", "0.5"])
def test_min_bytes_takes_bytes_only(value: str) -> None:
    proc = run_cli("analyze", FOLDED, "--min-bytes", value)
    assert proc.returncode == 2 and proc.stderr.startswith("error: --min-bytes") and len(proc.stderr.splitlines()) == 1


def test_fail_above_below_one_byte_is_refused_with_a_hint() -> None:
    proc = run_cli("analyze", FOLDED, "--fail-above", "0.5")
    assert proc.returncode == 2 and proc.stdout == ""
    assert proc.stderr == "error: --fail-above '0.5': 0.5 bytes? write 50% or 0.5MB\n"


@pytest.mark.parametrize("name", ["r.html", "r.json", "r"])
def test_report_refuses_a_name_that_is_not_markdown(tmp_path: Path, name: str) -> None:
    proc = run_cli("analyze", FOLDED, "--report", str(tmp_path / name))
    assert proc.returncode == 2 and len(proc.stderr.splitlines()) == 1 and proc.stderr.startswith("error: --report")
    assert ("--html" in proc.stderr) == name.endswith(".html")
    assert list(tmp_path.iterdir()) == []


def test_report_width_is_columns_when_not_a_terminal(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COLUMNS", "80")
    narrow = run_cli("analyze", FOLDED, "fixtures/tiny_lm.pt").stdout.splitlines()
    monkeypatch.delenv("COLUMNS")
    wide = run_cli("analyze", FOLDED, "fixtures/tiny_lm.pt").stdout.splitlines()
    assert max(map(len, narrow)) <= 80 < max(map(len, wide)) <= 120


def test_dedup_table_keeps_names_whole_at_120_columns(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COLUMNS", "120")
    proc = run_cli("dedup", FOLDED, "-o", str(tmp_path / "d.onnx"), "--no-ram")
    assert proc.returncode == 0, proc.stderr
    assert "onnx::MatMul_307" in proc.stdout and "…" not in proc.stdout
    monkeypatch.setenv("COLUMNS", "80")
    narrow = run_cli("dedup", FOLDED, "-o", str(tmp_path / "e.onnx"), "--no-ram").stdout
    table = narrow[narrow.index("Merges ("):].splitlines()
    assert max(map(len, table)) <= 80 and "Transpose(" in narrow
