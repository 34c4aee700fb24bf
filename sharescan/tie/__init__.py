"""Parameter tying, then sharing (Deep Learning, Goodfellow et al., 7.9).

``groups`` says which parameters to tie, ``penalty`` pulls them together,
``loop`` fine-tunes with it, ``share`` forces each group into one
``nn.Parameter``, ``tie`` runs the whole job and ``save`` writes the result.
"""

from __future__ import annotations

from typing import Any

__all__ = ["tie", "TieOptions", "TieResult", "Task"]


def __getattr__(name: str) -> Any:
    if name in ("tie", "TieOptions", "TieResult"):
        from sharescan.tie import run

        return getattr(run, name)
    if name == "Task":
        from sharescan.tie.task import Task

        return Task
    raise AttributeError(name)
