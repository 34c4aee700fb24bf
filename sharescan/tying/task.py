"""What to fine-tune on: the user's task, or distillation from the originals."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np

from sharescan.entry_points import import_entry_point
from sharescan.errors import InputError

__all__ = ["Task", "load_task", "distillation_task"]


@dataclass
class Task:
    """A training task for models named "A", "B", ... (in the order given).

    batches(key, epoch) yields (inputs, targets) for one model and one epoch;
    loss(outputs, targets) is minimised; metric(key, model) measures a model
    on held-out data (higher is better, e.g. accuracy in percent). With
    --device cuda the model sits on the GPU: metric moves its inputs there.
    """

    batches: Callable[[str, int], Iterable[tuple[Any, Any]]]
    loss: Callable[[Any, Any], Any]
    metric: Callable[[str, Any], float]
    metric_name: str = "metric"


def load_task(spec: str) -> Task:
    """Call ``module:function`` (the user's code: an explicit opt-in) and check what it returns."""
    task = import_entry_point(spec, "--task", "function", "mypkg.train:task")()
    if not all(hasattr(task, a) for a in ("batches", "loss", "metric")):
        raise InputError(f"--task {spec!r}: returned {type(task).__name__}, not a task with batches, loss and metric")
    return task


def distillation_task(path: str, teachers: dict[str, Any], keys: list[str], batch_size: int = 64) -> Task:
    """No labels: each model learns to reproduce its original's outputs on the given inputs.

    The .npz holds one array per model key ("A", "B", ...) or a single array for all.
    """
    import torch

    try:
        data = np.load(path)
    except (OSError, ValueError) as e:
        raise InputError(f"{path}: unreadable inputs file ({e.__class__.__name__}); write it with numpy.savez") from None
    # Any: a missing key maps to None, which the check below rules out before any use.
    arrays: dict[str, Any] = {k: data[k] if k in data.files else (data[data.files[0]] if len(data.files) == 1 else None) for k in keys}
    missing = [k for k, v in arrays.items() if v is None]
    if missing:
        raise InputError(f"{path}: no inputs for model(s) {', '.join(missing)}; store one array per model key ({', '.join(keys)}) or a single array")
    for k, v in arrays.items():
        if np.asarray(v).dtype.kind == "f":  # float64 arrays feed a float32 model; ids stay ints
            dtype = next(teachers[k].parameters()).dtype
            arrays[k] = np.asarray(v).astype(str(dtype).removeprefix("torch."), copy=False)
    split = {k: int(len(v) * 0.8) or len(v) for k, v in arrays.items()}
    def device(model: Any) -> Any:
        return next(model.parameters()).device

    with torch.no_grad():
        targets = {k: teachers[k](torch.as_tensor(arrays[k]).to(device(teachers[k]))).detach().cpu() for k in keys}

    def batches(key: str, epoch: int) -> Iterator[tuple[Any, Any]]:
        x, y = torch.as_tensor(arrays[key][: split[key]]), targets[key][: split[key]]
        order = torch.randperm(len(x), generator=torch.Generator().manual_seed(epoch))
        for start in range(0, len(x), batch_size):
            idx = order[start : start + batch_size]
            yield x[idx], y[idx]

    def loss(outputs: Any, wanted: Any) -> Any:
        return torch.nn.functional.mse_loss(outputs, wanted)

    def metric(key: str, model: Any) -> float:
        # Agreement with the original on held-out inputs: 100 * (1 - relative error).
        x, y = torch.as_tensor(arrays[key][split[key] :] if split[key] < len(arrays[key]) else arrays[key]), targets[key]
        y = y[split[key] :] if split[key] < len(arrays[key]) else y
        with torch.no_grad():
            out = model(x.to(device(model))).cpu()
        return float(100 * (1 - torch.linalg.norm(out - y) / torch.linalg.norm(y).clamp_min(1e-12)))

    return Task(batches, loss, metric, "agreement with original (%)")
