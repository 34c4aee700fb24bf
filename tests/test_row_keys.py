"""The rows detector's row keys: the wrapping sum of each row's 64-bit words times fixed odd multipliers."""

from __future__ import annotations

import numpy as np
import pytest

from sharescan.detect.rows import _row_keys


@pytest.mark.parametrize("dtype,cols", [(np.float32, 32), (np.float16, 3), (np.int8, 32), (np.float64, 1), (np.complex128, 32)])
def test_row_keys_are_the_wrapping_sum_of_words_times_multipliers(dtype: type, cols: int) -> None:
    rng = np.random.default_rng(cols)
    samples = (rng.standard_normal((257, cols)) * 50).astype(dtype)
    samples[7] = samples[100]  # equal samples, equal keys
    raw = np.ascontiguousarray(samples).view(np.uint8).reshape(len(samples), -1)
    raw = np.pad(raw, ((0, 0), (0, -raw.shape[1] % 8)))
    words = [[int.from_bytes(row[k : k + 8].tobytes(), "little") for k in range(0, len(row), 8)] for row in raw]
    mult = [int(m) for m in np.random.default_rng(0).integers(1, 1 << 63, size=raw.shape[1] // 8, dtype=np.uint64) | np.uint64(1)]
    expected = [sum(w * m for w, m in zip(row, mult)) % (1 << 64) for row in words]
    keys = _row_keys(samples)
    assert keys.dtype == np.uint64 and keys.tolist() == expected
    assert keys[7] == keys[100]
