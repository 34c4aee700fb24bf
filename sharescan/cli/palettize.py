"""``sharescan palettize``: a PyTorch model's weights stored as codebook indices, optionally soft-shared by fine-tuning first."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click

from sharescan.cli._options import arch_opt, json_opt, output_opt, report_opt, trust_code_opt
from sharescan.cli._output import Rendering, check_report_target, emit

__all__ = ["palettize"]


@click.command(epilog="""\b
Examples:
  sharescan palettize model.pt --arch mypkg.models:build --bits 4 -o small.pt
  sharescan palettize model.pt --arch mypkg.models:build --bits 3 --task mypkg.train:task -o small.pt --onnx small.onnx
  sharescan palettize model.pt --arch mypkg.models:build --bits 3 --inputs calib.npz --group-channels 16 -o small.safetensors
\b
The checkpoint stores each palettized weight NAME as NAME.__indices__ (uint8) and NAME.__codebook__;
rebuild it as codebook[indices] (sharescan.codebook.palettize.dense_state_dict does it for a state dict).
Exit codes: 0 written; 2 unusable input or options, a loss that diverged, or an ONNX model beyond
--max-error (nothing written).""")
@click.argument("model", metavar="MODEL")
@output_opt("Palettized checkpoint: .pt (torch.save) or .safetensors.")
@click.option("--bits", type=int, required=True, help="Index width, 1-8: a codebook of 2^BITS values per weight tensor (or group).")
@click.option("--group-channels", type=int, default=None, metavar="N", help="One codebook per N output channels (axis 0) instead of one per tensor.")
@click.option("--max-error", type=float, default=1e-3, show_default=True, help="Largest relative output error of the ONNX model against torch; beyond it nothing is written.")
@click.option("--task", help="module:function returning a task (batches, loss, metric; model key A): fine-tune with the soft weight-sharing penalty first.")
@click.option("--inputs", "inputs_npz", type=click.Path(exists=True, dir_okay=False), help="Instead of --task: fine-tune by distillation from the original model on these inputs (.npz).")
@click.option("--epochs", default=20, show_default=True, type=click.IntRange(min=0), help="Epochs of soft-sharing fine-tuning (with --task or --inputs); 0: post-training codebooks only.")
@click.option("--lr", default=3e-3, show_default=True, type=float)
@arch_opt("module:factory building the model its state dict belongs to (imports that code).")
@trust_code_opt("Allow loading a pickled whole nn.Module. Only for files you trust.")
@click.option("--onnx", "onnx_output", type=click.Path(dir_okay=False), help="Also export an ONNX model, each palettized weight rebuilt by Gather over its codebook, verified with onnxruntime.")
@json_opt
@report_opt
def palettize(model: str, output: str, bits: int, group_channels: int | None, max_error: float, task: str | None, inputs_npz: str | None, epochs: int, lr: float, arch: str | None, trust_pickle: bool, onnx_output: str | None, as_json: bool, report_path: Path | None) -> None:
    """Store MODEL's float weights as 2^BITS-entry codebooks (soft weight-sharing fine-tuning first with --task or --inputs)."""
    check_report_target(report_path, model, output, onnx_output)
    from sharescan.cli._progress import epoch_bar
    from sharescan.codebook.palettize import PalettizeOptions, palettize as run_palettize
    from sharescan.sources.torch_source import needs_torch

    options = PalettizeOptions(bits=bits, group_channels=group_channels, max_error=max_error, task=task, inputs=inputs_npz, epochs=epochs, lr=lr, arch=arch, trust_pickle=trust_pickle)
    with needs_torch("palettize"), epoch_bar(epochs if (task or inputs_npz) else 0) as on_epoch:
        result = run_palettize(model, output, options, onnx_output, on_epoch)
    emit(_rendering(result), as_json, report_path)


def _lines(r: Any) -> list[str]:
    """The report, one line each (the terminal and Markdown print the same lines)."""
    def m(v: float | None) -> str:
        return "-" if v is None else f"{v:.2f}"

    lines = [f"{r.input} -> {r.output}: {len(r.tensors)} weight tensor(s) as {r.bits}-bit codebook indices"]
    if r.metric_name:
        lines.append(f"{r.metric_name}: before {m(r.metric_before)}, post-training codebooks {m(r.metric_post_training)}, soft-sharing fine-tuning + codebooks {m(r.metric_fine_tuned)}")
    if r.lambdas:
        lines.append(f"fine-tuning: {len(r.lambdas)} epochs, lambda {r.lambdas[0]:g} -> {r.lambdas[-1]:g}, weights' relative distance to their centers {r.gaps[-1]:.3g} when snapped")
    lines.append(f"bytes: {r.bytes_before:,} -> {r.bytes_after:,} ({r.bytes_before / max(r.bytes_after, 1):.2f}x; indices at {r.bits} bits + codebooks)")
    if r.onnx_output:
        lines.append(f"ONNX: {r.onnx_output}, onnxruntime vs torch relative error {r.onnx_rel_error:.2g}")
    lines += [f"left as it is: {s}" for s in r.skipped]
    return lines


def _rendering(result: Any) -> Rendering:
    def terminal(console: Any) -> None:
        for line in _lines(result):
            console.print(line, highlight=False, markup=False)

    return Rendering(
        lambda: json.dumps(result.to_dict(), indent=2) + "\n",
        terminal,
        lambda: "# sharescan palettize\n\n" + "\n".join(f"- {line}" for line in _lines(result)) + "\n",
        result.warnings,
        lambda: _lines(result)[0],
    )
