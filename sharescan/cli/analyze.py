"""``sharescan analyze``: what models store more than once, and what sharing it reclaims."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import click

from sharescan.cli._errors import ThresholdExceeded
from sharescan.cli._options import json_opt, models_arg, report_opt, trust_code_opt
from sharescan.cli._output import analysis_rendering, check_report_target, emit
from sharescan.errors import InputError

if TYPE_CHECKING:
    from sharescan.result import AnalysisResult

__all__ = ["analyze"]


@click.command(epilog="""\b
Examples:
  sharescan analyze model.safetensors
  sharescan analyze model.onnx --json > findings.json
  sharescan analyze base.pt finetuned.pt --report report.md
  sharescan analyze model.onnx --html report.html
  sharescan analyze ckpt.pt --key model --fail-above 5%
  sharescan -q analyze a.onnx b.safetensors --min-bytes 10KB
\b
Exit codes: 0 done; 1 --fail-above exceeded; 2 unusable input or options.""")
@models_arg
@json_opt
@report_opt
@click.option("--html", "html_path", type=click.Path(dir_okay=False, path_type=Path), help="Also write a self-contained HTML report (opens offline: no scripts, fonts or images fetched) to this file.")
@click.option("--fail-above", help="Exit 1 if reclaimable bytes exceed this: bytes (1500, 10MB, 10MiB) or a percentage of unique bytes (5%).")
@click.option("--key", help="Dotted path of the state dict inside a nested PyTorch checkpoint (e.g. 'model').")
@trust_code_opt("Allow PyTorch files that unpickle Python objects (runs code from the file: only for files you trust). TorchScript and .pt2 are read without it, never run.")
@click.option("--tol", type=float, default=None, help="Merge near-equal tensors within this relative L2 distance ||a-b||/max(||a||,||b||). [default: 2e-3]")
@click.option("--row-tol", type=float, default=None, help="Merge near-equal rows within this relative distance. [default: 2e-3]")
@click.option("--exact", is_flag=True, help="Exact relations only: no near-equal tensors or rows.")
@click.option("--candidates", default=5, show_default=True, type=int, help="Same-shape pairs not merged to list as candidates for tying: within relative distance 0.5, most bytes saved per unit of distance first (0: none).")
@click.option("--top", default=50, show_default=True, type=click.IntRange(min=1), help="Groups shown in the terminal and Markdown tables (JSON has all).")
@click.option("--min-bytes", default="1KiB", show_default=True, help="Terminal only: fold groups reclaiming less than this into one line (1500, 10KB, 1KiB); JSON and --report list every group.")
def analyze(models: tuple[str, ...], as_json: bool, report_path: Path | None, html_path: Path | None, fail_above: str | None, key: str | None, trust_pickle: bool, tol: float | None, row_tol: float | None, exact: bool, candidates: int, top: int, min_bytes: str) -> None:
    """Analyse MODEL files or folders (PyTorch, TorchScript, .pt2, safetensors, ONNX, Hugging Face folders)."""
    from sharescan.units import parse_bytes, parse_threshold

    try:
        threshold = None if fail_above is None else parse_threshold(fail_above)
    except ValueError as e:
        raise InputError(f"--fail-above {fail_above!r}: {e}") from None
    try:
        fold_below = parse_bytes(min_bytes)
    except ValueError as e:
        raise InputError(f"--min-bytes {min_bytes!r}: {e}") from None
    check_report_target(report_path, *models)
    _check_html_target(html_path, report_path, models)
    if exact and (tol is not None or row_tol is not None):
        raise InputError("--exact excludes --tol and --row-tol; pass one or the other")

    from sharescan.analysis import DEFAULT_TOL, AnalysisOptions, analyze as run_analysis
    from sharescan.cli._progress import scan_progress

    options = AnalysisOptions(
        key=key,
        trust_pickle=trust_pickle,
        tol=None if exact else (DEFAULT_TOL if tol is None else tol),
        row_tol=None if exact else (DEFAULT_TOL if row_tol is None else row_tol),
        candidates=candidates,
    )
    progress = scan_progress()
    try:
        result = run_analysis(list(models), options, progress)
    finally:
        progress.step("")  # no spinner left over an error line
    emit(analysis_rendering(result, top, fold_below), as_json, report_path)
    if html_path is not None:
        _write_html(html_path, result, top)
    totals = result.totals
    if threshold is not None and threshold.exceeded(totals.reclaimable_bytes, totals.unique_bytes):
        raise ThresholdExceeded(f"sharescan: reclaimable {totals.reclaimable_bytes:,} B exceeds --fail-above {threshold.text}")


def _check_html_target(html_path: Path | None, report_path: Path | None, models: tuple[str, ...]) -> None:
    """--html, like --report, never names or replaces a file the command reads, nor the --report file."""
    if html_path is None:
        return
    from sharescan.outputs import check_output, companion_files

    if report_path is not None and Path(html_path).resolve() == Path(report_path).resolve():
        raise InputError(f"{html_path}: --html and --report name the same file; choose another --html path")
    written = [str(c) for p in models for c in companion_files(Path(p))]
    check_output(html_path, [*models, *written], option="--html path")


def _write_html(path: Path, result: AnalysisResult, top: int) -> None:
    """Written whole or not at all, like the Markdown report."""
    from sharescan.outputs import atomic_path
    from sharescan.report.html import render_html

    try:
        with atomic_path(path) as tmp:
            tmp.write_text(render_html(result, top), encoding="utf-8")
    except OSError as e:
        raise InputError(f"{path}: could not write the HTML report ({e.strerror}); check the folder or choose another --html path") from None
