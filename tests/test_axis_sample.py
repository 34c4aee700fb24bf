"""Sample positions: one per stratum of the axis, fixed by the length alone."""

from __future__ import annotations

import numpy as np
import pytest

from sharescan.digest import GRID, _digest_array, grid_index
from sharescan.neighbors import axis_sample
from sharescan.sources import LoadOptions, load_model
from tests.helpers import save_safetensors


@pytest.mark.parametrize(("length", "k"), [(33, 32), (100, 32), (768, 32), (50257, 32), (1025, 1024), (3 * 10**11, 1024)])
def test_one_position_in_each_equal_stratum_of_the_axis(length: int, k: int) -> None:
    idx = axis_sample(length, k)
    strata = np.arange(k + 1) * length // k
    assert len(idx) == k
    assert ((idx >= strata[:-1]) & (idx < strata[1:])).all()


def test_a_short_axis_is_sampled_whole() -> None:
    assert axis_sample(5, 32).tolist() == [0, 1, 2, 3, 4]
    assert axis_sample(32, 32).tolist() == list(range(32))


def test_positions_are_pinned_so_stored_digests_stay_comparable() -> None:
    # A zoo store keeps samples taken at these positions; a change here must
    # come with a new store schema version (sharescan.zoo.store.SCHEMA_VERSION).
    assert axis_sample(50257, 32)[:4].tolist() == [82, 2025, 3435, 4764]
    assert axis_sample(768, 32)[:4].tolist() == [2, 36, 54, 94]


def test_positions_depend_on_the_length_not_on_the_stratum_alone() -> None:
    a, b = axis_sample(640, 32), axis_sample(641, 32)
    offsets_a, offsets_b = a - np.arange(32) * 640 // 32, b - np.arange(32) * 641 // 32
    assert not np.array_equal(offsets_a, offsets_b)


def test_a_transpose_is_sampled_at_the_transposed_elements(tmp_path) -> None:
    w = np.random.default_rng(0).standard_normal((300, 70)).astype(np.float32)
    path = save_safetensors(tmp_path / "m.safetensors", {"w": w, "t": np.ascontiguousarray(w.T)})
    entries = {e.name: e for e in load_model(str(path), 0, LoadOptions()).tensors}
    grid_w = _digest_array(entries["w"], entries["w"].read()).grid
    grid_t = _digest_array(entries["t"], entries["t"].read()).grid
    assert grid_w.shape == (GRID, GRID) and len(grid_index((300, 70))[0]) == GRID
    assert np.array_equal(grid_t, grid_w.T)


@pytest.mark.parametrize("shape", [(1000, 300), (3, 100_000), (100_000, 3), (33, 8000)])
def test_a_streamed_digest_samples_a_transpose_at_the_transposed_elements(tmp_path, shape) -> None:
    from sharescan.digest import _STREAM_BYTES, _digest_values

    w = np.random.default_rng(1).standard_normal(shape).astype(np.float32)
    assert w.nbytes >= _STREAM_BYTES  # read through a small buffer, not mapped whole
    path = save_safetensors(tmp_path / "m.safetensors", {"w": w, "t": np.ascontiguousarray(w.T)})
    entries = {e.name: e for e in load_model(str(path), 0, LoadOptions()).tensors}
    streamed_w, streamed_t = _digest_values(entries["w"]), _digest_values(entries["t"])
    assert np.array_equal(streamed_t.grid, streamed_w.grid.T)
    assert np.array_equal(streamed_w.grid, _digest_array(entries["w"], entries["w"].read()).grid)  # streamed or not: the same sample
    assert np.array_equal(streamed_t.row_sample, _digest_array(entries["t"], entries["t"].read()).row_sample)
