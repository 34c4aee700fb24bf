"""Identical (and near, on request) copies: readers of the copy read the kept tensor."""

from __future__ import annotations

from typing import Any

from sharescan.onnx_rewrite.graph import replace_input

__all__ = ["point_at"]


def point_at(graph: Any, drop: str, keep: str) -> None:
    """Make every reader of ``drop`` read ``keep``; a graph output keeps its name via Identity."""
    from onnx import helper

    replace_input(graph, drop, keep)
    if any(o.name == drop for o in graph.output):
        graph.node.append(helper.make_node("Identity", [keep], [drop], name=f"sharescan_alias_{drop}"))
