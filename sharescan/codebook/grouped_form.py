"""An ONNX float initializer stored with one codebook per group of rows: Gather(codebooks, Cast(indices) + row offsets).

Weight-only block quantizers give every few dozen weights their own scale;
the codebook's counterpart is one k-means codebook per group of rows (axis 0
of the initializer as stored). The codebooks sit end to end in one 1-D
tensor of ``groups * 2^bits`` floats; each row's indices are shifted by its
group's start (an int32 per row, broadcast over the rest of the row) and
one Gather rebuilds the tensor. Rows are split as
:func:`sharescan.codebook.analysis.group_rows` splits them. Indices are UINT4
at 4 bits or fewer from opset 21, else UINT8, as in the per-tensor form.
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np

from sharescan.codebook.analysis import group_rows
from sharescan.codebook.kmeans import assign, histogram, kmeans
from sharescan.codebook.onnx_form import FLOAT_TYPES, UINT4_OPSET, CodebookRewrite

__all__ = ["grouped_codebook_form"]

logger = logging.getLogger(__name__)


def grouped_codebook_form(graph: Any, init: Any, bits: int, opset: int, group_channels: int) -> CodebookRewrite | None:
    """Replace ``init`` by one codebook per ``group_channels`` rows (at most), indices, offsets, Cast, Add and Gather; None when it saves nothing.

    A tensor of fewer than 2 dims has no rows to group: None (the caller may use the per-tensor form).
    The initializer is removed by the caller; the new initializers are appended to ``graph`` and the nodes returned.
    """
    from onnx import TensorProto, helper, numpy_helper

    from sharescan.onnx_rewrite.graph import unique_name

    if init.data_type not in FLOAT_TYPES or len(init.dims) < 2 or group_channels < 1:
        return None
    w = numpy_helper.to_array(init)
    if w.size == 0 or not np.isfinite(w).all():
        return None  # NaN/Inf are never clustered
    k = 2**bits
    slices = group_rows(w.shape[0], -(-w.shape[0] // group_channels))
    books = np.empty((len(slices), k), dtype=w.dtype)
    index = np.empty(w.shape, dtype=np.int64)
    for g, rows in enumerate(slices):
        x = w[rows].astype(np.float64).reshape(-1)
        c = np.unique(kmeans(histogram(x), k).astype(w.dtype))
        books[g] = np.concatenate([c, np.repeat(c[-1:], k - c.size)])  # a group of few distinct values repeats its last
        index[rows] = assign(x, c.astype(np.float64)).reshape(w[rows].shape)
    uint4 = bits <= 4 and opset >= UINT4_OPSET
    row_group = np.concatenate([np.full(r.stop - r.start, g, dtype=np.int32) for g, r in enumerate(slices)])
    offsets = (row_group * k).reshape(-1, *([1] * (w.ndim - 1)))
    saved = w.nbytes - ((w.size + 1) // 2 if uint4 else w.size) - books.nbytes - offsets.nbytes
    if saved <= 0:
        return None
    approx = np.take_along_axis(books[row_group].reshape(w.shape[0], -1), index.reshape(w.shape[0], -1), axis=1).reshape(w.shape).astype(np.float64)
    diff = approx - w.astype(np.float64)
    norm = float(np.linalg.norm(w.astype(np.float64)))
    rel = float(np.linalg.norm(diff) / norm) if norm > 0 else 0.0
    names = {s: unique_name(graph, f"{init.name}_codebook{s}") for s in ("", "_index", "_index_int32", "_offset", "_index_flat")}
    if uint4:
        import ml_dtypes

        stored = index.astype(ml_dtypes.uint4)
    else:
        stored = index.astype(np.uint8)
    graph.initializer.extend([
        numpy_helper.from_array(books.reshape(-1), names[""]),
        numpy_helper.from_array(stored, names["_index"]),
        numpy_helper.from_array(offsets, names["_offset"]),
    ])
    nodes = [
        helper.make_node("Cast", [names["_index"]], [names["_index_int32"]], to=TensorProto.INT32, name=f"sharescan_codebook_cast_{init.name}"),
        helper.make_node("Add", [names["_index_int32"], names["_offset"]], [names["_index_flat"]], name=f"sharescan_codebook_offset_{init.name}"),
        helper.make_node("Gather", [names[""], names["_index_flat"]], [init.name], axis=0, name=f"sharescan_codebook_{init.name}"),
    ]
    how = f"Gather({len(slices)} codebooks of {k}, one per {slices[0].stop} rows, Cast({'UINT4' if uint4 else 'UINT8'} {bits}-bit index) + row offset)"
    return CodebookRewrite(nodes, saved, how, float(np.abs(diff).max()), rel)
