"""One error hierarchy, one place that maps it to exit codes, and options the
Python API refuses exactly as the command line does."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from sharescan.analysis import AnalysisOptions
from sharescan.cli._errors import EXIT_ERROR, EXIT_FAIL_ABOVE, EXIT_INTERRUPTED, ThresholdExceeded, describe
from sharescan.errors import InputError, SharescanError, TrainingError, VerificationError
from sharescan.onnx_rewrite.dedup import DedupOptions
from sharescan.onnx_rewrite.export import ExportOptions
from sharescan.tying.run import TieOptions
from tests.conftest import FIXTURES
from tests.helpers import run_cli, save_onnx

NAN = math.nan


@pytest.mark.parametrize(
    ("build", "flag"),
    [
        (lambda: AnalysisOptions(tol=0.0), "--tol"),
        (lambda: AnalysisOptions(tol=1.0), "--tol"),
        (lambda: AnalysisOptions(tol=NAN), "--tol"),
        (lambda: AnalysisOptions(row_tol=-1e-3), "--row-tol"),
        (lambda: AnalysisOptions(candidates=-1), "--candidates"),
        (lambda: DedupOptions(tol=0.0), "--tol"),
        (lambda: DedupOptions(tol=1.5), "--tol"),
        (lambda: DedupOptions(max_error=-1e-9), "--max-error"),
        (lambda: DedupOptions(max_error=NAN), "--max-error"),
        (lambda: ExportOptions(opset=0), "--opset"),
        (lambda: TieOptions(lr=0.0), "--lr"),
        (lambda: TieOptions(lr=-1e-3), "--lr"),
        (lambda: TieOptions(lr=math.inf), "--lr"),
        (lambda: TieOptions(target_gap=0.0), "--target-gap"),
        (lambda: TieOptions(target_gap=1.0), "--target-gap"),
        (lambda: TieOptions(lam=-1.0), "--lambda"),
        (lambda: TieOptions(lam=NAN), "--lambda"),
        (lambda: TieOptions(device="tpu"), "--device"),
        (lambda: TieOptions(epochs=0), "--epochs"),
        (lambda: TieOptions(finetune_shared=-1), "--finetune-shared"),
        (lambda: TieOptions(auto=-1), "--auto"),
    ],
)
def test_the_api_refuses_each_option_the_cli_refuses(build, flag: str) -> None:
    with pytest.raises(InputError, match=f"^{flag} "):
        build()


def test_defaults_and_edge_values_are_accepted() -> None:
    AnalysisOptions(tol=None, row_tol=None, candidates=0)
    DedupOptions(tol=1e-3, max_error=0.0)
    ExportOptions(opset=18, dedup=DedupOptions(rows=True))
    TieOptions(lam=0.0, target_gap=0.5, epochs=1, finetune_shared=0, device="cuda:1")


def test_the_cli_refuses_with_the_dataclass_message(tmp_path: Path) -> None:
    model = save_onnx(tmp_path / "m.onnx", {"w": np.ones(4, np.float32)})
    proc = run_cli("dedup", str(model), "-o", str(tmp_path / "o.onnx"), "--max-error", "-1")
    assert (proc.returncode, proc.stderr) == (2, "error: --max-error -1.0: must be a number >= 0\n")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.onnx"]


def test_every_kind_is_a_sharescan_error_with_its_message() -> None:
    for kind in (InputError, VerificationError, TrainingError):
        e = kind("x.onnx: something; do this")
        assert isinstance(e, SharescanError) and e.message == str(e) == "x.onnx: something; do this"
    assert not issubclass(VerificationError, InputError) and not issubclass(TrainingError, InputError)


@pytest.mark.parametrize(
    ("error", "line", "code"),
    [
        (InputError("a.pt: missing"), "error: a.pt: missing", EXIT_ERROR),
        (VerificationError("o.onnx: verification failed"), "error: o.onnx: verification failed", EXIT_ERROR),
        (TrainingError("the loss diverged"), "error: the loss diverged", EXIT_ERROR),
        (ThresholdExceeded("sharescan: reclaimable 9 B exceeds --fail-above 1"), "sharescan: reclaimable 9 B exceeds --fail-above 1", EXIT_FAIL_ABOVE),
        (KeyboardInterrupt(), "aborted", EXIT_INTERRUPTED),
        (MemoryError(), "error: out of memory; analyse fewer or smaller models at once", EXIT_ERROR),
    ],
)
def test_one_place_maps_each_error_to_its_line_and_exit_code(error: BaseException, line: str, code: int) -> None:
    assert describe(error)[:2] == (line, code)


def _dedup_raising(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, error: BaseException) -> tuple[Path, list[str]]:
    import sharescan.onnx_rewrite.dedup as dedup_module

    def fail(*args: object, **kwargs: object) -> None:
        raise error

    monkeypatch.setattr(dedup_module, "dedup", fail)
    model = save_onnx(tmp_path / "m.onnx", {"w": np.ones(4, np.float32)})
    return model, ["dedup", str(model), "-o", str(tmp_path / "o.onnx"), "--no-ram"]


@pytest.mark.parametrize(
    ("error", "code", "line"),
    [
        (VerificationError("o.onnx: verification failed even with no merge; nothing written"), 2, "error: o.onnx: verification failed even with no merge; nothing written"),
        (KeyboardInterrupt(), 130, "aborted"),
        (RuntimeError("boom\nsecond line"), 2, "error: unexpected RuntimeError: boom second line; the input may be corrupt: check it, and report this message if it is not"),
    ],
)
def test_what_a_command_raises_becomes_one_stderr_line_and_an_exit_code(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, error: BaseException, code: int, line: str) -> None:
    monkeypatch.delenv("SHARESCAN_DEBUG", raising=False)
    _, args = _dedup_raising(monkeypatch, tmp_path, error)
    proc = run_cli(*args)
    # click ends the terminal's ^C line with a newline before "aborted"; no other line.
    assert (proc.returncode, proc.stderr.lstrip("\n"), proc.stdout) == (code, line + "\n", "")


def test_sharescan_debug_shows_the_traceback_of_an_unexpected_error_only(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    from sharescan.cli import main

    monkeypatch.setenv("SHARESCAN_DEBUG", "1")
    _, args = _dedup_raising(monkeypatch, tmp_path, RuntimeError("boom"))
    with pytest.raises(RuntimeError, match="boom"):
        main(args)
    _, args = _dedup_raising(monkeypatch, tmp_path, InputError("m.onnx: refused"))
    with pytest.raises(SystemExit) as exit_info:
        main(args)
    assert exit_info.value.code == 2


def test_a_rewrite_that_fails_onnx_checker_is_a_verification_error_and_a_bad_input_an_input_error(tmp_path: Path) -> None:
    from onnx import helper

    from sharescan.onnx_rewrite.verify import check_model

    bad = save_onnx(tmp_path / "bad.onnx", {"w": np.ones(4, np.float32)}, nodes=[helper.make_node("NoSuchOp", ["w"], ["y"])])
    with pytest.raises(VerificationError, match="out.onnx: the rewritten model fails onnx.checker"):
        check_model(bad, label="out.onnx")
    with pytest.raises(InputError, match="bad.onnx fails onnx.checker"):
        check_model(bad)


def test_a_loss_that_turns_nan_is_a_training_error(tmp_path: Path) -> None:
    from sharescan.tying.run import tie

    options = TieOptions(arch="fixtures.architectures:DigitsMLP", task="tests.tie_tasks:nan_pair", groups="A:features.* = B:features.*", epochs=1, finetune_shared=0, lam=1.0)
    with pytest.raises(TrainingError, match="turned NaN"):
        tie([str(FIXTURES / "pair_a.pt"), str(FIXTURES / "pair_b.pt")], str(tmp_path / "t.pt"), options)
    assert list(tmp_path.iterdir()) == []
