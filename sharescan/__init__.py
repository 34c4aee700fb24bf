"""sharescan: find parameters that trained models store more than once.

The Python API is the command line's four verbs, each a function with an
options class and a result type that the reports render:

- ``analyze(sources, AnalysisOptions()) -> AnalysisResult``: every relation
  within and across models (paths, ``nn.Module``, state dicts, ``onnx.ModelProto``).
- ``dedup(source, output, DedupOptions()) -> DedupResult``: an ONNX model
  rewritten to store each shared tensor once, verified with onnxruntime.
- ``export(source, output, ExportOptions()) -> ExportResult``: a PyTorch
  model to ONNX, then ``dedup``.
- ``tie(paths, output, TieOptions()) -> TieResult``: near-equal layers of
  models tied by fine-tuning, then shared.

Errors: every refusal raises a ``SharescanError`` with a one-line message
(``InputError``: unusable input or option; ``VerificationError``: a rewrite
that fails verification; ``TrainingError``: fine-tuning that diverged;
``QualityError``: a result below ``tie``'s quality gate). Nothing is written
when one is raised.

Example::

    import sharescan

    result = sharescan.analyze("model.onnx")
    print(result.totals.reclaimable_bytes, [g.relation for g in result.groups])
    sharescan.dedup("model.onnx", "model.dedup.onnx")

The package root stays light: importing it (or running ``sharescan --help``)
imports neither torch nor onnx; each name below is imported on first use.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__all__ = [
    "__version__",
    "analyze",
    "AnalysisOptions",
    "AnalysisResult",
    "dedup",
    "DedupOptions",
    "DedupResult",
    "export",
    "ExportOptions",
    "ExportResult",
    "tie",
    "TieOptions",
    "TieResult",
    "Task",
    "SharescanError",
    "InputError",
    "VerificationError",
    "TrainingError",
    "QualityError",
]

__version__ = "0.1.0"

if TYPE_CHECKING:  # pragma: no cover
    from sharescan.analysis import AnalysisOptions, analyze
    from sharescan.errors import InputError, QualityError, SharescanError, TrainingError, VerificationError
    from sharescan.onnx_rewrite.dedup import DedupOptions, DedupResult, dedup
    from sharescan.onnx_rewrite.export import ExportOptions, ExportResult, export
    from sharescan.result import AnalysisResult
    from sharescan.tying.result import TieResult
    from sharescan.tying.run import TieOptions, tie
    from sharescan.tying.task import Task

# Where each public name lives; imported on first access (PEP 562).
_LAZY = {
    "analyze": "sharescan.analysis",
    "AnalysisOptions": "sharescan.analysis",
    "AnalysisResult": "sharescan.result",
    "dedup": "sharescan.onnx_rewrite.dedup",
    "DedupOptions": "sharescan.onnx_rewrite.dedup",
    "DedupResult": "sharescan.onnx_rewrite.dedup",
    "export": "sharescan.onnx_rewrite.export",
    "ExportOptions": "sharescan.onnx_rewrite.export",
    "ExportResult": "sharescan.onnx_rewrite.export",
    "tie": "sharescan.tying.run",
    "TieOptions": "sharescan.tying.run",
    "TieResult": "sharescan.tying.result",
    "Task": "sharescan.tying.task",
    "SharescanError": "sharescan.errors",
    "InputError": "sharescan.errors",
    "VerificationError": "sharescan.errors",
    "TrainingError": "sharescan.errors",
    "QualityError": "sharescan.errors",
}


def __getattr__(name: str) -> Any:
    # ``import sharescan`` must stay cheap for the CLI: no torch, no onnx.
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'sharescan' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # later lookups skip this function
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
