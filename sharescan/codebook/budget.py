"""Which tensors get more bits when a model's weights must fit a byte budget.

Every tensor starts in its cheapest form (say, a 4-bit codebook); each may be
raised to a richer one (8-bit indices) at a cost in bytes and for a gain in
the model's metric, both measured per tensor beforehand. Gains are taken as
additive: one tensor raised alone is what it is worth among the others. The
choice is greedy on gain per byte, the usual answer to this knapsack when
the items are many and small next to the budget: mixed-precision quantizers
rank layers by sensitivity the same way.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

__all__ = ["Upgrade", "BudgetChoice", "choose_upgrades"]


@dataclass(frozen=True)
class Upgrade:
    """One tensor's richer form, against its cheapest one."""

    name: str  # the tensor
    extra_bytes: int  # bytes the richer form adds to the cheapest one
    gain: float  # how much the metric rises when this tensor alone takes the richer form


@dataclass(frozen=True)
class BudgetChoice:
    chosen: tuple[str, ...]  # tensors given the richer form, best gain per byte first
    extra_bytes: int  # bytes they add, at most the budget
    gain: float  # the sum of their gains (the additive estimate, not a measurement)


def choose_upgrades(upgrades: Sequence[Upgrade], budget: int) -> BudgetChoice:
    """The upgrades to take within ``budget`` extra bytes: best gain per byte first, each that still fits.

    An upgrade that gains nothing (or loses) is never taken; one that costs
    no bytes and gains is always taken. A larger upgrade that does not fit
    does not stop smaller ones behind it from being taken.
    """
    if budget < 0:
        return BudgetChoice((), 0, 0.0)
    useful = [u for u in upgrades if u.gain > 0]
    ranked = sorted(useful, key=lambda u: (-(u.gain / u.extra_bytes) if u.extra_bytes > 0 else float("-inf"), u.name))
    chosen: list[str] = []
    spent = 0
    gain = 0.0
    for u in ranked:
        if spent + max(u.extra_bytes, 0) <= budget:
            chosen.append(u.name)
            spent += max(u.extra_bytes, 0)
            gain += u.gain
    return BudgetChoice(tuple(chosen), spent, gain)
