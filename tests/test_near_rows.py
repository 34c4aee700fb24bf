"""Near-equal tensors, duplicate rows and tying candidates on planted data."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import sharescan
from sharescan.analysis import AnalysisOptions
from sharescan.detect.rows import INDEX_ITEMSIZE
from sharescan.errors import InputError
from sharescan.neighbors import close_pairs
from tests.helpers import save_safetensors

rng = np.random.default_rng(1)


def _noisy(w: np.ndarray, rel: float) -> np.ndarray:
    """w plus dense noise of relative L2 size rel."""
    noise = rng.standard_normal(w.shape)
    return (w + rel * np.linalg.norm(w) / np.linalg.norm(noise) * noise).astype(w.dtype)


def _analyze(tensors: dict[str, np.ndarray], tmp_path: Path, **options):
    path = save_safetensors(tmp_path / "m.safetensors", tensors)
    return sharescan.analyze([str(path)], AnalysisOptions(**options))


@pytest.mark.parametrize("rel", [1e-5, 1e-4, 1e-3, 1.9e-3])
def test_planted_near_copies_are_found_at_every_noise_level(tmp_path: Path, rel: float) -> None:
    w = rng.standard_normal((128, 96)).astype(np.float32)
    result = _analyze({"a": w, "b": _noisy(w, rel), "c": rng.standard_normal((128, 96)).astype(np.float32)}, tmp_path)
    (group,) = [g for g in result.groups if g.relation == "near"]
    assert sorted(m.name for m in group.members) == ["a", "b"]
    assert group.rel_error == pytest.approx(rel, rel=0.02)
    assert group.reclaimable_bytes == w.nbytes


def test_beyond_tolerance_is_not_merged_but_listed_as_candidate(tmp_path: Path) -> None:
    w = rng.standard_normal((64, 64)).astype(np.float32)
    result = _analyze({"a": w, "b": _noisy(w, 0.01)}, tmp_path)
    assert not [g for g in result.groups if g.relation == "near"]
    cand = result.candidates[0]  # the closest; a's transpose vs b comes later
    assert (cand.a.name, cand.b.name, cand.transposed) == ("a", "b", False)
    assert cand.rel_distance == pytest.approx(0.01, rel=0.05)


def test_tol_widens_what_is_merged(tmp_path: Path) -> None:
    w = rng.standard_normal((64, 64)).astype(np.float32)
    result = _analyze({"a": w, "b": _noisy(w, 0.01)}, tmp_path, tol=0.02)
    assert [g.relation for g in result.groups] == ["near"]


def test_near_transposed_copy_is_found(tmp_path: Path) -> None:
    w = rng.standard_normal((40, 24)).astype(np.float32)
    result = _analyze({"w": w, "w_t": _noisy(w.T.copy(), 5e-4)}, tmp_path)
    (group,) = result.groups
    assert group.relation == "near"
    assert [m.transposed for m in group.members] == [False, True]


def test_several_mutually_near_tensors_form_one_group(tmp_path: Path) -> None:
    w = rng.standard_normal((50, 50)).astype(np.float32)
    tensors = {f"layer{k}": _noisy(w, 3e-4) for k in range(4)}
    result = _analyze(tensors, tmp_path)
    (group,) = result.groups
    assert len(group.members) == 4
    assert group.reclaimable_bytes == 3 * w.nbytes
    assert 0 < group.rel_error <= 2e-3


def test_nan_tensors_are_never_merged_by_value(tmp_path: Path) -> None:
    w = rng.standard_normal((32, 32)).astype(np.float32)
    v = _noisy(w, 1e-5)
    w[0, 0] = np.nan
    result = _analyze({"a": w, "b": v}, tmp_path)
    assert result.groups == () and result.candidates == ()


def test_integer_tensors_are_never_near(tmp_path: Path) -> None:
    a = np.arange(1000, dtype=np.int32)
    b = a.copy()
    b[5] += 1
    result = _analyze({"a": a, "b": b}, tmp_path, tol=0.5)
    assert result.groups == ()


@pytest.mark.parametrize("tol", [0.0, 1.0, -0.1, 2.0])
def test_tolerance_outside_open_unit_interval_is_refused(tmp_path: Path, tol: float) -> None:
    with pytest.raises(InputError, match="strictly between 0 and 1"):
        _analyze({"a": np.ones(4, np.float32)}, tmp_path, tol=tol)
    with pytest.raises(InputError, match="--row-tol"):
        _analyze({"a": np.ones(4, np.float32)}, tmp_path, row_tol=tol)


def test_identical_zero_rows_of_an_embedding_are_counted_with_their_index(tmp_path: Path) -> None:
    emb = rng.standard_normal((1000, 64)).astype(np.float32)
    emb[744:] = 0.0  # 256 reserved, untrained rows
    result = _analyze({"embed": emb}, tmp_path)
    (group,) = result.groups
    assert group.relation == "rows"
    assert (group.rows.n_rows, group.rows.distinct_rows) == (1000, 745)
    row_bytes = 64 * 4
    assert group.reclaimable_bytes == 255 * row_bytes - INDEX_ITEMSIZE * 1000
    assert group.max_abs_error == 0.0


def test_near_rows_merge_only_within_row_tol(tmp_path: Path) -> None:
    emb = rng.standard_normal((500, 128)).astype(np.float32)
    for k in range(20):  # 20 rows, each near another
        emb[2 * k + 1] = _noisy(emb[2 * k], 1e-3)
    emb[100] = _noisy(emb[101], 0.05)  # far beyond row_tol
    result = _analyze({"embed": emb}, tmp_path)
    (group,) = result.groups
    assert group.rows.distinct_rows == 480
    assert group.reclaimable_bytes == 20 * 128 * 4 - INDEX_ITEMSIZE * 500
    assert 0 < group.max_abs_error < 0.05
    exact = _analyze({"embed": emb}, tmp_path, row_tol=None)
    assert exact.groups == ()  # no row is identical to another


def test_rows_shared_across_tensors_form_one_group(tmp_path: Path) -> None:
    a = rng.standard_normal((200, 32)).astype(np.float32)
    b = rng.standard_normal((100, 32)).astype(np.float32)
    b[:60] = a[:60]
    result = _analyze({"a": a, "b": b}, tmp_path)
    (group,) = result.groups
    assert sorted(m.name for m in group.members) == ["a", "b"]
    assert group.rows.distinct_rows == 240
    # only b is rebuilt (an index into a table that starts with a's rows); a stays as it is
    assert group.reclaimable_bytes == 60 * 32 * 4 - INDEX_ITEMSIZE * 100
    assert group.rows.index_bytes == INDEX_ITEMSIZE * 100


def test_rows_not_worth_an_index_are_not_reported(tmp_path: Path) -> None:
    m = rng.standard_normal((1000, 4)).astype(np.float32)
    m[:3] = 0.0  # 2 duplicate rows of 16 bytes never pay for a 4,000-byte index
    assert _analyze({"m": m}, tmp_path).groups == ()


def test_close_pairs_matches_brute_force() -> None:
    x = rng.standard_normal((800, 16))
    x[100:150] = x[150:200] + 0.002 * rng.standard_normal((50, 16))
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    radius = 0.01
    found = {tuple(p) for p in close_pairs(x, radius).tolist()}
    d = np.linalg.norm(x[:, None] - x[None], axis=2)
    truth = {(i, j) for i, j in zip(*np.nonzero(d <= radius)) if i < j}
    assert found == truth and len(truth) >= 50


def test_reported_near_rel_error_never_exceeds_tol_when_norms_differ(tmp_path: Path) -> None:
    # b = (1 - s) a + tiny noise: ||a - b|| / ||a|| is just under tol, while
    # ||a - b|| / ||b|| (the smaller norm) is just over it. The merge test and
    # the report must use the same measure, so the report stays <= tol.
    tol = 2e-3
    tensors = {}
    for k, s in enumerate((1.9985e-3, 1.999e-3, 1.9995e-3)):
        a = rng.standard_normal((64, 48)).astype(np.float32)
        tensors[f"a{k}"] = a
        tensors[f"b{k}"] = _noisy((a * (1 - s)).astype(np.float32), 1e-6)
    result = _analyze(tensors, tmp_path, tol=tol)
    near = [g for g in result.groups if g.relation == "near"]
    assert sorted(sorted(m.name for m in g.members) for g in near) == [["a0", "b0"], ["a1", "b1"], ["a2", "b2"]]
    for g in near:
        a, b = (np.asarray(tensors[m.name], np.float64) for m in g.members)
        assert g.rel_error <= tol
        assert g.rel_error == pytest.approx(np.linalg.norm(a - b) / max(np.linalg.norm(a), np.linalg.norm(b)), rel=1e-6)


def _zero_sign_pair(noise: float) -> dict[str, np.ndarray]:
    """a with a tenth of its elements +0.0, and a copy (plus noise) whose zeros are -0.0."""
    a = rng.standard_normal((64, 32)).astype(np.float32)
    zeros = rng.random(a.shape) < 0.1
    a[zeros] = 0.0
    b = _noisy(a, noise) if noise else a.copy()
    b[zeros] = -0.0
    return {"a": a, "b": b}


def test_tensors_differing_only_in_zero_signs_are_neither_identical_nor_near(tmp_path: Path) -> None:
    # Equal by value, not by bits: 1/a is +inf where 1/b is -inf. No tolerance
    # bounds that loss, and a near group would read as error 0.
    result = _analyze(_zero_sign_pair(0.0), tmp_path)
    assert [g.relation for g in result.groups] == []
    assert result.candidates == ()  # at distance 0 there is nothing to pull together by tying


def test_near_merge_counts_the_zero_signs_it_would_flip(tmp_path: Path) -> None:
    from sharescan.detect import find_aliased
    from sharescan.detect.near import find_near
    from sharescan.digest import compute_digests
    from sharescan.sources import LoadOptions, load_model

    tensors = _zero_sign_pair(1e-4)
    path = save_safetensors(tmp_path / "m.safetensors", tensors)
    entries = list(load_model(str(path), 0, LoadOptions()).tensors)
    _, units = find_aliased(entries)
    (group,) = find_near(entries, units, compute_digests(entries, units), 2e-3)
    assert group.zero_signs == int(np.count_nonzero(tensors["a"] == 0))
    assert group.max_abs_error == pytest.approx(float(np.abs(tensors["a"].astype(np.float64) - tensors["b"]).max()))


def test_candidate_search_memory_is_linear_in_group_members() -> None:
    # A group of n copies must not be expanded into its n * (n - 1) pairs:
    # 20,000 identical biases took 24 GB that way.
    import tracemalloc

    from sharescan.detect.candidates import find_candidates
    from sharescan.groups import Group

    copies = Group("identical", tuple(range(1500)))
    tracemalloc.start()
    try:
        assert find_candidates([], [], {}, [copies], count=5) == []
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 2_000_000  # a set of its 2.2 million pairs takes over 200 MB


def test_tensors_sharing_rows_are_not_tying_candidates_of_each_other(tmp_path: Path) -> None:
    a = rng.standard_normal((16, 64)).astype(np.float32)
    b = a.copy()
    b[8:] = rng.standard_normal((8, 64))  # half the rows shared: a rows group, far from near
    c = _noisy(a, 0.2)  # within tying distance of a, not of b (b's other half is unrelated)
    d = _noisy(b, 0.2)
    result = _analyze({"a": a, "b": b, "c": c, "d": d}, tmp_path)
    assert [g.relation for g in result.groups] == ["rows"]
    pairs = {frozenset((cand.a.name, cand.b.name)) for cand in result.candidates}
    assert frozenset(("a", "b")) not in pairs
    assert pairs >= {frozenset(("a", "c")), frozenset(("b", "d"))}  # the others are still listed


def test_large_near_cluster_is_grouped_with_few_exact_measurements(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # 3,000 mutually near tensors used to be measured pair by pair (4.5 million
    # exact distances); each must now be measured against a kept tensor, a few times at most.
    from sharescan.detect import near
    from sharescan.digest import compute_digests
    from sharescan.sources import LoadOptions, load_model

    tol, n = 2e-3, 3000
    base = rng.standard_normal(16).astype(np.float32)
    tensors = {f"b{i}": _noisy(base, 4e-4 if i % 3 else 1e-5) for i in range(n)}
    tensors["far"] = rng.standard_normal(16).astype(np.float32)
    path = save_safetensors(tmp_path / "m.safetensors", tensors)
    entries = load_model(str(path), 0, LoadOptions()).tensors
    units = list(range(len(entries)))
    digests = compute_digests(entries, units)
    measured = 0
    exact = near.distance

    def counting(*args, **kwargs):
        nonlocal measured
        measured += 1
        return exact(*args, **kwargs)

    monkeypatch.setattr(near, "distance", counting)
    (group,) = near.find_near(entries, units, digests, tol)
    names = [entries[i].name for i in group.members]
    assert sorted(names) == sorted(f"b{i}" for i in range(n))
    values = {name: tensors[name].astype(np.float64) for name in names}
    kept = values[names[0]]
    for name in names[1:]:
        other = values[name]
        assert np.linalg.norm(kept - other) / max(np.linalg.norm(kept), np.linalg.norm(other)) <= tol
    assert group.rel_error <= tol
    assert measured < 3 * n
