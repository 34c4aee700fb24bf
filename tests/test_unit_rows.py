"""unit_rows' per-row peak, taken a column at a time for short rows, is numpy's row max exactly."""

from __future__ import annotations

import numpy as np
import pytest

from sharescan.neighbors import _row_peaks, unit_rows


@pytest.mark.parametrize("shape", [(5000, 32), (100, 1), (300, 64), (300, 65), (7, 1024)])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_row_peaks_equal_numpys_row_max_with_nan_inf_and_zeros(shape: tuple[int, int], dtype: type) -> None:
    v = np.random.default_rng(0).standard_normal(shape).astype(dtype)
    v[1, 0] = np.nan
    v[2, -1] = -np.inf
    v[3] = 0.0
    v[4, 0] = -0.0
    expected = np.abs(v).max(axis=1)
    got = _row_peaks(v)
    assert got.dtype == expected.dtype
    assert np.array_equal(got, expected, equal_nan=True)


def test_unit_rows_of_short_rows_are_unit_length_and_flag_unusable_rows() -> None:
    v = np.random.default_rng(1).standard_normal((4096, 32)).astype(np.float32)
    v[0] = 0.0
    v[1, 5] = np.nan
    out, ok = unit_rows(v)
    assert ok.tolist()[:3] == [False, False, True] and ok[2:].all()
    assert np.allclose(np.linalg.norm(out[ok], axis=1), 1.0, atol=1e-6)
    assert not out[~ok].any()
