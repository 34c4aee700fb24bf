"""``sharescan tie``: fine-tune with the tying penalty, share each group, save, export, report."""

from __future__ import annotations

import copy
import itertools
import logging
import math
import os
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sharescan.errors import InputError, QualityError, SharescanError, one_line
from sharescan.outputs import atomic_path, check_output
from sharescan.tying.groups import groups_from_candidates, model_keys, parse_spec
from sharescan.tying.penalty import penalty, relative_gap
from sharescan.tying.result import GroupTrace, TieResult
from sharescan.tying.share import share, unique_parameter_bytes
from sharescan.tying.task import Task, checked_loss, distillation_task, load_task, task_forward, to_device

__all__ = ["TieOptions", "TieResult", "GroupTrace", "tie", "DEFAULT_MAX_DROP"]

logger = logging.getLogger(__name__)

_AUTO_START = 1.0  # first lambda of --lambda auto
_AUTO_STEP = 2.0  # raised by this factor after every epoch that leaves a gap above target
_AUTO_MAX = 1e6
# Metric points (percentage points for a metric in %) the worst model may lose
# from before fine-tuning to the written model before tie refuses to write it:
# more than noise between two training runs of a small model (about 1 point
# on the digits pair), far less than a broken tie (GPT-2's block 1 tied to
# block 0 by distillation ended at -61.55% agreement with the original).
DEFAULT_MAX_DROP = 5.0


@dataclass(frozen=True)
class TieOptions:
    groups: str | None = None  # 'A:features.* = B:features.*' (';' between rules) or a JSON file
    auto: int = 0  # tie this many of analyze's closest candidate pairs instead
    task: str | None = None  # module:function returning a Task
    inputs: str | None = None  # .npz for distillation from the original models (no labels)
    lam: float | None = None  # fixed penalty weight; None: raise it on a schedule ("auto")
    target_gap: float = 1e-3  # auto: stop once every group's relative gap is below this
    epochs: int = 30  # epochs of penalised fine-tuning (the most, with auto)
    finetune_shared: int = 10  # epochs of fine-tuning after hard sharing (task loss only)
    lr: float = 3e-3
    device: str = "cpu"
    arch: str | None = None  # module:factory for state dicts (imports that code)
    trust_pickle: bool = False
    seed: int = 0
    max_drop: float = DEFAULT_MAX_DROP  # metric points the worst model may lose; more: QualityError, nothing written
    force: bool = False  # write even when the drop exceeds max_drop (the result then carries a warning)
    align: bool = False  # permute each later model's hidden units to match model A's before tying (sharescan align)
    split: bool = False  # output is a folder: one checkpoint per model (KEY/model.safetensors, + config.json of a transformers model)

    def __post_init__(self) -> None:
        # Checked here so the Python API refuses what the command line refuses;
        # what needs torch or the files (CUDA present, --task xor --inputs) is checked by tie().
        if not (self.lr > 0 and math.isfinite(self.lr)):
            raise InputError(f"--lr {self.lr}: must be a positive number")
        if not 0 < self.target_gap < 1:
            raise InputError(f"--target-gap {self.target_gap}: must lie strictly between 0 and 1")
        if self.lam is not None and not (self.lam >= 0 and math.isfinite(self.lam)):
            raise InputError(f"--lambda {self.lam}: must be a number >= 0, or auto")
        if not (self.max_drop >= 0 and math.isfinite(self.max_drop)):
            raise InputError(f"--max-drop {self.max_drop}: must be a number of metric points >= 0")
        if self.device != "cpu" and not self.device.startswith("cuda"):
            raise InputError(f"--device {self.device}: use cpu or cuda (cuda:N)")
        for flag, value, least in (("--auto", self.auto, 0), ("--epochs", self.epochs, 1), ("--finetune-shared", self.finetune_shared, 0)):
            if value < least:
                raise InputError(f"{flag} {value}: must be {least} or more")


def _load(paths: list[str], options: TieOptions) -> dict[str, Any]:
    import torch

    from sharescan.torch_module import load_module

    models = {}
    for key, path in zip(model_keys(len(paths)), paths):
        module = load_module(path, options.arch, options.trust_pickle)
        if not isinstance(module, torch.nn.Module) or isinstance(module, torch.jit.ScriptModule):
            raise InputError(f"{path}: tie fine-tunes nn.Modules: give a state dict with --arch, or a transformers model folder (TorchScript cannot be re-tied)")
        models[key] = module.to(options.device)
    return models


def _params(models: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {k: dict(m.named_parameters(remove_duplicate=False)) for k, m in models.items()}


def _metrics(task: Task, models: dict[str, Any]) -> dict[str, float]:
    import torch

    out = {}
    for key, model in models.items():
        model.eval()
        with torch.no_grad():
            out[key] = float(task.metric(key, model))
    return out


def _save(models: dict[str, Any], output: Path, paths: list[str] | None = None, split: bool = False) -> None:
    """Write the tied models so their sharing survives a reload, atomically; with ``split``, one checkpoint per model."""
    import torch

    if split:
        _save_split(models, output, paths or [])
        return
    with atomic_path(output) as tmp:
        if output.suffix == ".safetensors":
            from safetensors.torch import save_model

            # save_model keeps one copy of shared tensors and records the other names.
            save_model(torch.nn.ModuleDict(models).cpu(), str(tmp))
        else:
            # torch.save keeps storage sharing across the whole object.
            torch.save({k: m.state_dict() for k, m in models.items()}, str(tmp))


def _save_split(models: dict[str, Any], output: Path, paths: list[str]) -> None:
    """KEY/model.safetensors for each model (every name stored, as load_state_dict and from_pretrained read it), with
    a transformers model's config.json (and generation_config.json) beside it; written to a temporary folder, then renamed."""
    import shutil

    from safetensors.torch import save_file

    from sharescan.torch_module import hf_folder

    work = Path(tempfile.mkdtemp(prefix=f".{output.name}.", dir=output.parent if str(output.parent) else "."))
    try:
        for k, (key, model) in enumerate(models.items()):
            folder = work / key
            folder.mkdir()
            # A file of its own holds each name: sharing within a model is kept by the single-file output only.
            state = {n: t.detach().cpu().contiguous().clone() for n, t in model.state_dict().items()}
            save_file(state, str(folder / "model.safetensors"), metadata={"format": "pt"})
            source = hf_folder(paths[k]) if k < len(paths) else None
            for name in ("config.json", "generation_config.json"):
                if source is not None and (source / name).is_file():
                    shutil.copyfile(source / name, folder / name)
        if output.is_dir():
            output.rmdir()  # an empty folder, as _check_request allowed
        work.rename(output)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _together(models: dict[str, Any], task: Task, names: list[list[str] | None]) -> Any:
    """Several models as one module, so one ONNX graph holds their shared initializers.

    ``names``: each model's inputs, fed by name (None: one input by position), taken flat in that order.
    """
    import torch

    class Together(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.models = torch.nn.ModuleDict(models)

        def forward(self, *inputs: Any) -> tuple[Any, ...]:
            flat = list(inputs)
            outs = []
            for m, ns in zip(self.models.values(), names):
                x: Any = {n: flat.pop(0) for n in ns} if ns is not None else flat.pop(0)
                outs.append(task_forward(task, m, x))
            return tuple(outs)

    return Together().eval()


def _export(models: dict[str, Any], task: Task, onnx_output: Path) -> float:
    import torch

    from sharescan.onnx_rewrite.dedup import DedupOptions, dedup
    from sharescan.onnx_rewrite.verify import torch_vs_onnxruntime
    from sharescan.torch_module import is_transformers_model

    cpu = {k: m.cpu().eval() for k, m in models.items()}
    per_model: list[list[str] | None] = []
    samples, names = [], []
    for key in cpu:
        x, _ = next(iter(task.batches(key, 0)))
        if isinstance(x, dict):
            per_model.append(list(x))
            samples += [v[:4].cpu() for v in x.values()]
            names += [f"{n}_{key}" for n in x]
        else:
            per_model.append(None)
            samples.append(x[:4].cpu())
            names.append(f"input_{key}")
    together = _together(cpu, task, per_model)
    # transformers' attention masks use ops the TorchScript exporter lacks: the dynamo exporter takes them.
    dynamo = any(is_transformers_model(m) for m in cpu.values())
    with tempfile.TemporaryDirectory(dir=onnx_output.parent) as tmp:
        raw = Path(tmp) / "tied.onnx"
        with torch.no_grad():
            torch.onnx.export(together, tuple(samples), str(raw), input_names=names, output_names=[f"output_{k}" for k in cpu], dynamo=dynamo, opset_version=18 if dynamo else 17)
            expected = together(*samples)
        specs = tuple((n, tuple(s.shape), str(s.numpy().dtype)) for n, s in zip(names, samples))
        dedup(str(raw), str(onnx_output), DedupOptions(measure_ram=False, inputs=specs))
    max_abs, _ = torch_vs_onnxruntime(onnx_output, {n: s.numpy() for n, s in zip(names, samples)}, expected)
    return max_abs


def tie(
    paths: str | os.PathLike[str] | Sequence[str | os.PathLike[str]], output: str | os.PathLike[str], options: TieOptions = TieOptions(),
    onnx_output: str | os.PathLike[str] | None = None, on_epoch: Callable[[int, float, float], None] | None = None,
) -> TieResult:
    """Tie the given models' groups by penalised fine-tuning, share them, save (and export).

    Args:
        paths: one model or a list of them (str or ``os.PathLike``); groups may
            lie within one model or across several.
        output: where the tied models are saved (one torch.save file).
        options: architecture, task, groups and training settings (the command's flags).
        onnx_output: also export the tied models to this ONNX file, deduplicated.
        on_epoch: called after each epoch with (epoch, lambda, largest gap).

    Returns:
        Metrics and bytes before and after; ``modules`` holds the tied
        ``nn.Module``s by model key (left out of ``to_dict()``).

    Raises:
        InputError, TrainingError, QualityError: nothing is written.

    Example:
        >>> import sharescan
        >>> r = sharescan.tie(["a.pt", "b.pt"], "tied.pt", sharescan.TieOptions(
        ...     arch="mypkg.models:build", task="mypkg.train:task", groups="A:features.* = B:features.*"))  # doctest: +SKIP
        >>> r.modules["A"].features[0].weight is r.modules["B"].features[0].weight  # doctest: +SKIP
        True
    """
    import torch

    paths = _as_paths(paths)
    onnx_output = None if onnx_output is None else os.fspath(onnx_output)
    start = time.perf_counter()
    out = Path(output)
    _check_request(paths, out, onnx_output, options)
    torch.manual_seed(options.seed)
    models = _load(paths, options)
    groups = _groups(paths, _params(models), options)
    notes = _align(models, groups) if options.align else []
    task = _task(options, models)
    progress = _Progress(models, groups, options, on_epoch)
    gaps_before = [relative_gap(ms) for ms in progress.members()]
    metric_before = _metrics(task, models)
    params_before, bytes_before = unique_parameter_bytes(models)
    metric_tuned, metric_shared, metric_final = _fine_tune_and_share(models, groups, task, options, progress)
    params_after, bytes_after = unique_parameter_bytes(models)
    traces = tuple(
        GroupTrace(g.label(), gb, tuple(pe), gs, gs > options.target_gap) for g, gb, pe, gs in zip(groups, gaps_before, progress.per_epoch, progress.gaps_at_sharing)
    )
    metric_name = getattr(task, "metric_name", "metric")
    warnings = [_gap_warning(t, options.target_gap) for t in traces if t.above_target]
    over = _check_drop(metric_before, metric_final, metric_name, options, sum(t.above_target for t in traces))
    if over:
        warnings.append(f"{over}; written because of --force")
    for m in models.values():
        m.cpu()
    diff = _write(models, task, out, onnx_output, paths if options.split else None)
    return TieResult(
        tuple(paths), tuple(models), traces, metric_name, metric_before, metric_tuned, metric_shared, metric_final,
        tuple(progress.lambdas), params_before, params_after, bytes_before, bytes_after, str(out), onnx_output, diff, options.device,
        time.perf_counter() - start, len(progress.lambdas), notes=tuple(notes), warnings=tuple(warnings), max_drop=options.max_drop, forced=bool(over), modules=dict(models),
    )


def _align(models: dict[str, Any], groups: list[Any]) -> list[str]:
    """--align: permute every model after A to match A (weight matching); what it did, one line per model and one for the groups."""
    from sharescan.align import align_modules

    def gaps() -> list[float]:
        p = _params(models)
        return [relative_gap([p[k][n] for k, n in g.members]) for g in groups]

    before = gaps()
    notes = []
    first, *rest = models
    for key in rest:
        r = align_modules(models[first], models[key])
        models[key] = r.modules["B"]
        notes.append(
            f"--align: {key}'s units permuted to match {first} in {', '.join(r.sites) or 'no layer'} ({r.units_moved} moved); "
            f"trunk gap {r.trunk_gap_before:.4g} -> {r.trunk_gap_after:.4g}; outputs unchanged (max abs diff {r.max_abs_output_diff:.2g})"
        )
    notes.append("--align: group gaps before -> after alignment: " + ", ".join(f"{g.label()} {b:.4g} -> {a:.4g}" for g, b, a in zip(groups, before, gaps())))
    return notes


def _as_paths(paths: str | os.PathLike[str] | Sequence[str | os.PathLike[str]]) -> list[str]:
    # One path is one model, not a list of one-letter paths.
    return [os.fspath(paths)] if isinstance(paths, (str, os.PathLike)) else [os.fspath(p) for p in paths]


def _gap_warning(t: GroupTrace, target: float) -> str:
    return (
        f"group {t.label}: relative gap {t.gap_at_sharing:.3g} when shared, {t.gap_at_sharing / target:.0f}x --target-gap {target:g}; "
        "sharing moved its members that far: raise --epochs or --lambda, or leave the group out"
    )


def _check_drop(before: dict[str, float], final: dict[str, float], metric_name: str, options: TieOptions, above_target: int) -> str | None:
    """Refuse (QualityError) a worst-model metric drop beyond --max-drop; with --force, describe it instead.

    Called before anything is written. A metric that is NaN counts as beyond any limit.
    """
    drops = {k: before[k] - final[k] for k in before}
    worst = max(drops, key=lambda k: drops[k] if math.isfinite(drops[k]) else math.inf)
    if drops[worst] <= options.max_drop:
        return None
    gaps = f"; {above_target} group(s) were still above --target-gap when shared" if above_target else ""
    what = f"model {worst} lost {drops[worst]:.2f} points of {metric_name} ({before[worst]:.2f} -> {final[worst]:.2f}), more than --max-drop {options.max_drop:g}{gaps}"
    if options.force:
        return what
    raise QualityError(f"{what}; nothing written; tie fewer or closer groups, train longer (--epochs, --finetune-shared), or pass --force to write it anyway")


def _check_request(paths: list[str], out: Path, onnx_output: str | None, options: TieOptions) -> None:
    """What TieOptions cannot check alone: the output paths, CUDA being there, one source of data."""
    import torch

    written = [out] + ([Path(onnx_output)] if onnx_output else [])
    if options.split:
        # A folder of checkpoints: it must be new or empty, and no input may lie inside it.
        if out.exists() and (not out.is_dir() or any(out.iterdir())):
            raise InputError(f"{out}: --split writes a new folder, and this {'folder is not empty' if out.is_dir() else 'is a file'}; choose another -o")
        written = written[1:] if out.is_dir() else written  # an empty folder holds no input
    for path in written:
        check_output(path, paths, option="output path")
    if onnx_output and Path(onnx_output).resolve() == out.resolve():
        raise InputError(f"{onnx_output}: --onnx and -o must be different files")
    if options.device.startswith("cuda") and not torch.cuda.is_available():
        raise InputError(f"--device {options.device}: no CUDA device here; use --device cpu")
    if (options.task is None) == (options.inputs is None):
        raise InputError("give exactly one of --task module:function (labelled data) or --inputs calib.npz (distillation)")


def _groups(paths: list[str], params: dict[str, dict[str, Any]], options: TieOptions) -> list[Any]:
    """The groups to tie: from --groups, or analyze's closest candidate pairs (--auto)."""
    if options.groups:
        return parse_spec(options.groups, params)
    if options.auto:
        from sharescan.analysis import AnalysisOptions, analyze

        result = analyze(paths, AnalysisOptions(candidates=options.auto * 4, trust_pickle=options.trust_pickle))
        return groups_from_candidates(list(result.candidates), paths, params, options.auto)
    raise InputError("give --groups SPEC or --auto N to say what to tie")


def _task(options: TieOptions, models: dict[str, Any]) -> Task:
    """The user's task, or distillation from copies of the models as they are now."""
    if options.task:
        return load_task(options.task)
    teachers = {k: copy.deepcopy(m).eval() for k, m in models.items()}
    return distillation_task(options.inputs or "", teachers, list(models))


class _Progress:
    """Each epoch's lambda and group gaps; raises lambda on the auto schedule."""

    def __init__(self, models: dict[str, Any], groups: list[Any], options: TieOptions, on_epoch: Callable[[int, float, float], None] | None) -> None:
        self.models, self.groups, self.options, self.on_epoch = models, groups, options, on_epoch
        self.lambdas: list[float] = []
        self.per_epoch: list[list[float]] = [[] for _ in groups]
        self.gaps_at_sharing: list[float] = []  # each group's gap right before hard sharing

    def members(self) -> list[list[Any]]:
        """Each group's parameters as they are now (sharing replaces the Parameter objects)."""
        p = _params(self.models)
        return [[p[k][n] for k, n in g.members] for g in self.groups]

    def after_epoch(self, epoch: int, current: float) -> float:
        """Record the epoch; the lambda for the next one."""
        self.lambdas.append(current)
        gaps = [relative_gap(ms) for ms in self.members()]
        for k, g in enumerate(gaps):
            self.per_epoch[k].append(g)
        if self.on_epoch is not None:
            self.on_epoch(epoch, current, max(gaps) if gaps else 0.0)
        if self.options.lam is None and max(gaps) > self.options.target_gap:
            return min(current * _AUTO_STEP, _AUTO_MAX)
        return current


def _fine_tune_and_share(models: dict[str, Any], groups: list[Any], task: Task, options: TieOptions, progress: _Progress) -> tuple[dict[str, float], dict[str, float], dict[str, float]]:
    """Penalised fine-tuning, hard sharing, fine-tuning of the shared models; the metric after each."""
    lam = _AUTO_START if options.lam is None else options.lam
    try:
        _train(models, task, options, options.epochs, lam, progress.members, progress.after_epoch)
        metric_tuned = _metrics(task, models)
        progress.gaps_at_sharing = [relative_gap(ms) for ms in progress.members()]
        for g, gap in zip(groups, progress.gaps_at_sharing):
            if gap > options.target_gap:
                logger.info("sharing %s at relative gap %.3g, above --target-gap %g", g.label(), gap, options.target_gap)
        share(models, groups)
        metric_shared = _metrics(task, models)
        _train(models, task, options, options.finetune_shared, 0.0, progress.members, None)
        return metric_tuned, metric_shared, _metrics(task, models)
    except SharescanError:
        raise
    except Exception as e:  # the task is the user's code: report its failure in one line
        raise InputError(f"fine-tuning failed ({e.__class__.__name__}: {one_line(e)}); check the task and its data; nothing written") from None


def _write(models: dict[str, Any], task: Task, out: Path, onnx_output: str | None, split_from: list[str] | None = None) -> float | None:
    """Export (if asked), then save; a failure leaves neither file. Returns torch vs onnxruntime's max abs diff."""
    diff = None
    if onnx_output:  # first: a failed export must leave no checkpoint behind
        try:
            diff = _export(models, task, Path(onnx_output))
        except SharescanError:
            raise
        except Exception as e:  # the exporter raises many types
            raise InputError(f"{onnx_output}: exporting the tied models failed ({e.__class__.__name__}); nothing written") from None
    try:
        _save(models, out, split_from, split_from is not None)
    except BaseException:
        if onnx_output:
            Path(onnx_output).unlink(missing_ok=True)
        raise
    return diff


def _train(models: dict[str, Any], task: Task, options: TieOptions, epochs: int, lam: float, members: Callable[[], list[list[Any]]], after_epoch: Callable[[int, float], float] | None) -> None:
    """Adam on the task loss; the penalty's gradient as a plain step beside it.

    The gradient of lam * sum ||w - mean||^2 with respect to a member is
    2 lam (w - mean). Applied through Adam, its per-parameter scaling would
    make any lam > 0 drag weights together at the full learning rate (Adam
    ignores a gradient's size); applied as a plain SGD step after Adam's, as
    AdamW does for weight decay, lam keeps its meaning: each step moves a
    member 2 lam lr of the way to the group mean.
    """
    import torch

    if epochs <= 0:
        return
    unique = {id(p): p for m in models.values() for p in m.parameters()}
    optimizer = torch.optim.Adam(list(unique.values()), lr=options.lr)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, epochs)
    first_loss = None
    for epoch in range(epochs):
        for m in models.values():
            m.train()
        streams = [_labelled(key, task.batches(key, epoch)) for key in models]
        for step in itertools.zip_longest(*streams):
            loss = torch.zeros((), device=options.device)
            for item in step:
                if item is None:
                    continue
                key, (x, y) = item
                loss = loss + task.loss(task_forward(task, models[key], to_device(x, options.device)), y.to(options.device))
            value = float(loss.detach()) + (lam * float(penalty(members()).detach()) if lam else 0.0)
            first_loss = checked_loss(value, first_loss, epoch, lam, "--lambda or --lr")
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            if lam:
                pull = min(1.0, 2.0 * lam * optimizer.param_groups[0]["lr"])
                with torch.no_grad():
                    for ms in members():
                        mean = torch.stack(ms).mean(0)
                        for w in ms:
                            w.sub_(pull * (w - mean))
        schedule.step()
        if after_epoch is not None:
            lam = after_epoch(epoch, lam)


def _labelled(key: str, batches: Any) -> Any:
    """(key, batch) pairs; a function, so each stream keeps its own key (a generator
    expression in a comprehension would read the comprehension's last key)."""
    for batch in batches:
        yield key, batch
