"""``sharescan analyze``: what models store more than once, and what sharing it reclaims."""

from __future__ import annotations

from pathlib import Path

import click

from sharescan.cli._errors import ThresholdExceeded
from sharescan.cli._options import json_opt, models_arg, report_opt, trust_code_opt
from sharescan.cli._output import analysis_rendering, check_report_target, emit
from sharescan.errors import InputError

__all__ = ["analyze"]


@click.command(epilog="""\b
Examples:
  sharescan analyze model.safetensors
  sharescan analyze model.onnx --json > findings.json
  sharescan analyze base.pt finetuned.pt --report report.md
  sharescan analyze ckpt.pt --key model --fail-above 5%
\b
Exit codes: 0 done; 1 --fail-above exceeded; 2 unusable input or options.""")
@models_arg
@json_opt
@report_opt
@click.option("--fail-above", help="Exit 1 if reclaimable bytes exceed this: bytes (1500, 10MB, 10MiB) or a percentage of unique bytes (5%).")
@click.option("--key", help="Dotted path of the state dict inside a nested PyTorch checkpoint (e.g. 'model').")
@trust_code_opt("Allow PyTorch files that unpickle Python objects (runs code from the file: only for files you trust). TorchScript and .pt2 are read without it, never run.")
@click.option("--tol", type=float, default=None, help="Merge near-equal tensors within this relative L2 distance ||a-b||/max(||a||,||b||). [default: 2e-3]")
@click.option("--row-tol", type=float, default=None, help="Merge near-equal rows within this relative distance. [default: 2e-3]")
@click.option("--exact", is_flag=True, help="Exact relations only: no near-equal tensors or rows.")
@click.option("--candidates", default=5, show_default=True, type=int, help="Closest not-merged same-shape pairs to list as candidates for tying (0: none).")
@click.option("--top", default=50, show_default=True, type=click.IntRange(min=1), help="Groups shown in the terminal and Markdown tables (JSON has all).")
def analyze(models: tuple[str, ...], as_json: bool, report_path: Path | None, fail_above: str | None, key: str | None, trust_pickle: bool, tol: float | None, row_tol: float | None, exact: bool, candidates: int, top: int) -> None:
    """Analyse MODEL files or folders (PyTorch, TorchScript, .pt2, safetensors, ONNX, Hugging Face folders)."""
    from sharescan.units import parse_threshold

    try:
        threshold = None if fail_above is None else parse_threshold(fail_above)
    except ValueError:
        raise InputError(f"--fail-above {fail_above!r}: expected bytes like 1500, 10MB, 10MiB, or a percentage like 5%") from None
    check_report_target(report_path, *models)
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
    result = run_analysis(list(models), options, scan_progress())
    emit(analysis_rendering(result, top), as_json, report_path)
    totals = result.totals
    if threshold is not None and threshold.exceeded(totals.reclaimable_bytes, totals.unique_bytes):
        raise ThresholdExceeded(f"sharescan: reclaimable {totals.reclaimable_bytes:,} B exceeds --fail-above {threshold.text}")
