"""Align two models of one architecture: permute B's hidden units so its weights are closest to A's."""

from __future__ import annotations

from sharescan.align.result import AlignResult, LayerGap
from sharescan.align.run import AlignOptions, align, align_modules

__all__ = ["AlignOptions", "AlignResult", "LayerGap", "align", "align_modules"]
