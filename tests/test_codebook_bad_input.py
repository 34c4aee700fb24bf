"""The ONNX codebook forms leave alone what must not be clustered: NaN/Inf, integers, tensors smaller than their codebook."""

from __future__ import annotations

import numpy as np
import pytest
from onnx import helper, numpy_helper

from sharescan.codebook.grouped_form import grouped_codebook_form
from sharescan.codebook.onnx_form import codebook_form

rng = np.random.default_rng(2)


def _graph():  # type: ignore[no-untyped-def]
    return helper.make_graph([], "g", [], [])


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
@pytest.mark.parametrize("uniform", [False, True])
def test_nan_or_inf_weights_are_never_clustered(bad: float, uniform: bool) -> None:
    w = rng.normal(size=(32, 32)).astype(np.float32)
    w[5, 7] = bad
    g = _graph()
    assert codebook_form(g, numpy_helper.from_array(w, "w"), 4, 21, uniform=uniform) is None
    assert grouped_codebook_form(g, numpy_helper.from_array(w, "w"), 4, 21, 8) is None
    assert len(g.initializer) == 0  # nothing added to the graph


def test_integer_tensors_are_left_as_they_are() -> None:
    g = _graph()
    ids = numpy_helper.from_array(np.arange(4096, dtype=np.int64).reshape(64, 64), "ids")
    assert codebook_form(g, ids, 4, 21) is None and codebook_form(g, ids, 4, 21, uniform=True) is None
    assert len(g.initializer) == 0


def test_a_tensor_smaller_than_its_codebook_is_left_as_it_is() -> None:
    # 200 float32 values = 800 B; at 8 bits: 200 B of indices + a 256-entry float32 codebook (1,024 B) is more
    g = _graph()
    assert codebook_form(g, numpy_helper.from_array(rng.normal(size=200).astype(np.float32), "small"), 8, 17) is None
    assert len(g.initializer) == 0
    # the same values at 2 bits save bytes and are coded
    assert codebook_form(g, numpy_helper.from_array(rng.normal(size=200).astype(np.float32), "small"), 2, 17) is not None
