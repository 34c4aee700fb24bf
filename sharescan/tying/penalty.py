"""The tying penalty and the gap it closes."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

__all__ = ["penalty", "relative_gap"]


def penalty(groups: Sequence[Sequence[Any]]) -> Any:
    """sum over groups, sum over members of ||w - mean(w)||^2.

    For two members this is ||w_A - w_B||^2 / 2: the book's pairwise
    Omega(w_A, w_B) up to a constant, and it extends to groups of any size.
    """
    import torch

    total = torch.zeros(())
    for members in groups:
        stacked = torch.stack(list(members))
        total = total.to(stacked.device) + ((stacked - stacked.mean(0)) ** 2).sum()
    return total


def relative_gap(members: Sequence[Any]) -> float:
    """sqrt(sum ||w - mean||^2 / sum ||w||^2): 0 when the members are equal."""
    import torch

    with torch.no_grad():
        stacked = torch.stack([m.detach().float() for m in members])
        spread = ((stacked - stacked.mean(0)) ** 2).sum()
        size = (stacked**2).sum()
        return float((spread / size).sqrt()) if size > 0 else 0.0
