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
    """a with a tenth of its elements +0.0, and a copy (plus noise) whose zeros are -0.0.

    Every row holds a zero, so no row of b is a bit-for-bit copy of a's (rows
    without one would be identical rows across the two tensors).
    """
    local = np.random.default_rng(17)  # its own generator: the case must not depend on which tests ran before
    a = local.standard_normal((64, 32)).astype(np.float32)
    zeros = local.random(a.shape) < 0.1
    zeros[np.arange(64), local.integers(0, 32, 64)] = True
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

    def counting(entries, pairs):  # type: ignore[no-untyped-def]
        nonlocal measured
        measured += len(pairs)
        return near.measure_pairs(entries, pairs)

    (group,) = near.find_near(entries, units, digests, tol, counting)
    names = [entries[i].name for i in group.members]
    assert sorted(names) == sorted(f"b{i}" for i in range(n))
    values = {name: tensors[name].astype(np.float64) for name in names}
    kept = values[names[0]]
    for name in names[1:]:
        other = values[name]
        assert np.linalg.norm(kept - other) / max(np.linalg.norm(kept), np.linalg.norm(other)) <= tol
    assert group.rel_error <= tol
    assert measured < 3 * n


def _brute_pairs(x: np.ndarray, radius: float, labels: np.ndarray | None = None) -> set[tuple[int, int]]:
    """Every pair within radius (same label), each distance computed: in blocks of rows, to bound memory."""
    out = set()
    for s in range(0, len(x), 64):
        diff = x[s : s + 64, None] - x[None]
        close = np.einsum("ijk,ijk->ij", diff, diff) <= radius * radius
        if labels is not None:
            close &= labels[s : s + 64, None] == labels[None]
        out.update((s + int(i), int(j)) for i, j in zip(*np.nonzero(close)) if s + i < j)
    return out


@pytest.mark.parametrize("seed", range(6))
def test_band_pairs_finds_what_every_pair_compared_finds(seed: int) -> None:
    from sharescan.neighbors import band_pairs

    r = np.random.default_rng(seed)
    n, dims = int(r.integers(200, 1200)), int(r.choice([4, 16, 32]))
    x = r.standard_normal((n, dims))
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    radius = 0.012
    # Pairs just inside and just outside the radius: the ones a missed edge loses first.
    step = r.standard_normal((n // 4, dims))
    step *= radius * r.uniform(0.9, 1.02, (n // 4, 1)) / np.linalg.norm(step, axis=1, keepdims=True)
    x[: n // 4] = x[n // 4 : 2 * (n // 4)] + step
    x[-40:] = x[-41] + 2e-3 * r.standard_normal((40, dims))  # a crowd: 780 pairs in one cell
    labels = r.integers(0, 3, n) if seed % 2 else None
    found = band_pairs(x.astype(np.float32) if seed % 3 == 0 else x, radius, labels=labels)
    truth = _brute_pairs(x.astype(np.float32) if seed % 3 == 0 else x, radius, labels)
    assert {tuple(p) for p in found.tolist()} == truth and len(truth) >= 40
    assert found.tolist() == sorted(found.tolist())  # ordered like close_pairs
    np.testing.assert_array_equal(found, close_pairs(x.astype(np.float32) if seed % 3 == 0 else x, radius, labels=labels))


def test_band_pairs_finds_every_pair_at_the_radius_whatever_slab_edges_lie_between() -> None:
    # Thousands of pairs just inside the radius, in random directions: many
    # straddle slab edges in several bands at once, in opposite directions
    # (one point below in one band, above in another), which only the keys
    # moved up across each point's own upper edges can bring together.
    from sharescan.neighbors import band_pairs

    r = np.random.default_rng(7)
    m, dims, radius = 3000, 32, 0.012
    base = r.standard_normal((m, dims))
    base /= np.linalg.norm(base, axis=1, keepdims=True)
    step = r.standard_normal((m, dims))
    step *= radius * 0.999 / np.linalg.norm(step, axis=1, keepdims=True)
    x = np.concatenate([base, base + step])
    found = {tuple(p) for p in band_pairs(x, radius).tolist()}
    assert {(k, k + m) for k in range(m)} <= found
    assert found == _brute_pairs(x, radius, None)


def _reference_merge_near_rows(samples, owner, label, dtype, row, row_tol, errors, abs_errors) -> None:
    """The near-row merge before the banded index: every pair of samples compared, each candidate measured alone."""
    from sharescan.detect.search import MARGIN
    from sharescan.digest import float_values
    from sharescan.neighbors import unit_rows

    reps = np.flatnonzero(label == np.arange(len(label)))
    values, ok = unit_rows(float_values(samples[reps], dtype).astype(np.float32, copy=False))
    reps, values = reps[ok], values[ok]
    pairs = sorted(_brute_pairs(values, 2 * MARGIN * row_tol, owner[reps]))
    neighbours: dict[int, list[tuple[int, float, float]]] = {}
    for a, b in pairs:
        ra, rb = int(reps[a]), int(reps[b])
        x = float_values(row(ra), dtype).astype(np.float64)
        y = float_values(row(rb), dtype).astype(np.float64)
        diff = float(np.linalg.norm(x - y))
        scale = max(float(np.linalg.norm(x)), float(np.linalg.norm(y)))
        if scale > 0 and diff <= row_tol * scale:
            worst = float(np.abs(x - y).max())
            neighbours.setdefault(ra, []).append((rb, diff, worst))
            neighbours.setdefault(rb, []).append((ra, diff, worst))
    claimed: set[int] = set()
    for rep in sorted(neighbours, key=lambda r: (-len(neighbours[r]), r)):
        if rep in claimed:
            continue
        claimed.add(rep)
        for other, diff, worst in neighbours[rep]:
            if other not in claimed:
                claimed.add(other)
                moved = label == other
                label[moved] = rep
                errors[moved] = diff * diff
                abs_errors[moved] = worst


def _row_family(r: np.random.Generator) -> dict[str, np.ndarray]:
    """Two or three tensors of one row width: near rows at several distances, crowds, exact copies."""
    cols = int(r.choice([16, 24, 64, 100]))
    dtype = r.choice([np.float32, np.float16])
    out = {}
    for k in range(int(r.integers(2, 4))):
        n = int(r.integers(300, 1500))
        t = r.standard_normal((n, cols))
        planted = r.choice(n, (n // 4, 2), replace=False)
        for a, b in planted:
            t[b] = t[a] * (1 + r.choice([2e-4, 1e-3, 1.9e-3, 2.5e-3, 5e-3]) * r.standard_normal(cols) / np.sqrt(cols))
        crowd = r.choice(n, 30, replace=False)
        t[crowd] = t[crowd[0]] + 4e-4 * r.standard_normal((30, cols))
        t[r.choice(n, 20)] = 0.0  # exact copies: one class, searched once
        out[f"t{k}"] = t.astype(dtype)
    return out


@pytest.mark.parametrize("seed", range(8))
def test_near_rows_are_those_every_pair_compared_finds(tmp_path: Path, seed: int, monkeypatch: pytest.MonkeyPatch) -> None:
    from sharescan.detect import rows
    from sharescan.detect.aliased import find_aliased
    from sharescan.digest import compute_digests
    from sharescan.sources import LoadOptions, load_model

    path = save_safetensors(tmp_path / "m.safetensors", _row_family(np.random.default_rng(100 + seed)))
    entries = list(load_model(str(path), 0, LoadOptions()).tensors)
    _, units = find_aliased(entries)
    digests = compute_digests(entries, units)
    found = rows.find_rows(entries, units, digests, 2e-3)
    monkeypatch.setattr(rows, "_merge_near_rows", _reference_merge_near_rows)
    expected = rows.find_rows(entries, units, digests, 2e-3)
    assert [(g.members, g.rows) for g in found] == [(g.members, g.rows) for g in expected]
    assert found and any(g.rows.n_rows - g.rows.distinct_rows > 30 for g in found)
    for g, e in zip(found, expected):
        assert g.max_abs_error == pytest.approx(e.max_abs_error, rel=1e-12, abs=0)
        assert g.rel_error == pytest.approx(e.rel_error, rel=1e-9, abs=0)


def test_every_planted_near_row_is_found_among_128k_rows() -> None:
    from sharescan.detect.aliased import find_aliased
    from sharescan.detect.rows import find_rows
    from sharescan.digest import compute_digests
    from sharescan.sources.memory import load_object

    r = np.random.default_rng(7)
    n, cols, planted = 128_000, 64, 3000
    emb = r.standard_normal((n, cols)).astype(np.float32)
    a = r.choice(n, 2 * planted, replace=False)
    src, dst = a[:planted], a[planted:]
    emb[dst] = emb[src] * (1 + 1e-3 * r.standard_normal((planted, cols)) / np.sqrt(cols)).astype(np.float32)
    entries = list(load_object({"embed": emb}, 0, "<state dict>").tensors)
    _, units = find_aliased(entries)
    (group,) = find_rows(entries, units, compute_digests(entries, units), 2e-3)
    assert group.rows.n_rows - group.rows.distinct_rows == planted  # every planted row, nothing else
    assert group.rows.reclaimed == (planted * cols * 4 - INDEX_ITEMSIZE * n,)
    assert 0 < group.max_abs_error < 0.05


def test_search_vectors_finds_the_same_pairs_from_one_product_of_a_dense_crowd_as_pair_by_pair(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    import sharescan.detect.search as search

    base = rng.standard_normal(1024)
    # A crowd of 300 fine-tunes (most pairs within the radius), some farther out, and strangers.
    crowd = base + rng.standard_normal((300, 1024)) * rng.choice([1e-3, 3e-3, 6e-3], size=(300, 1))
    vectors = np.concatenate([crowd, rng.standard_normal((40, 1024))])
    radius = 2 * search.MARGIN * 2e-3
    dense = search.search_vectors(vectors, radius)
    assert len(dense) * search._GRAM_DENSITY >= len(vectors) ** 2  # the product was taken
    monkeypatch.setattr(search, "_GRAM_POINTS", 0)  # pair by pair
    one_by_one = search.search_vectors(vectors, radius)
    assert len(dense) > 0
    assert sorted(map(tuple, dense.tolist())) == sorted(map(tuple, one_by_one.tolist()))
