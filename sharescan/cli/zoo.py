"""``sharescan zoo``: what the models of a folder or manifest share, scanned on Dask."""

from __future__ import annotations

from pathlib import Path

import click

from sharescan.cli._options import json_opt, report_opt, trust_code_opt
from sharescan.cli._output import Rendering, check_report_target, emit
from sharescan.cli._progress import zoo_progress
from sharescan.errors import InputError

__all__ = ["zoo"]


@click.command(epilog="""\b
Examples:
  sharescan zoo models/                          # a LocalCluster, one worker per core
  sharescan zoo models/ --workers 4 --report zoo.md
  sharescan zoo manifest.txt --scheduler tcp://10.0.0.5:8786 --json > zoo.json
  sharescan zoo models/ --scheduler none --exact # in this process, exact relations only
\b
The digests are kept in --store (default: ROOT.sharescan.sqlite beside the
folder ROOT, or MANIFEST-STEM.sharescan.sqlite beside the manifest); a
rescan digests only new or changed models (size or mtime), and an unchanged
zoo is answered from the store without reading any model.
\b
Exit codes: 0 done (unreadable models are skipped with a warning and listed);
2 unusable input or options, or an unreachable scheduler.""")
@click.argument("target", metavar="ROOT|MANIFEST")
@json_opt
@report_opt
@click.option("--store", "store", type=click.Path(dir_okay=False, path_type=Path), help="The SQLite digest store. [default: ROOT.sharescan.sqlite beside the folder ROOT; for a manifest, MANIFEST-STEM.sharescan.sqlite in its folder]")
@click.option("--scheduler", help="A dask.distributed scheduler address (tcp://host:8786), or 'none' to scan in this process. [default: a LocalCluster on this machine]")
@click.option("--workers", type=int, default=None, help="Worker processes of the LocalCluster. [default: the number of cores]")
@click.option("--connect-timeout", type=float, default=5.0, show_default=True, help="Seconds to reach --scheduler before giving up.")
@click.option("--key", help="Dotted path of the state dict inside nested PyTorch checkpoints (e.g. 'model').")
@trust_code_opt("Allow PyTorch files that unpickle Python objects (runs code from the files: only for files you trust).")
@click.option("--tol", type=float, default=None, help="Merge near-equal tensors within this relative L2 distance. [default: 2e-3]")
@click.option("--row-tol", type=float, default=None, help="Merge near-equal rows within this relative distance. [default: 2e-3]")
@click.option("--exact", is_flag=True, help="Exact relations only: no near-equal tensors or rows.")
@click.option("--top", default=20, show_default=True, type=click.IntRange(min=1), help="Families, groups and models shown in the terminal and Markdown tables (JSON has all).")
def zoo(target: str, as_json: bool, report_path: Path | None, store: Path | None, scheduler: str | None, workers: int | None, connect_timeout: float, key: str | None, trust_pickle: bool, tol: float | None, row_tol: float | None, exact: bool, top: int) -> None:
    """Find what the models under ROOT (or listed in MANIFEST, one path per line) share: safetensors, PyTorch, ONNX, Hugging Face folders."""
    if exact and (tol is not None or row_tol is not None):
        raise InputError("--exact excludes --tol and --row-tol; pass one or the other")
    check_report_target(report_path, str(store) if store else None)
    from sharescan.result import DEFAULT_TOL
    from sharescan.zoo import ZooOptions, scan_zoo
    from sharescan.zoo.report import render_zoo_json, render_zoo_markdown, render_zoo_terminal, zoo_headline

    options = ZooOptions(
        tol=None if exact else (DEFAULT_TOL if tol is None else tol),
        row_tol=None if exact else (DEFAULT_TOL if row_tol is None else row_tol),
        key=key,
        trust_pickle=trust_pickle,
        scheduler=scheduler,
        workers=workers,
        connect_timeout=connect_timeout,
        store=store,
    )
    result = scan_zoo(target, options, zoo_progress())
    # Skipped models were warned about as they were met; the result's warnings are the analysis's own.
    emit(Rendering(
        lambda: render_zoo_json(result),
        lambda console: render_zoo_terminal(result, console, top),
        lambda: render_zoo_markdown(result, top),
        result.warnings,
        lambda: " ".join(zoo_headline(result)),
    ), as_json, report_path)

