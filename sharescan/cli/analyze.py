"""``sharescan analyze``: what models store more than once, and what sharing it reclaims."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from sharescan.cli._errors import ThresholdExceeded
from sharescan.cli._options import json_opt, models_arg, report_opt, trust_code_opt
from sharescan.cli._output import analysis_rendering, check_report_target, emit
from sharescan.errors import InputError

if TYPE_CHECKING:
    from sharescan.cli._output import Rendering
    from sharescan.codebook.analysis import CodebookOptions
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
  sharescan analyze model.onnx --codebook --codebook-error 1e-2 --group-channels 64
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
@click.option("--codebook", is_flag=True, help="Also report, per float tensor, the fewest bits (1-8) of codebook indices within --codebook-error, and the bytes after.")
@click.option("--codebook-error", type=float, default=None, help="--codebook: relative L2 error allowed per tensor. [default: 1e-2]")
@click.option("--codebook-bits", type=int, default=None, help="--codebook: report the error at this many bits (1-8) instead of searching.")
@click.option("--group-channels", type=int, default=None, help="--codebook: one codebook per this many output channels (axis 0) instead of per tensor.")
def analyze(models: tuple[str, ...], as_json: bool, report_path: Path | None, html_path: Path | None, fail_above: str | None, key: str | None, trust_pickle: bool, tol: float | None, row_tol: float | None, exact: bool, candidates: int, top: int, min_bytes: str, codebook: bool, codebook_error: float | None, codebook_bits: int | None, group_channels: int | None) -> None:
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
    codebook_options = _codebook_options(codebook, codebook_error, codebook_bits, group_channels)

    from sharescan.cli import collector_paused, ends_with_command

    # The analysis pauses the collector itself; its imports and the report make no cycles either.
    with collector_paused(resume=not ends_with_command()):
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
        rendering = analysis_rendering(result, top, fold_below)
        if codebook_options is not None:
            rendering = _with_codebooks(rendering, result, models, key, trust_pickle, codebook_options, top)
        emit(rendering, as_json, report_path)
        if html_path is not None:
            _write_html(html_path, result, top)
    totals = result.totals
    if threshold is not None and threshold.exceeded(totals.reclaimable_bytes, totals.unique_bytes):
        raise ThresholdExceeded(f"sharescan: reclaimable {totals.reclaimable_bytes:,} B exceeds --fail-above {threshold.text}")


def _codebook_options(codebook: bool, error: float | None, bits: int | None, group_channels: int | None) -> CodebookOptions | None:
    """Checked before any model is read; the --codebook-* options mean nothing without --codebook."""
    if not codebook:
        given = [n for n, v in (("--codebook-error", error), ("--codebook-bits", bits), ("--group-channels", group_channels)) if v is not None]
        if given:
            raise InputError(f"{given[0]} applies to codebooks only; add --codebook")
        return None
    from sharescan.codebook.analysis import DEFAULT_ERROR, CodebookOptions

    return CodebookOptions(DEFAULT_ERROR if error is None else error, bits, group_channels)


def _with_codebooks(rendering: Rendering, result: AnalysisResult, models: tuple[str, ...], key: str | None, trust_pickle: bool, options: CodebookOptions, top: int) -> Rendering:
    """The analysis's rendering with the codebook section added: a top-level ``codebook`` key in JSON, a table after the report."""
    import json
    from dataclasses import replace

    from sharescan.codebook.analysis import codebook_models
    from sharescan.codebook.report import render_codebook_markdown, render_codebook_terminal
    from sharescan.sources import LoadOptions, load_model

    loaded = [load_model(p, k, LoadOptions(key=key, trust_pickle=trust_pickle)) for k, p in enumerate(models)]
    report = codebook_models(loaded, options)

    def terminal(console: Any) -> None:
        rendering.terminal(console)
        render_codebook_terminal(report, console, top)

    return replace(
        rendering,
        json=lambda: json.dumps({**result.to_dict(), "codebook": report.to_dict()}, indent=2) + "\n",
        terminal=terminal,
        markdown=lambda: rendering.markdown() + render_codebook_markdown(report, top),
    )


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
