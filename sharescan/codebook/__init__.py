"""Scalar weight sharing: tensors stored as codebook indices (k-means in 1-D, analysis, the ONNX form)."""

from __future__ import annotations

__all__: list[str] = []
