"""``sharescan zoo``: what thousands of checkpoints share, on Dask.

One concern per module: ``listing`` (which models), ``task`` (one model's
digest task), ``records`` (what a task hands back), ``store`` (the SQLite
digest store), ``cluster`` (where tasks run), ``join`` (cross-model groups
from digests, confirmed from values), ``summary`` and ``result`` (families,
totals, the result type), ``report`` (terminal and Markdown), ``scan`` (the
steps in order). Dask is imported only by ``cluster``, and only when a
cluster is asked for.
"""

from __future__ import annotations

from sharescan.zoo.result import ZooResult
from sharescan.zoo.scan import ZooOptions, ZooProgress, scan_zoo

__all__ = ["ZooOptions", "ZooProgress", "ZooResult", "scan_zoo"]
