"""sharescan: find parameters that trained models store more than once.

The package root stays light: importing it (or running ``sharescan --help``)
must not import torch, onnx or numpy-heavy loaders. The analysis entry point
is re-exported lazily.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__all__ = ["__version__", "analyze", "AnalysisOptions"]

__version__ = "0.1.0"

if TYPE_CHECKING:  # pragma: no cover
    from sharescan.analysis import AnalysisOptions, analyze


def __getattr__(name: str) -> Any:
    # Lazy re-export: ``import sharescan`` must stay cheap for the CLI.
    if name in ("analyze", "AnalysisOptions"):
        from sharescan import analysis

        return getattr(analysis, name)
    raise AttributeError(f"module 'sharescan' has no attribute {name!r}")
