"""What ``sharescan align`` returns: the one result type its reports render."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

__all__ = ["LayerGap", "AlignResult"]


@dataclass(frozen=True)
class LayerGap:
    layer: str  # a module holding parameters
    gap_before: float  # ||A - B|| / max(||A||, ||B||) over the module's parameters, B as given
    gap_after: float  # the same with B's units permuted
    permuted: str  # "out", "in", "in+out" or "" : which of its units were reordered


@dataclass(frozen=True)
class AlignResult:
    models: tuple[str, ...]  # (A, B): B is permuted to match A
    output: str | None  # the aligned B's checkpoint; None when only computed (tie --align, the Python API on modules)
    sites: tuple[str, ...]  # layers whose output units were permuted
    layers: tuple[LayerGap, ...]
    trunk_gap_before: float  # over the permuted layers (and their norms) together
    trunk_gap_after: float
    model_gap_before: float  # over every parameter
    model_gap_after: float
    units_moved: int  # hidden units not left in place
    max_abs_output_diff: float  # aligned B vs B on random inputs: a permutation must not change what B computes
    input_shape: tuple[int, ...]  # the random inputs' shape
    passes: int  # coordinate-descent passes of the winning start
    starts: int
    seconds: float
    modules: dict[str, Any] = field(default_factory=dict, compare=False, repr=False)  # "B": the aligned nn.Module (not in JSON)

    def to_dict(self) -> dict[str, Any]:
        out = {k: v for k, v in self.__dict__.items() if k not in ("layers", "modules")}
        out["layers"] = [dict(g.__dict__) for g in self.layers]
        out["schema_version"] = 1
        return out
