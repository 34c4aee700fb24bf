"""``sharescan palettize``: a PyTorch model's weights as codebook indices, optionally fine-tuned with soft weight-sharing.

Post-training, each float weight tensor (2 dims or more: matrices and
kernels; biases and norm scales stay float, few bytes for much effect) gets a
codebook of 2^bits centers (1-D k-means, ``sharescan.codebook.kmeans``), per
tensor or per group of output channels, and each weight is snapped to its
nearest center. With a task (or distillation inputs) the model is first
fine-tuned with the soft weight-sharing penalty (Nowlan & Hinton 1992;
Ullrich et al. 2017) ``lambda * sum_w min_k (w - c_k)^2``, the centers
learned beside the weights, then snapped.

The checkpoint stores each palettized weight ``name`` as ``name.__indices__``
(uint8, the weight's shape) and ``name.__codebook__`` (the weight's dtype;
shape ``(k,)``, or ``(groups, k)`` with ``--group-channels N``: a weight of R
output channels has ceil(R / N) groups of ``per = ceil(R / groups)`` channels,
the last possibly fewer); the rebuild is ``codebook[indices]`` (per group:
``codebook[channel // per, indices]``), done by :func:`dense_state_dict`.
Every other entry is stored as it is.
"""

from __future__ import annotations

import copy
import logging
import math
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from sharescan.codebook.analysis import check_bits, group_rows, palettized_bytes
from sharescan.codebook.kmeans import histogram, kmeans
from sharescan.errors import InputError, SharescanError, VerificationError, one_line
from sharescan.outputs import atomic_path, check_output

__all__ = ["PalettizeOptions", "PalettizeResult", "palettize", "soft_share_penalty", "dense_state_dict", "INDICES", "CODEBOOK"]

logger = logging.getLogger(__name__)

INDICES = ".__indices__"
CODEBOOK = ".__codebook__"
_AUTO_START = 1.0  # first lambda, as tie's --lambda auto
_AUTO_STEP = 2.0  # raised by this factor after every epoch that ends with weights far from their centers
_AUTO_MAX = 1e6


@dataclass(frozen=True)
class PalettizeOptions:
    bits: int = 4  # 2^bits centers per codebook (1-8: an index fits a byte)
    group_channels: int | None = None  # one codebook per this many output channels (axis 0); None: per tensor
    max_error: float = 1e-3  # largest relative output error of the ONNX model against torch
    task: str | None = None  # module:function returning a Task (model key "A")
    inputs: str | None = None  # .npz for distillation from the original model
    epochs: int = 20  # epochs of soft-sharing fine-tuning (with task or inputs); 0: post-training only
    target_gap: float = 1e-3  # lambda is raised while sqrt(sum (w - nearest c)^2 / sum w^2) is above this
    lr: float = 3e-3
    arch: str | None = None
    trust_pickle: bool = False
    seed: int = 0

    def __post_init__(self) -> None:
        check_bits(self.bits, "--bits")
        if self.group_channels is not None and self.group_channels < 1:
            raise InputError(f"--group-channels {self.group_channels}: must be a whole number of channels >= 1")
        if not 0 < self.max_error < 1:
            raise InputError(f"--max-error {self.max_error}: a relative error must lie strictly between 0 and 1")
        if self.task is not None and self.inputs is not None:
            raise InputError("give at most one of --task module:function or --inputs calib.npz")
        if self.epochs < 0:
            raise InputError(f"--epochs {self.epochs}: must be 0 or more")
        if not (self.lr > 0 and math.isfinite(self.lr)):
            raise InputError(f"--lr {self.lr}: must be a positive number")
        if not 0 < self.target_gap < 1:
            raise InputError(f"--target-gap {self.target_gap}: must lie strictly between 0 and 1")


@dataclass(frozen=True)
class PalettizeResult:
    input: str
    output: str
    onnx_output: str | None
    bits: int
    tensors: tuple[str, ...]  # the palettized weights
    skipped: tuple[str, ...]  # 'name: why' for float weights left as they are and integer tensors
    metric_name: str | None
    metric_before: float | None
    metric_post_training: float | None  # snapped to the k-means codebooks, no fine-tuning
    metric_fine_tuned: float | None  # soft-sharing fine-tuning, then snapped (the model written)
    lambdas: tuple[float, ...]  # lambda in each fine-tuning epoch
    gaps: tuple[float, ...]  # relative distance of the weights to their nearest centers after each epoch
    bytes_before: int  # every tensor of the state dict
    bytes_after: int  # palettized weights as indices packed at `bits` + codebooks; the rest as stored
    onnx_rel_error: float | None
    seconds: float
    warnings: tuple[str, ...] = ()
    module: Any = field(default=None, compare=False, repr=False)  # the snapped nn.Module

    def to_dict(self) -> dict[str, Any]:
        d = {k: getattr(self, k) for k in self.__dataclass_fields__ if k != "module"}
        d = {k: list(v) if isinstance(v, tuple) else v for k, v in d.items()}
        return {"schema_version": 1, **d}


def soft_share_penalty(weights: list[Any], centers: list[Any]) -> Any:
    """sum over tensors, sum over w of min_k (w - c_k)^2: each weight's squared distance to its nearest center.

    ``centers[i]``: shape (k,) for a whole tensor, or (groups, k) with one row per group of ``weights[i]``'s rows.
    """
    import torch

    total = torch.zeros(())
    for w, c in zip(weights, centers):
        total = total.to(w.device) + _nearest_sq(w, c).sum()
    return total


def _parts(w: Any, c: Any) -> list[tuple[slice, Any]]:
    """(rows of w, their codebook) for each group; all rows and c for a per-tensor codebook."""
    if c.dim() == 1:
        return [(slice(None), c)]
    return [(rows, c[g]) for g, rows in enumerate(group_rows(w.shape[0], c.shape[0]))]


def _nearest(w: Any, c: Any) -> tuple[Any, Any]:
    """(index of the nearest center, its value) for every weight, shaped as w; the value keeps c's gradient.

    A binary search over the midpoints of the sorted centers: memory grows
    with the weights, not weights x centers (an embedding of 11.7M values
    against 64 centers would take 3 GB as a difference table).
    """
    import torch

    idx, value = torch.empty(w.shape, dtype=torch.long, device=w.device), torch.empty_like(w)
    for rows, book in _parts(w, c):
        part = w[rows].detach()
        order = torch.argsort(book.detach())
        ranked = book[order]
        pos = torch.searchsorted((ranked[1:] + ranked[:-1]).detach() / 2, part.reshape(-1).contiguous())
        idx[rows] = order[pos].reshape(part.shape)
        value[rows] = ranked[pos].reshape(part.shape)
    return idx, value


def _nearest_sq(w: Any, c: Any) -> Any:
    return (w - _nearest(w, c)[1]) ** 2


def dense_state_dict(state: dict[str, Any]) -> dict[str, Any]:
    """A palettized checkpoint's state dict with every ``name.__indices__`` + ``name.__codebook__`` rebuilt as ``name``."""
    import torch

    out = {}
    for key, value in state.items():
        if key.endswith(CODEBOOK):
            continue
        if key.endswith(INDICES):
            name = key[: -len(INDICES)]
            book, idx = state[name + CODEBOOK], value.long()
            if book.dim() == 1:
                out[name] = book[idx]
            else:
                per = -(-idx.shape[0] // book.shape[0])  # channels per group (the last group may have fewer)
                group = (torch.arange(idx.shape[0]) // per).reshape(-1, *([1] * (idx.dim() - 1))).expand_as(idx)
                out[name] = book[group, idx]
            continue
        out[key] = value
    return out


def _targets(module: Any) -> tuple[dict[str, Any], list[str]]:
    """The parameters to palettize (float, 2 dims or more, finite) and 'name: why' for the tensors left out."""
    params, skipped = {}, []
    for name, t in module.state_dict().items():
        if not t.is_floating_point():
            skipped.append(f"{name}: {t.dtype} (integer tensors are not clustered)")
        elif not bool(t.isfinite().all()):
            skipped.append(f"{name}: holds NaN or Inf, not clustered")
        elif t.dim() < 2:
            continue  # biases and norm scales stay float
        else:
            params[name] = t
    return params, skipped


def _initial_centers(w: Any, bits: int, group_channels: int | None) -> Any:
    """k-means centers: (k,) for the tensor, or (groups, k), from sharescan.codebook.kmeans (padded by repeats when a group has fewer distinct values).

    With N channels per group a tensor of R rows gets ceil(R / N) groups of
    ceil(R / groups) <= N rows each, the last possibly fewer: the rule
    :func:`dense_state_dict` rebuilds by, so no group size is stored.
    """
    import torch

    k = 2**bits
    x = w.detach().cpu().double().numpy()
    chunks = [x] if group_channels is None else [x[rows] for rows in group_rows(x.shape[0], -(-x.shape[0] // group_channels))]
    rows = []
    for chunk in chunks:
        c = kmeans(histogram(chunk.reshape(-1)), k)
        rows.append(np.concatenate([c, np.repeat(c[-1:], k - c.size)]))
    book = torch.as_tensor(np.stack(rows), dtype=w.dtype, device=w.device)
    return book[0] if group_channels is None else book


def _snap(module: Any, names: list[str], centers: list[Any]) -> dict[str, tuple[Any, Any]]:
    """Replace each weight by its nearest center, in place; (indices, codebook) per name."""
    import torch

    stored = {}
    params = dict(module.named_parameters())
    with torch.no_grad():
        for name, c in zip(names, centers):
            w = params[name]
            idx, value = _nearest(w, c)
            w.copy_(value)
            stored[name] = (idx.to(torch.uint8).cpu(), c.detach().clone().cpu())
    return stored


def _bytes(state: dict[str, Any], stored: dict[str, tuple[Any, Any]], bits: int) -> tuple[int, int]:
    before = sum(t.numel() * t.element_size() for t in state.values())
    after = 0
    for name, t in state.items():
        if name in stored:
            idx, book = stored[name]
            after += palettized_bytes(idx.numel(), bits, book.numel(), book.element_size())
        else:
            after += t.numel() * t.element_size()
    return before, after


def _metric(task: Any, model: Any) -> float:
    import torch

    model.eval()
    with torch.no_grad():
        return float(task.metric("A", model))


def _fine_tune(model: Any, task: Any, names: list[str], centers: list[Any], options: PalettizeOptions, on_epoch: Callable[[int, float, float], None] | None) -> tuple[list[float], list[float]]:
    """Adam on the task loss; the soft-sharing penalty as a plain step beside it (as tie applies its penalty).

    Through Adam any lambda > 0 would pull at the full learning rate; as a plain
    step each weight moves ``min(1, 2 lambda lr)`` of the way to its nearest
    center. The centers are parameters too: given the assignment, the penalty
    is least at the mean of each center's weights, and each step moves a
    center that same fraction of the way there. lambda starts at 1 and doubles
    after every epoch that ends with the weights' relative distance to their
    centers above ``target_gap``.
    """
    import torch

    from sharescan.tying.task import checked_loss, task_forward

    params = dict(model.named_parameters())
    weights = [params[n] for n in names]
    optimizer = torch.optim.Adam(model.parameters(), lr=options.lr)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, options.epochs)
    lam, lambdas, gaps, first = _AUTO_START, [], [], None
    for epoch in range(options.epochs):
        model.train()
        for x, y in task.batches("A", epoch):
            loss = task.loss(task_forward(task, model, x), y)
            first = checked_loss(float(loss.detach()), first, epoch, lam, "--lr")
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            pull = min(1.0, 2.0 * lam * optimizer.param_groups[0]["lr"])
            with torch.no_grad():
                for w, c in zip(weights, centers):
                    idx, nearest = _nearest(w, c)
                    w.sub_(pull * (w - nearest))
                    _move_centers(w, c, idx, pull)
        schedule.step()
        lambdas.append(lam)
        gaps.append(_gap(weights, centers))
        if on_epoch is not None:
            on_epoch(epoch, lam, gaps[-1])
        if gaps[-1] > options.target_gap:
            lam = min(lam * _AUTO_STEP, _AUTO_MAX)
    return lambdas, gaps


def _move_centers(w: Any, c: Any, idx: Any, pull: float) -> None:
    """Each center ``pull`` of the way to the mean of the weights nearest it (an unused center stays)."""
    import torch

    for rows, book in _parts(w, c):
        flat, ids = w[rows].reshape(-1), idx[rows].reshape(-1)
        total = torch.zeros_like(book).scatter_add_(0, ids, flat)
        count = torch.zeros_like(book).scatter_add_(0, ids, torch.ones_like(flat))
        target = torch.where(count > 0, total / count.clamp_min(1), book)
        book.add_(pull * (target - book))


def _gap(weights: list[Any], centers: list[Any]) -> float:
    import torch

    with torch.no_grad():
        spread = float(soft_share_penalty(weights, centers))
        size = float(sum((w.double() ** 2).sum() for w in weights))
    return math.sqrt(spread / size) if size > 0 else 0.0


def _export(model: Any, sample: Any, onnx_output: Path, bits: int, max_error: float) -> float:
    """The snapped model as ONNX, each palettized weight rebuilt by Gather over its codebook; verified against torch.

    Indices are UINT4 (opset 21, converted from the exporter's 17) at 4 bits
    or fewer where the converter can, else UINT8.
    """
    import onnx
    import torch

    from sharescan.codebook.onnx_form import codebook_form, default_opset, with_uint4_opset
    from sharescan.onnx_rewrite.verify import torch_vs_onnxruntime

    model = model.cpu().eval()
    with atomic_path(onnx_output) as tmp:
        with torch.no_grad():
            torch.onnx.export(model, (sample,), str(tmp), input_names=["input"], output_names=["output"], dynamo=False, opset_version=17, dynamic_axes={"input": {0: "batch"}, "output": {0: "batch"}})
            expected = model(sample)
        m = onnx.load(str(tmp))
        if bits <= 4:  # the exporter writes opset 17; Cast reads UINT4 indices from opset 21
            m = with_uint4_opset(m)
        graph, opset = m.graph, default_opset(m)
        front = []
        for init in list(graph.initializer):
            dims = list(init.dims)
            if len(dims) < 2:
                continue
            distinct = np.unique(onnx.numpy_helper.to_array(init)).size
            # After snapping a tensor holds at most its codebooks' values: k-means on them is exact at this width.
            width = max(bits, math.ceil(math.log2(max(distinct, 2))))
            if width > 8:
                continue
            rewrite = codebook_form(graph, init, width, opset)
            if rewrite is not None:
                graph.initializer.remove(init)
                front.extend(rewrite.nodes)
        for node in reversed(front):
            graph.node.insert(0, node)
        onnx.checker.check_model(m)
        onnx.save_model(m, str(tmp))
        _, rel = torch_vs_onnxruntime(tmp, {"input": sample.numpy()}, expected)
        if not rel <= max_error:
            raise VerificationError(f"{onnx_output}: onnxruntime's output differs from torch's by {rel:.3g} (relative), above --max-error {max_error:g}; nothing written")
    return rel


def palettize(path: str | os.PathLike[str], output: str | os.PathLike[str], options: PalettizeOptions = PalettizeOptions(), onnx_output: str | os.PathLike[str] | None = None,
              on_epoch: Callable[[int, float, float], None] | None = None) -> PalettizeResult:
    """Store ``path``'s float weights as ``2^bits``-entry codebooks (fine-tuned first with a task or inputs), save, export.

    Raises:
        InputError, TrainingError, VerificationError: nothing is written.
    """
    import torch

    from sharescan.torch_module import load_module
    from sharescan.tying.task import distillation_task, load_task

    start = time.perf_counter()
    path, out = os.fspath(path), Path(output)
    onnx_out = None if onnx_output is None else Path(onnx_output)
    if out.suffix not in (".pt", ".safetensors"):
        raise InputError(f"{out}: write the palettized checkpoint as .pt or .safetensors")
    for p in [out] + ([onnx_out] if onnx_out else []):
        check_output(p, [path], option="output path")
    if onnx_out is not None and onnx_out.resolve() == out.resolve():
        raise InputError(f"{onnx_out}: --onnx and -o must be different files")
    if onnx_out is not None and options.task is None and options.inputs is None:
        raise InputError("--onnx needs sample inputs to verify the model: give --task module:function or --inputs calib.npz")
    torch.manual_seed(options.seed)
    model = load_module(path, options.arch, options.trust_pickle)
    if not isinstance(model, torch.nn.Module) or isinstance(model, torch.jit.ScriptModule):
        raise InputError(f"{path}: palettize rewrites nn.Modules: give a state dict with --arch")
    model = model.cpu()
    targets, skipped = _targets(model)
    params = dict(model.named_parameters())
    names = [n for n in targets if n in params and targets[n].numel() > 2**options.bits]
    skipped += [f"{n}: {targets[n].numel()} elements, no more than its codebook" for n in targets if n in params and n not in names]
    if not names:
        raise InputError(f"{path}: no float weight tensor to palettize (2 dims or more, finite, more elements than 2^{options.bits}); nothing written")
    task = None
    if options.task is not None:
        task = load_task(options.task)
    elif options.inputs is not None:
        task = distillation_task(options.inputs, {"A": copy.deepcopy(model).eval()}, ["A"])
    metric_name = getattr(task, "metric_name", "metric") if task else None
    state_before = {k: v.clone() for k, v in model.state_dict().items()}
    try:
        metric_before = _metric(task, model) if task else None
        centers = [_initial_centers(params[n], options.bits, options.group_channels) for n in names]
        post = copy.deepcopy(model)
        stored = _snap(post, names, centers)
        metric_post = _metric(task, post) if task else None
        lambdas: list[float] = []
        gaps: list[float] = []
        metric_tuned = None
        if task is not None and options.epochs > 0:
            centers = [c.clone() for c in centers]
            lambdas, gaps = _fine_tune(model, task, names, centers, options, on_epoch)
            stored = _snap(model, names, centers)
            metric_tuned = _metric(task, model)
        else:
            model = post
    except SharescanError:
        raise
    except Exception as e:  # the task is the user's code
        raise InputError(f"palettizing failed ({e.__class__.__name__}: {one_line(e)}); check the task and its data; nothing written") from None
    bytes_before, bytes_after = _bytes(state_before, stored, options.bits)
    rel = None
    if onnx_out is not None:
        from sharescan.tying.task import to_device

        assert task is not None  # --onnx without --task/--inputs is refused before any work
        x, _ = next(iter(task.batches("A", 0)))
        rel = _export(model, to_device(x, "cpu")[:4], onnx_out, options.bits, options.max_error)
    try:
        _save(model, stored, out)
    except BaseException:
        if onnx_out is not None:
            onnx_out.unlink(missing_ok=True)
        raise
    return PalettizeResult(
        path, str(out), None if onnx_out is None else str(onnx_out), options.bits, tuple(names), tuple(skipped), metric_name, metric_before, metric_post, metric_tuned,
        tuple(lambdas), tuple(gaps), bytes_before, bytes_after, rel, time.perf_counter() - start, module=model,
    )


def _save(model: Any, stored: dict[str, tuple[Any, Any]], out: Path) -> None:
    state = {}
    for name, t in model.state_dict().items():
        if name in stored:
            state[name + INDICES], state[name + CODEBOOK] = stored[name]
        else:
            state[name] = t.detach().cpu().contiguous().clone()
    with atomic_path(out) as tmp:
        if out.suffix == ".safetensors":
            from safetensors.torch import save_file

            save_file({k: v.contiguous() for k, v in state.items()}, str(tmp), metadata={"format": "pt", "sharescan": "palettized: name.__indices__ + name.__codebook__, rebuilt as codebook[indices]"})
        else:
            import torch

            torch.save(state, str(tmp))
