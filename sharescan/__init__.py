"""sharescan: find parameters that trained models store more than once.

The package root stays light: importing it (or running ``sharescan --help``)
must not import torch, onnx or numpy-heavy loaders. The analysis entry point
is re-exported lazily.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__all__ = ["__version__", "analyze", "AnalysisOptions", "tie", "TieOptions", "Task"]

__version__ = "0.1.0"

if TYPE_CHECKING:  # pragma: no cover
    from sharescan.analysis import AnalysisOptions, analyze
    from sharescan.tying.run import TieOptions, tie
    from sharescan.tying.task import Task


def __getattr__(name: str) -> Any:
    # Lazy re-exports: ``import sharescan`` must stay cheap for the CLI (no torch).
    if name in ("analyze", "AnalysisOptions"):
        from sharescan import analysis

        return getattr(analysis, name)
    if name in ("tie", "TieOptions"):
        from sharescan.tying import run

        return getattr(run, name)
    if name == "Task":
        from sharescan.tying.task import Task

        return Task
    raise AttributeError(f"module 'sharescan' has no attribute {name!r}")
