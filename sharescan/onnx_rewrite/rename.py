"""Identical (and near, on request) copies: readers of the copy read the kept tensor."""

from __future__ import annotations

from typing import Any

from sharescan.onnx_rewrite.graph import rename_inputs

__all__ = ["point_at"]


def point_at(graph: Any, kept_for: dict[str, str]) -> None:
    """Make every reader of each dropped tensor (key) read the kept one (value); a graph output keeps its name via Identity."""
    from onnx import helper

    rename_inputs(graph, kept_for)
    outputs = {o.name for o in graph.output}
    for drop, keep in kept_for.items():
        if drop in outputs:
            graph.node.append(helper.make_node("Identity", [keep], [drop], name=f"sharescan_alias_{drop}"))
