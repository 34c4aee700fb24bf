"""An ONNX float initializer stored as codebook indices: Gather(codebook, Cast(indices)), or DequantizeLinear where the codebook is uniform.

Indices are UINT4 (two a byte) when the bits fit in 4 and the model's opset
is 21 or later (Cast and DequantizeLinear read UINT4 from opset 21);
otherwise UINT8. The codebook keeps the tensor's own float type, so the
rebuilt tensor has the initializer's type and shape and every reader reads it
unchanged. A codebook whose centers lie on a grid ``scale * (j - zero_point)``
with an integer zero point is the same thing as linear quantization: the
tensor is then rebuilt by ``DequantizeLinear(index, scale, zero_point)``
(float32 tensors), which runtimes know as a weight and do not need to keep
as a float copy. ``uniform=True`` asks for that grid even where k-means
would choose otherwise (the grid's range is searched for the least squared
error). Lossy: the error is measured here on the weights and by verification
on the outputs.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import numpy as np

from sharescan.codebook.kmeans import Histogram, assign, histogram, kmeans, sse

__all__ = ["CodebookRewrite", "UniformGrid", "codebook_form", "default_opset", "uniform_grid", "fit_uniform_grid", "with_uint4_opset", "FLOAT_TYPES", "UINT4_OPSET"]

logger = logging.getLogger(__name__)

# ONNX element types a codebook may stand for (onnxruntime's CPU Gather reads them): FLOAT, FLOAT16, DOUBLE.
FLOAT_TYPES = (1, 10, 11)
UINT4_OPSET = 21
_FLOAT = 1
# A center may sit this far (relative to the grid step) from its grid point and still count as on it.
_GRID_TOLERANCE = 1e-4


@dataclass(frozen=True)
class CodebookRewrite:
    nodes: list[Any]  # Cast then Gather (or one DequantizeLinear), to be placed before every reader
    saved: int  # bytes of the initializer minus indices and codebook (or scale and zero point)
    how: str  # the graph form, for the report
    max_abs_error: float
    rel_error: float  # ||w - codebook[index]|| / ||w||


@dataclass(frozen=True)
class UniformGrid:
    """Centers ``scale * (j - zero_point)`` for j in 0 .. 2^bits - 1: linear quantization's values."""

    scale: float
    zero_point: int
    bits: int

    @property
    def centers(self) -> np.ndarray:
        return self.scale * (np.arange(2**self.bits, dtype=np.float64) - self.zero_point)


def default_opset(model: Any) -> int:
    return next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), 0)


def with_uint4_opset(model: Any) -> Any:
    """``model`` converted to opset 21 (IR 10), where indices can be UINT4; the model as it is when already there or when the converter cannot."""
    from onnx import version_converter

    if default_opset(model) >= UINT4_OPSET:
        return model
    try:
        converted = version_converter.convert_version(model, UINT4_OPSET)
    except Exception as e:  # the converter lacks adapters for some ops: UINT8 indices then
        logger.info("opset %d -> %d failed (%s); indices stay UINT8", default_opset(model), UINT4_OPSET, e)
        return model
    converted.ir_version = max(converted.ir_version, 10)
    return converted


def uniform_grid(centers: np.ndarray, bits: int) -> UniformGrid | None:
    """The grid of ``2^bits`` points with an integer zero point that holds every center, if one does.

    Each center must be ``scale`` times an integer (zero lies on the grid);
    the step is tried as the smallest gap between centers and its fractions.
    """
    c = np.unique(np.asarray(centers, dtype=np.float64))
    levels = 2**bits - 1
    if c.size < 2:
        return None
    step = float(np.diff(c).min())
    for divisor in range(1, levels + 1):
        scale = step / divisor
        m = c / scale
        if np.abs(m - np.round(m)).max() > _GRID_TOLERANCE:
            continue
        q = np.round(m).astype(np.int64)
        zero = max(0, -int(q.min()))
        if zero + int(q.max()) <= levels:
            return UniformGrid(scale, zero, bits)
    return None


def fit_uniform_grid(h: Histogram, bits: int) -> UniformGrid:
    """The uniform grid with an integer zero point and least squared error on ``h``: the range searched from min-max inward.

    Trained weights carry outliers hundreds of times their mean size (a
    transformer's MLP weights reach 8 where the mean is 0.03), so the range
    is shrunk geometrically down to 1/1000 of min-max: clipping the few
    outliers costs less than a step too coarse for everything else.
    """
    x = h.mean
    lo, hi = min(float(x.min()), 0.0), max(float(x.max()), 0.0)  # zero on the grid, as quantizers keep it
    levels = 2**bits - 1
    best: UniformGrid | None = None
    best_err = np.inf
    for shrink in np.geomspace(1.0, 1e-3, 61):
        a, b = lo * shrink, hi * shrink
        scale = (b - a) / levels if b > a else 1.0
        grid = UniformGrid(scale, int(np.clip(round(-a / scale), 0, levels)), bits)
        err = sse(h, grid.centers)
        if err < best_err:
            best, best_err = grid, err
    assert best is not None
    return best


def codebook_form(graph: Any, init: Any, bits: int, opset: int, uniform: bool = False) -> CodebookRewrite | None:
    """Replace ``init`` in ``graph`` by indices + codebook + Cast + Gather (or DequantizeLinear); None when it saves nothing or cannot apply.

    ``uniform``: the codebook is the best uniform grid (linear quantization)
    instead of k-means centers. Either way a codebook that is a uniform grid
    with an integer zero point is written as DequantizeLinear for a float32
    initializer. The initializer is removed by the caller; here the new
    initializers and the nodes are made (nodes returned, initializers
    appended to ``graph``).
    """
    from onnx import TensorProto, helper, numpy_helper

    from sharescan.onnx_rewrite.graph import unique_name

    if init.data_type not in FLOAT_TYPES:
        return None
    w = numpy_helper.to_array(init)
    if w.size == 0 or not np.isfinite(w).all():
        return None  # NaN/Inf are never clustered
    x = w.astype(np.float64).reshape(-1)
    h = histogram(x)
    uint4 = bits <= 4 and opset >= UINT4_OPSET
    index_bytes = (w.size + 1) // 2 if uint4 else w.size
    grid: UniformGrid | None
    if uniform:
        grid = fit_uniform_grid(h, bits)
        centers = np.unique(grid.centers.astype(w.dtype))
    else:
        centers = np.unique(kmeans(h, 2**bits).astype(w.dtype))  # rounding to the tensor's type can join neighbours
        grid = uniform_grid(centers, bits)
    dequantize = grid is not None and init.data_type == _FLOAT and opset >= 10
    if dequantize:
        assert grid is not None
        book = grid.centers.astype(np.float32)
        index = assign(x, book.astype(np.float64))  # grid centers are increasing: the index is the quantized value
        saved = w.nbytes - index_bytes - 4 - 1
    else:
        book = centers
        index = assign(x, centers.astype(np.float64))
        saved = w.nbytes - index_bytes - centers.nbytes
    if saved <= 0:
        return None
    approx = book[index].astype(np.float64)
    diff = approx - x
    norm = float(np.linalg.norm(x))
    rel = float(np.linalg.norm(diff) / norm) if norm > 0 else 0.0
    index_name = unique_name(graph, f"{init.name}_codebook_index")
    index_type = "UINT4" if uint4 else "UINT8"
    if uint4:
        import ml_dtypes

        stored = index.astype(ml_dtypes.uint4)
    else:
        stored = index.astype(np.uint8)
    graph.initializer.append(numpy_helper.from_array(stored.reshape(w.shape), index_name))
    if dequantize:
        assert grid is not None
        scale_name = unique_name(graph, f"{init.name}_codebook_scale")
        zero_name = unique_name(graph, f"{init.name}_codebook_zero_point")
        graph.initializer.append(numpy_helper.from_array(np.array(grid.scale, dtype=np.float32), scale_name))
        graph.initializer.append(numpy_helper.from_array(np.array(grid.zero_point, dtype=stored.dtype), zero_name))
        node = helper.make_node("DequantizeLinear", [index_name, scale_name, zero_name], [init.name], name=f"sharescan_codebook_{init.name}")
        how = f"DequantizeLinear({index_type} {bits}-bit index, scale {grid.scale:.3g}, zero point {grid.zero_point})"
        return CodebookRewrite([node], saved, how, float(np.abs(diff).max()), rel)
    book_name = unique_name(graph, f"{init.name}_codebook")
    wide_name = unique_name(graph, f"{init.name}_codebook_index_int32")
    graph.initializer.append(numpy_helper.from_array(centers, book_name))
    cast = helper.make_node("Cast", [index_name], [wide_name], to=TensorProto.INT32, name=f"sharescan_codebook_cast_{init.name}")
    gather = helper.make_node("Gather", [book_name, wide_name], [init.name], axis=0, name=f"sharescan_codebook_{init.name}")
    how = f"Gather({centers.size}-entry codebook, Cast({index_type} {bits}-bit index))"
    return CodebookRewrite([cast, gather], saved, how, float(np.abs(diff).max()), rel)
