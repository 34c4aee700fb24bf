"""``sharescan tie``: pull near-equal parameters together by penalised fine-tuning, then share them."""

from __future__ import annotations

from pathlib import Path

import click

from sharescan.cli._options import arch_opt, json_opt, models_arg, output_opt, report_opt, trust_code_opt
from sharescan.cli._output import check_report_target, emit, tie_rendering
from sharescan.errors import InputError
from sharescan.tying.run import DEFAULT_MAX_DROP

__all__ = ["tie"]


@click.command(epilog="""\b
Examples:
  sharescan tie a.pt b.pt --arch mypkg.models:build --task mypkg.train:task \\
      --groups "A:features.* = B:features.*" -o tied.pt --onnx tied.onnx
  sharescan tie model.pt --arch mypkg.models:build --inputs calib.npz \\
      --groups "A:blocks.1.* = A:blocks.0.*" --lambda 100 -o albert_style.pt
  sharescan tie a.pt b.pt --arch mypkg.models:build --task mypkg.train:task --auto 4 -o tied.safetensors
  sharescan tie ./gpt2-folder org/name --inputs calib.npz \\
      --groups "A:transformer.h.1.* = A:transformer.h.0.*" --split -o tied/
\b
A transformers model folder (config.json + weights), a models--org--name cache folder or an org/name
repo id in the local cache is built by transformers, without --arch (pip install 'sharescan[hf]').
--inputs calib.npz: arrays named by model input (input_ids, attention_mask), fed by name to every
model; or one array per model key (A, B, ...) or a single array, fed by position.
\b
Models are named A, B, ... in the order given. Exit codes: 0 written; 1 the worst model's metric
fell more than --max-drop points (nothing written; --force writes it); 2 unusable input or options,
a loss that turned NaN or diverged (nothing written).""")
@models_arg
@output_opt("Tied checkpoint: .pt (torch.save, sharing kept) or .safetensors (save_model).")
@click.option("--groups", "groups_spec", help="What to tie: 'A:pattern = B:pattern' rules separated by ';', or a JSON file {\"groups\": [[\"A:name\", \"B:name\"], ...]}.")
@click.option("--auto", default=0, type=click.IntRange(min=0), help="Instead of --groups: tie the first N candidate pairs analyze lists (relative distance <= 0.5, most bytes saved per distance first).")
@click.option("--task", help="module:function returning a task (batches, loss, metric) over labelled data.")
@click.option("--inputs", "inputs_npz", type=click.Path(exists=True, dir_okay=False), help="Instead of --task: distil from the original models on these inputs (.npz): arrays named by model input (input_ids, attention_mask) for all models, or one array per model key.")
@click.option("--lambda", "lam", default="auto", show_default=True, help="Penalty weight, or 'auto' (raised each epoch until every group's relative gap is below --target-gap).")
@click.option("--target-gap", default=1e-3, show_default=True, type=float, help="Relative gap each group should reach before sharing; a group still above it is shared with a warning.")
@click.option("--epochs", default=30, show_default=True, type=click.IntRange(min=1), help="Epochs of penalised fine-tuning (the most, with --lambda auto).")
@click.option("--finetune-shared", default=10, show_default=True, type=click.IntRange(min=0), help="Epochs of fine-tuning after hard sharing.")
@click.option("--lr", default=3e-3, show_default=True, type=float)
@click.option("--max-drop", default=DEFAULT_MAX_DROP, show_default=True, type=float, help="Metric points the worst model may lose (before -> written model); beyond it exit 1 and write nothing.")
@click.option("--force", is_flag=True, help="Write the tied models even when the metric fell more than --max-drop (with a warning).")
@click.option("--align", "align_first", is_flag=True, help="Before tying, permute each later model's hidden units to match model A's (as sharescan align does); the report gives the gaps before and after.")
@click.option("--split", is_flag=True, help="-o is a new folder: one checkpoint per model, KEY/model.safetensors (+ config.json for a transformers model), read by load_state_dict or from_pretrained.")
@arch_opt("module:factory building each model from its state dict (imports that code).")
@trust_code_opt("Allow loading what runs code from the file: TorchScript, a .pt2 program, pickled whole nn.Modules. Only for files you trust.")
@click.option("--onnx", "onnx_output", type=click.Path(dir_okay=False), help="Also export the tied models as one ONNX graph with shared initializers.")
@click.option("--device", default="cpu", show_default=True, help="cpu or cuda.")
@json_opt
@report_opt
def tie(models: tuple[str, ...], output: str, groups_spec: str | None, auto: int, task: str | None, inputs_npz: str | None, lam: str, target_gap: float, epochs: int, finetune_shared: int, lr: float, max_drop: float, force: bool, align_first: bool, split: bool, arch: str | None, trust_pickle: bool, onnx_output: str | None, device: str, as_json: bool, report_path: Path | None) -> None:
    """Pull near-equal parameters together by penalised fine-tuning, then share them."""
    check_report_target(report_path, *models, output, onnx_output)
    try:
        lam_value = None if lam == "auto" else float(lam)
    except ValueError:
        raise InputError(f"--lambda {lam!r}: a number >= 0, or auto") from None

    from sharescan.cli._progress import epoch_bar
    from sharescan.sources.torch_source import needs_torch
    from sharescan.tying.run import TieOptions, tie as run_tie

    options = TieOptions(groups=groups_spec, auto=auto, task=task, inputs=inputs_npz, lam=lam_value, target_gap=target_gap, epochs=epochs, finetune_shared=finetune_shared, lr=lr, max_drop=max_drop, force=force, align=align_first, split=split, device=device, arch=arch, trust_pickle=trust_pickle)
    with needs_torch("tie"), epoch_bar(epochs) as on_epoch:
        result = run_tie(list(models), output, options, onnx_output, on_epoch)
    emit(tie_rendering(result), as_json, report_path)
