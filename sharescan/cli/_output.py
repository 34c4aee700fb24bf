"""Everything a command prints or writes: one result, rendered three ways.

Data goes to stdout (the terminal report, or JSON and nothing else);
warnings go to stderr; a Markdown report is written whole or not at all
(:func:`sharescan.outputs.atomic_path`). A renderer is called only when its
form is asked for. Errors are not printed here: commands raise them and
``sharescan.cli._errors`` turns them into one line.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import click

from sharescan.errors import InputError

# Key in the root click context's ``meta``: -q asks for the summary line only.
QUIET = "sharescan.quiet"
# --report writes Markdown; these are the names a Markdown file goes by.
REPORT_SUFFIXES = (".md", ".markdown", ".txt")

__all__ = ["QUIET", "REPORT_SUFFIXES", "Rendering", "emit", "check_report_target", "analysis_rendering", "dedup_rendering", "tie_rendering"]


@dataclass(frozen=True)
class Rendering:
    """One result, three ways; each callable runs only when that form is asked for."""

    json: Callable[[], str]  # the whole JSON document, newline-terminated
    terminal: Callable[[Any], None]  # prints to a rich Console
    markdown: Callable[[], str]  # the Markdown report
    warnings: Sequence[str] = ()  # one line each, on stderr
    summary: Callable[[], str] | None = None  # the one line -q prints; None: -q prints the whole terminal report


def emit(rendering: Rendering, as_json: bool, report_path: Path | None) -> None:
    """Warnings to stderr, the result to stdout, and the Markdown report if asked."""
    for warning in rendering.warnings:
        click.echo(f"warning: {warning}", err=True)
    if as_json:
        sys.stdout.write(rendering.json())
    elif _quiet() and rendering.summary is not None:
        click.echo(rendering.summary())
    else:
        rendering.terminal(_console())
    if report_path is not None:
        _write_report(report_path, rendering.markdown())


def check_report_target(report: Path | None, *paths: str | None) -> None:
    """--report may not name, or replace, any file this command reads or writes; checked before any work."""
    if report is None:
        return
    if report.suffix.lower() not in REPORT_SUFFIXES:
        hint = "; for an HTML report use --html" if report.suffix.lower() in (".html", ".htm") else ""
        raise InputError(f"--report {report}: writes Markdown, so the name must end in {', '.join(REPORT_SUFFIXES)}{hint}")
    from sharescan.outputs import check_output, companion_files

    named = [p for p in paths if p]
    written = [str(c) for p in named for c in companion_files(Path(p))]
    check_output(report, [*named, *written], option="--report path")


def _write_report(path: Path, text: str) -> None:
    from sharescan.outputs import atomic_path

    try:
        with atomic_path(path) as tmp:
            tmp.write_text(text, encoding="utf-8")
    except OSError as e:
        raise InputError(f"{path}: could not write the report ({e.strerror}); check the folder or choose another --report path") from None


def _quiet() -> bool:
    ctx = click.get_current_context(silent=True)
    return bool(ctx and ctx.find_root().meta.get(QUIET))


def _console() -> Any:
    """The terminal console: the terminal's width; for a file or a pipe, ``COLUMNS`` if set, else 120 (rich would use 80)."""
    from rich.console import Console

    if sys.stdout.isatty():
        return Console()
    columns = os.environ.get("COLUMNS", "")
    return Console(width=int(columns) if columns.isdigit() and int(columns) > 0 else 120)


def _dumps(data: dict[str, Any]) -> str:
    return json.dumps(data, indent=2) + "\n"


def analysis_rendering(result: Any, top: int, min_bytes: int) -> Rendering:
    """``analyze``: groups and totals; tables cut at ``top`` rows, the terminal's also folds groups under ``min_bytes`` (JSON has all).

    Each form imports its renderer when asked for: ``--json`` never loads
    the terminal and Markdown reports (3 ms of start-up).
    """

    def as_json() -> str:
        from sharescan.report.json_report import render_json

        return render_json(result)

    def terminal(console: Any) -> None:
        from sharescan.report.terminal import render_terminal

        render_terminal(result, console, top, min_bytes)

    def markdown() -> str:
        from sharescan.report.markdown import render_markdown

        return render_markdown(result, top)

    def summary() -> str:
        from sharescan.report.rows import headline

        return " ".join(headline(result))

    return Rendering(as_json, terminal, markdown, result.warnings, summary)


def dedup_rendering(result: Any, note: str | None = None, data: dict[str, Any] | None = None) -> Rendering:
    """``dedup``; ``export`` adds a ``note`` comparing torch with onnxruntime and its own JSON ``data``."""
    from sharescan.report.dedup_report import dedup_summary, render_dedup_markdown, render_dedup_terminal

    def terminal(console: Any) -> None:
        render_dedup_terminal(result, console)
        if note:
            console.print(note, highlight=False)

    def summary() -> str:
        return f"{result.input} -> {result.output}: " + dedup_summary(result)[1]

    return Rendering(
        lambda: _dumps(data if data is not None else result.to_dict()),
        terminal,
        lambda: render_dedup_markdown(result) + (f"\n{note}\n" if note else ""),
        result.warnings,
        summary,
    )


def tie_rendering(result: Any) -> Rendering:
    """``tie``: per-group gaps and the metric before and after."""
    from sharescan.report.tie_report import render_tie_markdown, render_tie_terminal, tie_headline

    return Rendering(lambda: _dumps(result.to_dict()), lambda console: render_tie_terminal(result, console), lambda: render_tie_markdown(result), result.warnings, lambda: tie_headline(result))
