"""Which ONNX codebook form a tensor gets: one call for ``dedup --codebook`` and the benchmarks."""

from __future__ import annotations

from typing import Any

from sharescan.codebook.grouped_form import grouped_codebook_form
from sharescan.codebook.onnx_form import CodebookRewrite, codebook_form

__all__ = ["codebook_rewrite"]


def codebook_rewrite(graph: Any, init: Any, bits: int, opset: int, uniform: bool = False, group_channels: int | None = None) -> CodebookRewrite | None:
    """``init`` as codebook indices: one codebook per ``group_channels`` rows where given (tensors of 2 dims or
    more; vectors, and groups that would cost more than they save, fall back to one codebook), else one per tensor:
    k-means centers (Gather, or DequantizeLinear when they lie on a uniform grid), or with ``uniform`` the
    least-error uniform grid (DequantizeLinear). None: left as it is (not float, NaN/Inf, saves nothing).
    """
    if group_channels is not None and not uniform:
        grouped = grouped_codebook_form(graph, init, bits, opset, group_channels)
        if grouped is not None:
            return grouped
    return codebook_form(graph, init, bits, opset, uniform=uniform)
