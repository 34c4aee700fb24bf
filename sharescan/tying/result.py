"""What ``sharescan tie`` returns: the one result type its reports render."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

__all__ = ["GroupTrace", "TieResult"]


@dataclass(frozen=True)
class GroupTrace:
    label: str
    gap_before: float
    gap_per_epoch: tuple[float, ...]
    gap_after_sharing: float  # 0 by construction: one Parameter

    def to_dict(self) -> dict[str, Any]:
        return self.__dict__.copy()


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

    def to_dict(self) -> dict[str, Any]:
        out = {k: v for k, v in self.__dict__.items() if k != "groups"}
        out["groups"] = [g.to_dict() for g in self.groups]
        out["schema_version"] = 1
        return out
