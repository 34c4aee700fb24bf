"""``sharescan align``: permute B's hidden units to match A (weight matching), check B is unchanged, save it."""

from __future__ import annotations

from pathlib import Path

import click

from sharescan.cli._options import arch_opt, json_opt, report_opt, trust_code_opt
from sharescan.cli._output import Rendering, check_report_target, emit
from sharescan.errors import InputError

__all__ = ["align"]


@click.command(epilog="""\b
Examples:
  sharescan align a.pt b.pt --arch mypkg.models:build -o b_aligned.pt
  sharescan align a.pt b.pt --arch mypkg.models:build -o b_aligned.safetensors --json
  sharescan align cnn_a.pt cnn_b.pt --arch mypkg.models:cnn --input-shape 3,32,32 -o cnn_b_aligned.pt
\b
The aligned B is a state dict computing what B computes (checked on random inputs). Linear and
Conv2d chains through activations, BatchNorm, dropout, pooling and flatten are followed; anything
else (residual adds, attention) is refused, naming the layer. Exit codes: 0 written; 2 unusable
input, different architectures, or a structure align does not follow (nothing written).""")
@click.argument("model_a", metavar="A")
@click.argument("model_b", metavar="B")
@click.option("-o", "--output", type=click.Path(dir_okay=False), help="The aligned B: .pt (torch.save state dict) or .safetensors. Without it, only report.")
@arch_opt("module:factory building each model from its state dict (imports that code).")
@trust_code_opt("Allow loading pickled whole nn.Modules, which runs code from the file. Only for files you trust.")
@click.option("--starts", default=4, show_default=True, type=click.IntRange(min=1), help="Coordinate-descent starts (the first from B as given, the rest random); the closest wins.")
@click.option("--one-pass", is_flag=True, help="A single alternating pass over the layers instead (for comparison).")
@click.option("--input-shape", help="One sample's shape for the output check, e.g. 1,28,28 (default: inferred from the first layer).")
@json_opt
@report_opt
def align(model_a: str, model_b: str, output: str | None, arch: str | None, trust_pickle: bool, starts: int, one_pass: bool, input_shape: str | None, as_json: bool, report_path: Path | None) -> None:
    """Permute model B's hidden units so its weights come closest to model A's (weight matching)."""
    check_report_target(report_path, model_a, model_b, output)
    try:
        shape = None if input_shape is None else tuple(int(d) for d in input_shape.split(","))
    except ValueError:
        raise InputError(f"--input-shape {input_shape!r}: comma-separated dimensions of one sample, e.g. 1,28,28") from None

    from sharescan.align import AlignOptions, align as run_align
    from sharescan.align.report import align_summary, render_align_markdown, render_align_terminal
    from sharescan.cli._output import _dumps
    from sharescan.sources.torch_source import needs_torch

    with needs_torch("align"):
        result = run_align(model_a, model_b, output, AlignOptions(arch=arch, trust_pickle=trust_pickle, starts=starts, one_pass=one_pass, input_shape=shape))
    emit(Rendering(lambda: _dumps(result.to_dict()), lambda console: render_align_terminal(result, console), lambda: render_align_markdown(result), summary=lambda: align_summary(result)[2]), as_json, report_path)
