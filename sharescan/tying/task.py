"""What to fine-tune on: the user's task, or distillation from the originals."""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np

from sharescan.entry_points import import_entry_point
from sharescan.errors import InputError, TrainingError

__all__ = ["Task", "load_task", "distillation_task", "run_model", "task_forward", "checked_loss", "to_device"]


@dataclass
class Task:
    """A training task for models named "A", "B", ... (in the order given).

    batches(key, epoch) yields (inputs, targets) for one model and one epoch;
    loss(outputs, targets) is minimised; metric(key, model) measures a model
    on held-out data (higher is better, e.g. accuracy in percent). With
    --device cuda the model sits on the GPU: metric moves its inputs there.
    forward(model, inputs), when given, runs a model on a batch's inputs
    (default: ``model(inputs)``); inputs may be a dict of tensors by name.
    """

    batches: Callable[[str, int], Iterable[tuple[Any, Any]]]
    loss: Callable[[Any, Any], Any]
    metric: Callable[[str, Any], float]
    metric_name: str = "metric"
    forward: Callable[[Any, Any], Any] | None = None


def task_forward(task: Any, model: Any, inputs: Any) -> Any:
    """The task's way of running a model on a batch's inputs (default: ``model(inputs)``)."""
    forward = getattr(task, "forward", None)
    return forward(model, inputs) if forward is not None else model(inputs)


def checked_loss(value: float, first: float | None, epoch: int, lam: float, hint: str) -> float:
    """The first finite loss of a run, after refusing a loss that turned NaN/Inf or grew 10^6-fold.

    Tie and palettize fine-tune the same way and stop the same way: ``hint``
    names what to lower (``--lambda or --lr``, ``--lr``).
    """
    if not math.isfinite(value) or (first is not None and value > 1e6 * max(first, 1e-6)):
        raise TrainingError(f"the loss {'turned NaN/Inf' if not math.isfinite(value) else 'diverged'} in epoch {epoch + 1} (lambda {lam:g}); lower {hint}; nothing written")
    return value if first is None else first


def load_task(spec: str) -> Task:
    """Call ``module:function`` (the user's code: an explicit opt-in) and check what it returns."""
    task = import_entry_point(spec, "--task", "function", "mypkg.train:task")()
    if not all(hasattr(task, a) for a in ("batches", "loss", "metric")):
        raise InputError(f"--task {spec!r}: returned {type(task).__name__}, not a task with batches, loss and metric")
    return task


# A model's inputs: one array fed by position, or arrays fed by name (input_ids, attention_mask).
Inputs = Any


def run_model(model: Any, inputs: Inputs) -> Any:
    """``model`` on ``inputs`` (a tensor by position, or a dict by name); the tensor its output stands for."""
    from sharescan.torch_module import model_output

    return model_output(model(**inputs) if isinstance(inputs, dict) else model(inputs))


def to_device(inputs: Inputs, device: Any) -> Inputs:
    """``inputs`` (a tensor or a dict of them) on ``device``."""
    return {n: v.to(device) for n, v in inputs.items()} if isinstance(inputs, dict) else inputs.to(device)


def _rows(inputs: Inputs, index: Any) -> Inputs:
    return {n: v[index] for n, v in inputs.items()} if isinstance(inputs, dict) else inputs[index]


def _count(inputs: Inputs) -> int:
    return len(next(iter(inputs.values()))) if isinstance(inputs, dict) else len(inputs)


def _read_inputs(path: str, teachers: dict[str, Any], keys: list[str]) -> dict[str, Inputs]:
    """Each model's inputs from the .npz: arrays named by input, shared by all models; else one array per model key, or one for all.

    Arrays are fed by name when every key is a keyword of every model's forward
    (``input_ids``, ``attention_mask``) and none is a model key; otherwise by
    position (the one-array-per-model format).
    """
    from sharescan.torch_module import input_names

    try:
        data = np.load(path)
        stored = {k: data[k] for k in data.files}
    except (OSError, ValueError) as e:
        raise InputError(f"{path}: unreadable inputs file ({e.__class__.__name__}); write it with numpy.savez") from None
    if not stored:
        raise InputError(f"{path}: holds no arrays; store the inputs by name (input_ids, attention_mask) or one array per model key ({', '.join(keys)})")
    accepted = [input_names(t) for t in teachers.values()]
    if not set(stored) & set(keys) and all(a is not None and set(stored) <= a for a in accepted):
        lengths = {n: len(v) if v.ndim else 0 for n, v in stored.items()}
        if len(set(lengths.values())) != 1 or not next(iter(lengths.values())):
            shown = ", ".join(f"{n} {v}" for n, v in lengths.items())
            raise InputError(f"{path}: arrays fed by name must hold the same number of samples along their first axis ({shown}); store one row per sample in each")
        return {k: dict(stored) for k in keys}
    arrays: dict[str, Any] = {k: stored[k] if k in stored else (next(iter(stored.values())) if len(stored) == 1 else None) for k in keys}
    missing = [k for k, v in arrays.items() if v is None]
    if missing:
        names = sorted(set.intersection(*(set(a) for a in accepted if a is not None)) - {"self"}) if any(a is not None for a in accepted) else []
        named = f"arrays named by model input ({', '.join(names[:6])}{', ...' if len(names) > 6 else ''}), shared by all models, or " if names else ""
        raise InputError(f"{path}: holds {', '.join(stored)}: no inputs for model(s) {', '.join(missing)}; store {named}one array per model key ({', '.join(keys)}) or a single array")
    return arrays


def distillation_task(path: str, teachers: dict[str, Any], keys: list[str], batch_size: int = 64) -> Task:
    """No labels: each model learns to reproduce its original's outputs on the given inputs.

    The .npz holds arrays named by model input (``input_ids``,
    ``attention_mask``), fed by name to every model; or, as before, one array
    per model key ("A", "B", ...) or a single array for all, fed by position.
    A model's output is its tensor, or the ``logits`` of a ModelOutput or
    dict, else its first tensor.
    """
    import torch

    def device(model: Any) -> Any:
        return next(model.parameters()).device

    def floats_as(model: Any, a: np.ndarray) -> Any:
        # float64 arrays feed a float32 model; ids and masks stay ints.
        if a.dtype.kind == "f":
            a = a.astype(str(next(model.parameters()).dtype).removeprefix("torch."), copy=False)
        return torch.as_tensor(a)

    read = _read_inputs(path, teachers, keys)
    inputs: dict[str, Inputs] = {}
    for k, v in read.items():
        inputs[k] = {n: floats_as(teachers[k], np.asarray(a)) for n, a in v.items()} if isinstance(v, dict) else floats_as(teachers[k], np.asarray(v))
    total = {k: _count(v) for k, v in inputs.items()}
    split = {k: int(n * 0.8) or n for k, n in total.items()}

    with torch.no_grad():
        targets = {k: torch.cat([run_model(teachers[k], to_device(_rows(inputs[k], slice(s, s + batch_size)), device(teachers[k]))).detach().cpu() for s in range(0, total[k], batch_size)]) for k in keys}

    def batches(key: str, epoch: int) -> Iterator[tuple[Any, Any]]:
        x, y = _rows(inputs[key], slice(0, split[key])), targets[key][: split[key]]
        order = torch.randperm(split[key], generator=torch.Generator().manual_seed(epoch))
        for start in range(0, split[key], batch_size):
            idx = order[start : start + batch_size]
            yield _rows(x, idx), y[idx]

    def loss(outputs: Any, wanted: Any) -> Any:
        return torch.nn.functional.mse_loss(outputs, wanted)

    def metric(key: str, model: Any) -> float:
        # Agreement with the original on held-out inputs: 100 * (1 - relative error).
        held_out = split[key] < total[key]
        x = _rows(inputs[key], slice(split[key], None)) if held_out else inputs[key]
        y = targets[key][split[key] :] if held_out else targets[key]
        with torch.no_grad():
            out = run_model(model, to_device(x, device(model))).cpu()
        return float(100 * (1 - torch.linalg.norm(out - y) / torch.linalg.norm(y).clamp_min(1e-12)))

    return Task(batches, loss, metric, "agreement with original (%)", run_model)
