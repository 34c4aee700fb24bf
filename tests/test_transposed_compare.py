"""The transposed relation's confirmation: b is a.T element for element, compared a slab of columns at a time."""

from __future__ import annotations

import numpy as np
import pytest

from sharescan.detect.transposed import _is_transpose


@pytest.mark.parametrize("shape", [(2, 3), (17, 40), (300, 7), (2048, 64), (5, 16), (33, 17)])
def test_a_transpose_is_found_and_one_flipped_bit_anywhere_is_not(shape: tuple[int, int]) -> None:
    rng = np.random.default_rng(shape[0] * 1000 + shape[1])
    a = rng.integers(0, 2**32, shape, dtype=np.uint32)
    b = np.ascontiguousarray(a.T)
    assert _is_transpose(a, b)
    for r, c in [(0, 0), (-1, -1), (b.shape[0] // 2, b.shape[1] // 3)]:
        flipped = b.copy()
        flipped[r, c] ^= 1
        assert not _is_transpose(a, flipped)


def test_shapes_that_are_not_transposed_never_match() -> None:
    a = np.zeros((4, 6), dtype=np.uint16)
    assert not _is_transpose(a, np.zeros((4, 6), dtype=np.uint16))
    assert _is_transpose(a, np.zeros((6, 4), dtype=np.uint16))
