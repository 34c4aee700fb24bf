"""What ``sharescan tie`` returns: the one result type its reports render."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

__all__ = ["GroupTrace", "TieResult"]


@dataclass(frozen=True)
class GroupTrace:
    label: str
    gap_before: float  # relative gap before fine-tuning
    gap_per_epoch: tuple[float, ...]
    gap_at_sharing: float  # relative gap right before hard sharing: how far sharing moved the members
    above_target: bool = False  # gap_at_sharing was above --target-gap

    def to_dict(self) -> dict[str, Any]:
        out = self.__dict__.copy()
        out["gap_after_sharing"] = 0.0  # kept for JSON readers: one Parameter, 0 by construction
        return out


@dataclass(frozen=True)
class TieResult:
    models: tuple[str, ...]
    keys: tuple[str, ...]
    groups: tuple[GroupTrace, ...]
    metric_name: str
    metric_before: dict[str, float]
    metric_after_finetune: dict[str, float]
    metric_after_sharing: dict[str, float]  # right after forcing each group into one Parameter
    metric_final: dict[str, float]  # after fine-tuning the shared models
    lambdas: tuple[float, ...]  # lambda used in each epoch
    parameters_before: int
    parameters_after: int
    bytes_before: int
    bytes_after: int
    output: str
    onnx_output: str | None
    onnx_max_abs_diff: float | None  # torch vs onnxruntime on the exported pair
    device: str
    seconds: float
    epochs_run: int = 0
    notes: tuple[str, ...] = field(default=())
    warnings: tuple[str, ...] = ()  # one line each: groups shared while still above --target-gap
    max_drop: float | None = None  # the allowed metric drop in points (None: not checked)
    forced: bool = False  # --force: written although the drop exceeded max_drop
    # The tied nn.Modules by model key, for the Python API (not JSON: left out of to_dict).
    modules: dict[str, Any] = field(default_factory=dict, compare=False, repr=False)

    @property
    def worst_drop(self) -> tuple[str, float]:
        """(model key, metric points lost from before fine-tuning to the written model), the largest."""
        return max(((k, self.metric_before[k] - self.metric_final[k]) for k in self.keys), key=lambda kv: kv[1], default=("", 0.0))

    def to_dict(self) -> dict[str, Any]:
        out = {k: v for k, v in self.__dict__.items() if k not in ("groups", "modules")}
        out["groups"] = [g.to_dict() for g in self.groups]
        key, drop = self.worst_drop
        out["worst_drop"] = {"model": key, "points": drop}
        out["schema_version"] = 1
        return out
