"""The ``sharescan`` command: a thin layer over the library.

Only click is imported at start-up; the analysis, numpy and the loaders are
imported inside the command, so ``sharescan --help`` stays fast and never
imports torch.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

from sharescan import __version__

__all__ = ["main", "cli"]

EXIT_FAIL_ABOVE = 1
EXIT_INPUT = 2


def _fail(message: str) -> None:
    click.echo(f"error: {message}", err=True)
    sys.exit(EXIT_INPUT)


def write_atomic(path: Path, text: str) -> None:
    """Write to a temporary file beside the target, then rename over it."""
    from sharescan.outputs import atomic_path

    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


def _console() -> Any:
    """The terminal console; 120 columns when stdout is a file or a pipe (rich would use 80)."""
    from rich.console import Console

    return Console() if sys.stdout.isatty() else Console(width=120)


def _emit(data: dict[str, Any], as_json: bool, terminal: Any, report_path: Path | None, markdown: Any) -> None:
    """One result out: JSON on stdout or the terminal report, and the Markdown report if asked."""
    if as_json:
        import json

        sys.stdout.write(json.dumps(data, indent=2) + "\n")
    else:
        terminal(_console())
    if report_path is not None:
        _write_report(report_path, markdown())


def _write_report(path: Path, text: str) -> None:
    from sharescan.errors import InputError

    try:
        write_atomic(path, text)
    except InputError as e:
        _fail(e.message)
    except OSError as e:
        _fail(f"{path}: could not write the report ({e.strerror}); check the folder or choose another --report path")


def _check_report_target(report: Path | None, *paths: str | None) -> None:
    """--report may not name, or replace, any file this command reads or writes."""
    if report is None:
        return
    from sharescan.errors import InputError
    from sharescan.outputs import check_output, companion_files

    named = [p for p in paths if p]
    written = [str(c) for p in named for c in companion_files(Path(p))]
    try:
        check_output(report, [*named, *written], option="--report path")
    except InputError as e:
        _fail(e.message)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="sharescan")
def cli() -> None:
    """Find parameters that trained models store more than once, and what sharing them reclaims."""


@cli.command(epilog="""\b
Examples:
  sharescan analyze model.safetensors
  sharescan analyze model.onnx --json > findings.json
  sharescan analyze base.pt finetuned.pt --report report.md
  sharescan analyze ckpt.pt --key model --fail-above 5%
\b
Exit codes: 0 done; 1 --fail-above exceeded; 2 unusable input or options.""")
@click.argument("models", nargs=-1, required=True, metavar="MODEL...")
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON on stdout and nothing else.")
@click.option("--report", "report_path", type=click.Path(dir_okay=False, path_type=Path), help="Also write a Markdown report to this file.")
@click.option("--fail-above", help="Exit 1 if reclaimable bytes exceed this: bytes (1500, 10MB, 10MiB) or a percentage of unique bytes (5%).")
@click.option("--key", help="Dotted path of the state dict inside a nested PyTorch checkpoint (e.g. 'model').")
@click.option("--trust-code", "--trust-pickle", "trust_pickle", is_flag=True, help="Allow PyTorch files that unpickle Python objects (runs code from the file: only for files you trust). TorchScript and .pt2 are read without it, never run.")
@click.option("--tol", type=float, default=None, help="Merge near-equal tensors within this relative L2 distance ||a-b||/max(||a||,||b||). [default: 2e-3]")
@click.option("--row-tol", type=float, default=None, help="Merge near-equal rows within this relative distance. [default: 2e-3]")
@click.option("--exact", is_flag=True, help="Exact relations only: no near-equal tensors or rows.")
@click.option("--candidates", default=5, show_default=True, type=int, help="Closest not-merged same-shape pairs to list as candidates for tying (0: none).")
@click.option("--top", default=50, show_default=True, type=click.IntRange(min=1), help="Groups shown in the terminal and Markdown tables (JSON has all).")
def analyze(
    models: tuple[str, ...],
    as_json: bool,
    report_path: Path | None,
    fail_above: str | None,
    key: str | None,
    trust_pickle: bool,
    tol: float | None,
    row_tol: float | None,
    exact: bool,
    candidates: int,
    top: int,
) -> None:
    """Analyse MODEL files or folders (PyTorch, TorchScript, .pt2, safetensors, ONNX, Hugging Face folders)."""
    from sharescan.units import parse_threshold

    threshold = None
    if fail_above is not None:
        try:
            threshold = parse_threshold(fail_above)
        except ValueError:
            _fail(f"--fail-above {fail_above!r}: expected bytes like 1500, 10MB, 10MiB, or a percentage like 5%")
    _check_report_target(report_path, *models)

    from sharescan.analysis import DEFAULT_TOL, AnalysisOptions, analyze as run_analysis
    from sharescan.errors import InputError

    if exact and (tol is not None or row_tol is not None):
        _fail("--exact excludes --tol and --row-tol; pass one or the other")
    options = AnalysisOptions(
        key=key,
        trust_pickle=trust_pickle,
        tol=None if exact else (DEFAULT_TOL if tol is None else tol),
        row_tol=None if exact else (DEFAULT_TOL if row_tol is None else row_tol),
        candidates=candidates,
    )
    try:
        result = run_analysis(list(models), options, _progress())
    except InputError as e:
        _fail(e.message)
    except MemoryError:
        _fail("out of memory while reading the models; analyse fewer models at once")
    _output(result, as_json, report_path, top)
    if threshold is not None and threshold.exceeded(result.totals.reclaimable_bytes, result.totals.unique_bytes):
        click.echo(f"sharescan: reclaimable {result.totals.reclaimable_bytes:,} B exceeds --fail-above {threshold.text}", err=True)
        sys.exit(EXIT_FAIL_ABOVE)


def _output(result: Any, as_json: bool, report_path: Path | None, top: int) -> None:
    for warning in result.warnings:
        click.echo(f"warning: {warning}", err=True)
    if as_json:
        from sharescan.report.json_report import render_json

        sys.stdout.write(render_json(result))
    else:

        from sharescan.report.terminal import render_terminal

        render_terminal(result, _console(), top)
    if report_path is not None:
        from sharescan.report.markdown import render_markdown

        _write_report(report_path, render_markdown(result, top))


def _rewrite_options(command: Callable[..., Any]) -> Callable[..., Any]:
    """The rewrite options dedup and export share: --tol, --rows, --strip-debug, --simplify."""
    for option in reversed((
        click.option("--tol", type=float, default=None, help="Also merge near-equal tensors within this relative distance (lossy)."),
        click.option("--rows", is_flag=True, help="Store tensors with duplicate rows as unique rows plus an index (Gather)."),
        click.option("--strip-debug", is_flag=True, help="Also drop doc strings and exporter metadata (stack traces, graph signature); model metadata, names and types stay."),
        click.option("--simplify", is_flag=True, help="Also drop Identity, repeated and unused nodes, make Reshape targets built from the input's own dims constant, and fold constant subgraphs and fixed shapes where the file gets smaller (specialises to the declared input sizes)."),
    )):
        command = option(command)
    return command


def _dedup_options(tol: float | None, input_specs: tuple[str, ...], **rest: Any) -> Any:
    """DedupOptions from the shared flags; a --tol outside (0, 1) or a bad --input raises InputError before any work."""
    from sharescan.errors import InputError
    from sharescan.onnx_rewrite.dedup import DedupOptions
    from sharescan.onnx_rewrite.verify import parse_input_spec

    if tol is not None and not 0 < tol < 1:
        raise InputError(f"--tol {tol}: a relative distance must lie strictly between 0 and 1")
    return DedupOptions(tol=tol, inputs=tuple(parse_input_spec(s) for s in input_specs), **rest)


@cli.command(epilog="""\b
Examples:
  sharescan dedup model.onnx -o model.dedup.onnx
  sharescan dedup model.onnx -o small.onnx --rows --json
  sharescan dedup model.onnx -o small.onnx --strip-debug --simplify
  sharescan dedup model.onnx -o small.onnx --tol 1e-3 --max-error 1e-3
  sharescan dedup model.onnx -o out.onnx --input input_ids:1x128:int64
  sharescan dedup vad.onnx -o out.onnx --inputs speech.npz --inputs silence.npz
\b
Exit codes: 0 written and verified; 2 unusable input, options or a failed verification (nothing written).""")
@click.argument("model", metavar="MODEL.onnx")
@click.option("-o", "--output", required=True, type=click.Path(dir_okay=False), help="Where to write the deduplicated model.")
@_rewrite_options
@click.option("--max-error", type=float, default=1e-3, show_default=True, help="Lossy merges: largest relative change of any output before the result is refused.")
@click.option("--input", "input_specs", multiple=True, help="Input for verification as name:shape:dtype (e.g. input_ids:1x32:int64); default: declared shapes, symbolic dims tried at sizes the model runs at.")
@click.option("--inputs", "samples", multiple=True, type=click.Path(exists=True, dir_okay=False), help="Real inputs for verification: an .npz of arrays named after graph inputs; one sample per file, or several along a leading axis (one dim more than declared); repeatable.")
@click.option("--in-place", is_flag=True, help="Allow -o to be the input file (replaced only after verification).")
@click.option("--no-ram", is_flag=True, help="Skip measuring onnxruntime RAM (four short runs).")
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON on stdout and nothing else.")
@click.option("--report", "report_path", type=click.Path(dir_okay=False, path_type=Path), help="Also write a Markdown report to this file.")
def dedup(model: str, output: str, tol: float | None, rows: bool, max_error: float, input_specs: tuple[str, ...], samples: tuple[str, ...], in_place: bool, strip_debug: bool, simplify: bool, no_ram: bool, as_json: bool, report_path: Path | None) -> None:
    """Write MODEL.onnx with every tensor it stores twice shared, verified with onnxruntime."""
    from sharescan.errors import InputError

    _check_report_target(report_path, model, output)
    if not max_error >= 0:
        _fail(f"--max-error {max_error}: must be a number >= 0")
    try:
        from sharescan.onnx_rewrite.dedup import dedup as run_dedup

        options = _dedup_options(tol, input_specs, rows=rows, max_error=max_error, measure_ram=not no_ram, strip_debug=strip_debug, simplify=simplify, samples=samples)
        result = run_dedup(model, output, options, in_place=in_place)
    except InputError as e:
        _fail(e.message)
    for warning in result.warnings:
        click.echo(f"warning: {warning}", err=True)
    from sharescan.report.dedup_report import render_dedup_markdown, render_dedup_terminal

    _emit(result.to_dict(), as_json, lambda console: render_dedup_terminal(result, console), report_path, lambda: render_dedup_markdown(result))


@cli.command(epilog="""\b
Examples:
  sharescan export model_script.pt -o model.onnx --input x:1x64:float32
  sharescan export model.pt2 -o model.onnx --inputs sample.npz
  sharescan export state_dict.pt --arch mypkg.models:build -o model.onnx --input input_ids:1x128:int64
  sharescan export lm.pt --arch mypkg.models:build -o lm.onnx --input input_ids:1x128:int64 --strip-debug --simplify
\b
Exit codes: 0 written and verified; 2 unusable input, options or a failed verification (nothing written).""")
@click.argument("model", metavar="MODEL")
@click.option("-o", "--output", required=True, type=click.Path(dir_okay=False), help="Where to write the deduplicated ONNX model.")
@click.option("--arch", help="module:factory that builds the nn.Module a state dict belongs to (imports that code).")
@click.option("--input", "input_specs", multiple=True, help="Example input as name:shape:dtype, one per model input, in order.")
@click.option("--inputs", "inputs_npz", type=click.Path(exists=True, dir_okay=False), help="Example inputs from an .npz file, in order.")
@click.option("--opset", default=17, show_default=True, type=int, help="ONNX opset for the exporter (a .pt2 program is exported at 18 or later).")
@click.option("--dynamo", is_flag=True, help="Use torch.onnx.export(dynamo=True) instead of the TorchScript exporter.")
@click.option("--no-constant-folding", is_flag=True, help="Export without constant folding.")
@click.option("--trust-code", "--trust-pickle", "trust_pickle", is_flag=True, help="Allow loading what runs code from the file: TorchScript, a .pt2 program, a pickled whole nn.Module. Only for files you trust.")
@_rewrite_options
@click.option("--no-ram", is_flag=True, help="Skip measuring onnxruntime RAM.")
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON on stdout and nothing else.")
@click.option("--report", "report_path", type=click.Path(dir_okay=False, path_type=Path), help="Also write a Markdown report to this file.")
def export(model: str, output: str, arch: str | None, input_specs: tuple[str, ...], inputs_npz: str | None, opset: int, dynamo: bool, no_constant_folding: bool, trust_pickle: bool, tol: float | None, rows: bool, strip_debug: bool, simplify: bool, no_ram: bool, as_json: bool, report_path: Path | None) -> None:
    """Export a PyTorch MODEL to ONNX, deduplicate it, and check onnxruntime against torch."""
    from sharescan.errors import InputError

    _check_report_target(report_path, model, output)
    try:
        from sharescan.onnx_rewrite.export import ExportOptions, export as run_export

        dedup_options = _dedup_options(tol, input_specs, rows=rows, measure_ram=not no_ram, strip_debug=strip_debug, simplify=simplify)
        options = ExportOptions(arch=arch, inputs_npz=inputs_npz, opset=opset, dynamo=dynamo, constant_folding=not no_constant_folding, trust_pickle=trust_pickle, dedup=dedup_options)
        result = run_export(model, output, options)
    except InputError as e:
        _fail(e.message)
    from sharescan.report.dedup_report import render_dedup_markdown, render_dedup_terminal

    comparison = f"torch vs onnxruntime on the written file: max abs {result.torch_vs_onnxruntime_max_abs:.3g}, relative {result.torch_vs_onnxruntime_rel:.3g}"

    def terminal(console: Any) -> None:
        render_dedup_terminal(result.dedup, console)
        console.print(comparison, highlight=False)

    _emit(result.to_dict(), as_json, terminal, report_path, lambda: render_dedup_markdown(result.dedup) + f"\n{comparison}\n")


@cli.command(epilog="""\b
Examples:
  sharescan tie a.pt b.pt --arch mypkg.models:build --task mypkg.train:task \\
      --groups "A:features.* = B:features.*" -o tied.pt --onnx tied.onnx
  sharescan tie model.pt --arch mypkg.models:build --inputs calib.npz \\
      --groups "A:blocks.1.* = A:blocks.0.*" --lambda 100 -o albert_style.pt
  sharescan tie a.pt b.pt --arch mypkg.models:build --task mypkg.train:task --auto 4 -o tied.safetensors
\b
Models are named A, B, ... in the order given. Exit codes: 0 written; 2 unusable input or options,
a loss that turned NaN or diverged (nothing written).""")
@click.argument("models", nargs=-1, required=True, metavar="MODEL...")
@click.option("-o", "--output", required=True, type=click.Path(dir_okay=False), help="Tied checkpoint: .pt (torch.save, sharing kept) or .safetensors (save_model).")
@click.option("--groups", "groups_spec", help="What to tie: 'A:pattern = B:pattern' rules separated by ';', or a JSON file {\"groups\": [[\"A:name\", \"B:name\"], ...]}.")
@click.option("--auto", default=0, type=click.IntRange(min=0), help="Instead of --groups: tie the N closest same-shape pairs that analyze ranks.")
@click.option("--task", help="module:function returning a task (batches, loss, metric) over labelled data.")
@click.option("--inputs", "inputs_npz", type=click.Path(exists=True, dir_okay=False), help="Instead of --task: distil from the original models on these inputs (.npz).")
@click.option("--lambda", "lam", default="auto", show_default=True, help="Penalty weight, or 'auto' (raised each epoch until every group's relative gap is below --target-gap).")
@click.option("--target-gap", default=1e-3, show_default=True, type=float)
@click.option("--epochs", default=30, show_default=True, type=click.IntRange(min=1), help="Epochs of penalised fine-tuning (the most, with --lambda auto).")
@click.option("--finetune-shared", default=10, show_default=True, type=click.IntRange(min=0), help="Epochs of fine-tuning after hard sharing.")
@click.option("--lr", default=3e-3, show_default=True, type=float)
@click.option("--arch", help="module:factory building each model from its state dict (imports that code).")
@click.option("--trust-code", "--trust-pickle", "trust_pickle", is_flag=True, help="Allow loading what runs code from the file: TorchScript, a .pt2 program, pickled whole nn.Modules. Only for files you trust.")
@click.option("--onnx", "onnx_output", type=click.Path(dir_okay=False), help="Also export the tied models as one ONNX graph with shared initializers.")
@click.option("--device", default="cpu", show_default=True, help="cpu or cuda.")
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON on stdout and nothing else.")
@click.option("--report", "report_path", type=click.Path(dir_okay=False, path_type=Path), help="Also write a Markdown report to this file.")
def tie(models: tuple[str, ...], output: str, groups_spec: str | None, auto: int, task: str | None, inputs_npz: str | None, lam: str, target_gap: float, epochs: int, finetune_shared: int, lr: float, arch: str | None, trust_pickle: bool, onnx_output: str | None, device: str, as_json: bool, report_path: Path | None) -> None:
    """Pull near-equal parameters together by penalised fine-tuning, then share them."""
    from sharescan.errors import InputError

    _check_report_target(report_path, *models, output, onnx_output)
    try:
        from sharescan.tying.run import TieOptions, tie as run_tie

        try:
            lam_value = None if lam == "auto" else float(lam)
        except ValueError:
            raise InputError(f"--lambda {lam!r}: a number >= 0, or auto") from None
        options = TieOptions(groups=groups_spec, auto=auto, task=task, inputs=inputs_npz, lam=lam_value, target_gap=target_gap, epochs=epochs, finetune_shared=finetune_shared, lr=lr, device=device, arch=arch, trust_pickle=trust_pickle)
        bar = _epoch_bar(epochs)
        try:
            result = run_tie(list(models), output, options, onnx_output, bar.update if bar else None)
        finally:
            if bar:
                bar.close()
    except InputError as e:
        _fail(e.message)
    from sharescan.report.tie_report import render_tie_markdown, render_tie_terminal

    _emit(result.to_dict(), as_json, lambda console: render_tie_terminal(result, console), report_path, lambda: render_tie_markdown(result))


def _epoch_bar(epochs: int) -> Any:
    """A progress bar per epoch on stderr, only when stderr is a terminal."""
    if not sys.stderr.isatty():
        return None
    from rich.console import Console
    from rich.progress import BarColumn, Progress as RichProgress, TextColumn

    bar = RichProgress(TextColumn("epoch {task.completed}/{task.total}"), BarColumn(), TextColumn("{task.description}"), console=Console(stderr=True), transient=True)
    job = bar.add_task("", total=epochs)
    bar.start()

    class Bar:
        def update(self, epoch: int, lam: float, gap: float) -> None:
            bar.update(job, completed=epoch + 1, description=f"lambda {lam:g}, largest gap {gap:.2e}")

        def close(self) -> None:
            bar.stop()

    return Bar()


def _progress() -> Any:
    """A rich progress bar on stderr, only when stderr is a terminal."""
    from sharescan.analysis import Progress

    if not sys.stderr.isatty():
        return Progress()

    class Bar(Progress):
        def start(self, total_bytes: int) -> None:
            from rich.console import Console
            from rich.progress import BarColumn, DownloadColumn, Progress as RichProgress, TimeRemainingColumn

            self.bar = RichProgress("scanning", BarColumn(), DownloadColumn(binary_units=True), TimeRemainingColumn(), console=Console(stderr=True), transient=True)
            self.task = self.bar.add_task("scan", total=total_bytes)
            self.bar.start()

        def advance(self, nbytes: int) -> None:
            self.bar.advance(self.task, nbytes)

        def stop(self) -> None:
            self.bar.stop()

    return Bar()


def main() -> None:
    # click's usage errors print three lines; the contract is one "error:" line and exit 2.
    if len(sys.argv) == 1:
        click.echo(cli.get_help(click.Context(cli, info_name="sharescan")))
        return
    for arg in sys.argv[1:]:
        if "\x00" in arg:  # a shell cannot pass one; a caller building argv can
            _fail(f"{arg.replace(chr(0), '<NUL>')}: an argument may not hold a NUL byte; check the path")
    try:
        cli.main(standalone_mode=False)
    except click.UsageError as e:
        hint = f" (see '{e.ctx.command_path} --help')" if e.ctx is not None else ""
        _fail(f"{e.format_message()}{hint}")
    except (click.exceptions.Abort, KeyboardInterrupt):
        click.echo("aborted", err=True)
        sys.exit(130)
    except click.ClickException as e:
        _fail(e.format_message())
    except Exception as e:  # noqa: BLE001 - the last line of defence: one line, never a traceback
        if os.environ.get("SHARESCAN_DEBUG"):
            raise  # a developer asked for the traceback
        _fail(_unexpected(e))


def _unexpected(e: BaseException) -> str:
    """One line for an error no command turned into its own message."""
    from sharescan.errors import InputError

    if isinstance(e, InputError):
        return e.message
    if isinstance(e, MemoryError):
        return "out of memory; analyse fewer or smaller models at once"
    if isinstance(e, RecursionError):
        return "the input nests too deeply to read; it is corrupt or hostile: re-save it from its source"
    if isinstance(e, OSError) and e.strerror:
        where = f"{e.filename}: " if e.filename else ""
        return f"{where}{e.strerror}; check the path and its permissions"
    text = " ".join(str(e).split())
    return f"unexpected {e.__class__.__name__}{': ' + text if text else ''}; the input may be corrupt: check it, and report this message if it is not"
