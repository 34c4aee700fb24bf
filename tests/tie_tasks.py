"""Tasks for the tie tests: the digits pair with few batches, and one whose loss turns NaN."""

from __future__ import annotations

from fixtures.digits_task import pair


def small_pair():
    task = pair(batch_size=256)
    return task


def nan_pair():
    import torch

    task = pair(batch_size=256)
    task.loss = lambda out, y: torch.nn.functional.cross_entropy(out, y) * float("nan")
    return task


def not_a_task():
    return 42
