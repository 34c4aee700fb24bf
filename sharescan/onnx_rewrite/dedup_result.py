"""What ``dedup`` returns: the merges it wrote, how verification went, bytes before and after.

Apart from the orchestrator so that reports (and ``export``) read the result
without importing the rewrite passes.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from sharescan.onnx_rewrite.ram import RECOMMENDED_OPTIONS

if TYPE_CHECKING:
    from sharescan.onnx_rewrite.fold import FoldResult
    from sharescan.onnx_rewrite.verify import Verdict

__all__ = ["DedupResult", "DroppedMerge", "Merge"]


@dataclass(frozen=True)
class Merge:
    relation: str  # identical, transposed, negated, scaled, near, rows
    kept: str  # tensor that stays stored ("" for rows)
    dropped: str  # tensor now rebuilt from it
    saved_bytes: int
    how: str  # the graph form that replaces it
    max_abs_error: float = 0.0
    rel_error: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return self.__dict__.copy()


@dataclass(frozen=True)
class DroppedMerge:
    """A merge found but not written: verification refused it on its own."""

    merge: Merge
    reason: str  # what verification saw with it in

    def to_dict(self) -> dict[str, Any]:
        return {**self.merge.to_dict(), "reason": self.reason}


@dataclass(frozen=True)
class DedupResult:
    input: str
    output: str
    file_bytes_before: int
    file_bytes_after: int
    tensor_bytes_before: int  # initializers and Constant tensors of the main graph
    tensor_bytes_after: int
    merges: tuple[Merge, ...]
    verdict: Verdict
    lossy: bool
    # onnxruntime RSS growth in bytes: {"before"|"after": {"default"|"recommended": n}};
    # empty when not measured (measured only with ``--ram``, or the probe failed: see warnings).
    ram: dict[str, dict[str, int]] = field(default_factory=dict)
    simplified: FoldResult | None = None  # what --simplify folded, if asked
    settings: dict[str, Any] = field(default_factory=dict)  # the options this result was made with
    recommended_options: dict[str, str] = field(default_factory=lambda: dict(RECOMMENDED_OPTIONS))
    dropped_merges: tuple[DroppedMerge, ...] = ()  # merges left out because verification refused them
    warnings: tuple[str, ...] = ()  # one line each, for stderr (e.g. the RAM probe failed)

    def to_dict(self) -> dict[str, Any]:
        return {
            "schema_version": 1,
            "input": self.input,
            "output": self.output,
            "settings": self.settings,
            "file_bytes": {"before": self.file_bytes_before, "after": self.file_bytes_after},
            "tensor_bytes": {"before": self.tensor_bytes_before, "after": self.tensor_bytes_after},
            "merges": [m.to_dict() for m in self.merges],
            "dropped_merges": [d.to_dict() for d in self.dropped_merges],
            "verification": {**self.verdict.to_dict(), "lossy": self.lossy},
            "onnxruntime_ram_bytes": self.ram or None,  # null: not measured
            "simplify": None if self.simplified is None else self.simplified.to_dict(),
            "recommended_session_options": self.recommended_options,
            "warnings": list(self.warnings),
        }
