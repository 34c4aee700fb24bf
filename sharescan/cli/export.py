"""``sharescan export``: a PyTorch model to a deduplicated ONNX file, checked against torch."""

from __future__ import annotations

from pathlib import Path

import click

from sharescan.cli._options import arch_opt, json_opt, output_opt, ram_opts, report_opt, rewrite_opts, trust_code_opt
from sharescan.cli._output import check_report_target, dedup_rendering, emit
from sharescan.cli._progress import step_status

__all__ = ["export"]


@click.command(epilog="""\b
Examples:
  sharescan export model_script.pt -o model.onnx --input x:1x64:float32
  sharescan export model.pt2 -o model.onnx --inputs sample.npz
  sharescan export state_dict.pt --arch mypkg.models:build -o model.onnx --input input_ids:1x128:int64
  sharescan export lm.pt --arch mypkg.models:build -o lm.onnx --input input_ids:1x128:int64 --strip-debug --simplify
  sharescan export ./gpt2-folder -o gpt2.onnx --input input_ids:1x16:int64 --input attention_mask:1x16:int64
  sharescan export org/name -o model.onnx --inputs sample.npz
\b
A transformers model folder, a models--org--name cache folder or an org/name repo id in the local cache
is built by transformers (pip install 'sharescan[hf]') and exported with the dynamo exporter. Inputs go
by name when every name is an argument of the model's forward (input_ids, attention_mask), else in order.
\b
Exit codes: 0 written and verified; 2 unusable input, options or a failed verification (nothing written).""")
@click.argument("model", metavar="MODEL")
@output_opt("Where to write the deduplicated ONNX model.")
@arch_opt("module:factory that builds the nn.Module a state dict belongs to (imports that code).")
@click.option("--input", "input_specs", multiple=True, help="Example input as name:shape:dtype, one per model input: by name when the model's forward takes that name, else in order.")
@click.option("--inputs", "inputs_npz", type=click.Path(exists=True, dir_okay=False), help="Example inputs from an .npz file: by name when its keys are the model's input names, else in order.")
@click.option("--opset", default=17, show_default=True, type=int, help="ONNX opset for the exporter (a .pt2 program is exported at 18 or later).")
@click.option("--dynamo", is_flag=True, help="Use torch.onnx.export(dynamo=True) instead of the TorchScript exporter.")
@click.option("--no-constant-folding", is_flag=True, help="Export without constant folding.")
@trust_code_opt("Allow loading what runs code from the file: TorchScript, a .pt2 program, a pickled whole nn.Module. Only for files you trust.")
@rewrite_opts
@ram_opts
@json_opt
@report_opt
def export(model: str, output: str, arch: str | None, input_specs: tuple[str, ...], inputs_npz: str | None, opset: int, dynamo: bool, no_constant_folding: bool, trust_pickle: bool, tol: float | None, rows: bool, strip_debug: bool, simplify: bool, measure_ram: bool, no_ram: bool, as_json: bool, report_path: Path | None) -> None:
    """Export a PyTorch or transformers MODEL to ONNX, deduplicate it, and check onnxruntime against torch."""
    check_report_target(report_path, model, output)
    from sharescan.onnx_rewrite.dedup import DedupOptions
    from sharescan.onnx_rewrite.export import ExportOptions, export as run_export
    from sharescan.onnx_rewrite.verify import parse_input_spec
    from sharescan.sources.torch_source import needs_torch

    inputs = tuple(parse_input_spec(s) for s in input_specs)
    dedup_options = DedupOptions(tol=tol, rows=rows, measure_ram=measure_ram and not no_ram, inputs=inputs, strip_debug=strip_debug, simplify=simplify)
    options = ExportOptions(arch=arch, inputs_npz=inputs_npz, opset=opset, dynamo=dynamo, constant_folding=not no_constant_folding, trust_pickle=trust_pickle, dedup=dedup_options)
    with needs_torch("export"), step_status("export") as on_step:
        result = run_export(model, output, options, on_step=on_step)
    note = f"torch vs onnxruntime on the written file: max abs {result.torch_vs_onnxruntime_max_abs:.3g}, relative {result.torch_vs_onnxruntime_rel:.3g}"
    emit(dedup_rendering(result.dedup, note, result.to_dict()), as_json, report_path)
