"""``sharescan dedup``: an ONNX model with every tensor it stores twice shared, verified."""

from __future__ import annotations

from pathlib import Path

import click

from sharescan.cli._options import json_opt, output_opt, ram_opts, report_opt, rewrite_opts
from sharescan.cli._output import check_report_target, dedup_rendering, emit
from sharescan.cli._progress import step_status

__all__ = ["dedup"]


@click.command(epilog="""\b
Examples:
  sharescan dedup model.onnx -o model.dedup.onnx
  sharescan dedup model.onnx -o small.onnx --rows --json
  sharescan dedup model.onnx -o small.onnx --strip-debug --simplify
  sharescan dedup model.onnx -o small.onnx --tol 1e-3 --max-error 1e-3
  sharescan dedup model.onnx -o small.onnx --codebook 4 --max-error 1e-2
  sharescan dedup model.onnx -o small.onnx --codebook 4 --uniform --max-error 1e-2
  sharescan dedup model.onnx -o out.onnx --input input_ids:1x128:int64
  sharescan dedup vad.onnx -o out.onnx --inputs speech.npz --inputs silence.npz
  sharescan dedup model.onnx -o small.onnx --ram
\b
Exit codes: 0 written and verified; 2 unusable input, options or a failed verification (nothing written).""")
@click.argument("model", metavar="MODEL.onnx")
@output_opt("Where to write the deduplicated model.")
@rewrite_opts
@click.option("--codebook", "codebook_bits", type=int, default=None, metavar="BITS", help="Also store each float initializer of 1 KiB or more as BITS-bit (1-8) indices into a k-means codebook, rebuilt by Gather (lossy; refused above --max-error).")
@click.option("--uniform", "codebook_uniform", is_flag=True, help="--codebook: the least-error uniform grid, rebuilt by DequantizeLinear (onnxruntime keeps the indices in memory with any session options), instead of k-means centers.")
@click.option("--codebook-group-channels", type=int, default=None, metavar="N", help="--codebook: one codebook per group of at most N rows (axis 0) instead of one per tensor.")
@click.option("--max-error", type=float, default=1e-3, show_default=True, help="Lossy merges: largest relative change of any output before the result is refused.")
@click.option("--input", "input_specs", multiple=True, help="Input for verification as name:shape:dtype (e.g. input_ids:1x32:int64); default: declared shapes, symbolic dims tried at sizes the model runs at.")
@click.option("--inputs", "samples", multiple=True, type=click.Path(exists=True, dir_okay=False), help="Real inputs for verification: an .npz of arrays named after graph inputs; one sample per file, or several along a leading axis (one dim more than declared); repeatable.")
@click.option("--in-place", is_flag=True, help="Allow -o to be the input file (replaced only after verification).")
@ram_opts
@json_opt
@report_opt
def dedup(model: str, output: str, tol: float | None, rows: bool, max_error: float, input_specs: tuple[str, ...], samples: tuple[str, ...], in_place: bool, strip_debug: bool, simplify: bool, codebook_bits: int | None, codebook_uniform: bool, codebook_group_channels: int | None, measure_ram: bool, no_ram: bool, as_json: bool, report_path: Path | None) -> None:
    """Write MODEL.onnx with every tensor it stores twice shared, verified with onnxruntime."""
    check_report_target(report_path, model, output)
    from sharescan.onnx_rewrite.dedup import DedupOptions, dedup as run_dedup
    from sharescan.onnx_rewrite.verify import parse_input_spec

    inputs = tuple(parse_input_spec(s) for s in input_specs)
    options = DedupOptions(tol=tol, rows=rows, max_error=max_error, measure_ram=measure_ram and not no_ram, inputs=inputs, samples=samples, strip_debug=strip_debug, simplify=simplify, codebook=codebook_bits, codebook_uniform=codebook_uniform, codebook_group_channels=codebook_group_channels)
    with step_status("dedup") as on_step:
        result = run_dedup(model, output, options, in_place=in_place, on_step=on_step)
    emit(dedup_rendering(result), as_json, report_path)
