"""band_pairs' keys: each point's home key and its moves across every nonempty subset of the upper edges it is near, no more, no fewer."""

from __future__ import annotations

from itertools import combinations

import numpy as np
import pytest

from sharescan.neighbors import _edge_keys


def _reference(home: np.ndarray, upper: np.ndarray, mult: np.ndarray) -> list[tuple[int, int]]:
    """The keys spelled out: for each point, every subset of its near edges (the empty one: its home key)."""
    out = []
    for p in range(len(home)):
        near = [d for d in range(upper.shape[0]) if upper[d, p]]
        for size in range(len(near) + 1):
            for subset in combinations(near, size):
                key = np.int64(home[p])
                for d in subset:
                    key = np.int64(key + mult[d])  # wrapping, as the keys are
                out.append((int(key), p))
    return sorted(out)


@pytest.mark.parametrize("dims,share", [(1, 0.5), (3, 0.3), (6, 0.125), (9, 0.6)])
def test_edge_keys_are_every_subset_of_every_points_near_edges(dims: int, share: float) -> None:
    rng = np.random.default_rng(dims)
    n = 300
    home = rng.integers(-(2**62), 2**62, n)
    upper = rng.random((dims, n)) < share
    mult = rng.integers(1, 1 << 61, size=dims, dtype=np.int64) | 1
    with np.errstate(over="ignore"):
        points, keys = _edge_keys(home, upper, mult)
        expected = _reference(home, upper, mult)
    assert sorted(zip(keys.tolist(), points.tolist())) == expected


def test_keys_that_collide_once_shortened_still_give_only_pairs_within_the_radius(monkeypatch: pytest.MonkeyPatch) -> None:
    """band_pairs sorts keys shortened to make room for the point's number: keys that then collide
    add candidates, which the distance check drops; no pair is lost or added."""
    import sharescan.neighbors as neighbors

    rng = np.random.default_rng(3)
    x = rng.standard_normal((400, 8))
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    x[200:260] = x[:60] + 0.004 * rng.standard_normal((60, 8))
    radius = 0.02
    honest = neighbors.band_pairs(x, radius)
    real = neighbors._edge_keys

    def colliding(home: np.ndarray, upper: np.ndarray, mult: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        points, keys = real(home, upper, mult)
        return points, (keys & 1) << 62  # keys differ in their top bits only: shortened, all collide

    monkeypatch.setattr(neighbors, "_edge_keys", colliding)
    crowded = neighbors.band_pairs(x, radius)
    brute = {(i, j) for i in range(len(x)) for j in range(i + 1, len(x)) if np.sum((x[i] - x[j]) ** 2) <= radius * radius}
    assert {tuple(p) for p in crowded.tolist()} == brute == {tuple(p) for p in honest.tolist()}
    assert len(brute) >= 50
