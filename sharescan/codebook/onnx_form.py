"""An ONNX float initializer stored as codebook indices, rebuilt by Gather(codebook, Cast(indices)).

Indices are UINT4 (two a byte) when the bits fit in 4 and the model's opset
is 21 or later (Cast reads UINT4 from opset 21); otherwise UINT8. The
codebook keeps the tensor's own float type, so the Gather's output has the
initializer's type and shape and every reader reads it unchanged. Lossy: the
error is measured here on the weights and by verification on the outputs.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import numpy as np

from sharescan.codebook.kmeans import assign, histogram, kmeans

__all__ = ["CodebookRewrite", "codebook_form", "default_opset", "FLOAT_TYPES"]

logger = logging.getLogger(__name__)

# ONNX element types a codebook may stand for (onnxruntime's CPU Gather reads them): FLOAT, FLOAT16, DOUBLE.
FLOAT_TYPES = (1, 10, 11)
_UINT4_OPSET = 21


@dataclass(frozen=True)
class CodebookRewrite:
    nodes: list[Any]  # Cast then Gather, to be placed before every reader
    saved: int  # bytes of the initializer minus indices and codebook
    how: str  # the graph form, for the report
    max_abs_error: float
    rel_error: float  # ||w - codebook[index]|| / ||w||


def default_opset(model: Any) -> int:
    return next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), 0)


def codebook_form(graph: Any, init: Any, bits: int, opset: int) -> CodebookRewrite | None:
    """Replace ``init`` in ``graph`` by indices + codebook + Cast + Gather; None when it saves nothing or cannot apply.

    The initializer is removed by the caller; here the new initializers and
    the nodes are made (nodes returned, initializers appended to ``graph``).
    """
    from onnx import TensorProto, helper, numpy_helper

    from sharescan.onnx_rewrite.graph import unique_name

    if init.data_type not in FLOAT_TYPES:
        return None
    w = numpy_helper.to_array(init)
    if w.size == 0 or not np.isfinite(w).all():
        return None  # NaN/Inf are never clustered
    x = w.astype(np.float64).reshape(-1)
    centers = kmeans(histogram(x), 2**bits).astype(w.dtype)
    centers = np.unique(centers)  # rounding to the tensor's type can join neighbours
    index = assign(x, centers.astype(np.float64))
    uint4 = bits <= 4 and opset >= _UINT4_OPSET
    index_bytes = (w.size + 1) // 2 if uint4 else w.size
    saved = w.nbytes - index_bytes - centers.nbytes
    if saved <= 0:
        return None
    approx = centers[index].astype(np.float64)
    diff = approx - x
    norm = float(np.linalg.norm(x))
    rel = float(np.linalg.norm(diff) / norm) if norm > 0 else 0.0
    book_name = unique_name(graph, f"{init.name}_codebook")
    index_name = unique_name(graph, f"{init.name}_codebook_index")
    wide_name = unique_name(graph, f"{init.name}_codebook_index_int32")
    graph.initializer.append(numpy_helper.from_array(centers, book_name))
    if uint4:
        import ml_dtypes

        indices = numpy_helper.from_array(index.astype(ml_dtypes.uint4).reshape(w.shape), index_name)
    else:
        indices = numpy_helper.from_array(index.astype(np.uint8).reshape(w.shape), index_name)
    graph.initializer.append(indices)
    cast = helper.make_node("Cast", [index_name], [wide_name], to=TensorProto.INT32, name=f"sharescan_codebook_cast_{init.name}")
    gather = helper.make_node("Gather", [book_name, wide_name], [init.name], axis=0, name=f"sharescan_codebook_{init.name}")
    how = f"Gather({centers.size}-entry codebook, Cast({'UINT4' if uint4 else 'UINT8'} {bits}-bit index))"
    return CodebookRewrite([cast, gather], saved, how, float(np.abs(diff).max()), rel)
