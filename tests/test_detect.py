"""Exact relations on planted tensors, and byte accounting that never double counts."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import sharescan
from tests.helpers import save_safetensors

rng = np.random.default_rng(0)


def _groups(result, relation: str) -> list[list[str]]:
    return [[m.name for m in g.members] for g in result.groups if g.relation == relation]


def test_identical_copies_are_grouped_and_all_but_one_reclaimed(tmp_path: Path) -> None:
    w = rng.standard_normal((16, 8)).astype(np.float32)
    path = save_safetensors(tmp_path / "m.safetensors", {"a": w, "b": w.copy(), "c": w.copy(), "d": w + 1})
    result = sharescan.analyze([str(path)])
    assert _groups(result, "identical") == [["a", "b", "c"]]
    assert result.totals.reclaimable_bytes == 2 * w.nbytes
    assert result.totals.unique_bytes == 4 * w.nbytes


def test_identical_is_bitwise_so_signed_zeros_differ(tmp_path: Path) -> None:
    zeros = np.zeros(64, np.float32)
    path = save_safetensors(tmp_path / "m.safetensors", {"pos": zeros, "neg": -zeros})
    result = sharescan.analyze([str(path)])
    assert not _groups(result, "identical")


def test_nan_payloads_compare_as_bytes(tmp_path: Path) -> None:
    a = np.full(16, np.nan, np.float32)
    b = a.view(np.uint32).copy()
    b[3] ^= 1  # another NaN payload
    c = a.copy()
    path = save_safetensors(tmp_path / "m.safetensors", {"a": a, "b": b.view(np.float32), "c": c})
    result = sharescan.analyze([str(path)])
    assert _groups(result, "identical") == [["a", "c"]]
    assert set(result.models[0].nonfinite) == {"a", "b", "c"}
    assert any("NaN" in w for w in result.warnings)


def test_same_bytes_with_other_dtype_or_shape_is_not_identical(tmp_path: Path) -> None:
    w = rng.standard_normal((4, 6)).astype(np.float32)
    path = save_safetensors(tmp_path / "m.safetensors", {"a": w, "reshaped": w.reshape(6, 4), "as_int": w.view(np.int32)})
    result = sharescan.analyze([str(path)])
    assert not _groups(result, "identical")


def test_transposed_copy_is_found_and_reclaimed_once(tmp_path: Path) -> None:
    emb = rng.standard_normal((50, 16)).astype(np.float32)
    path = save_safetensors(tmp_path / "m.safetensors", {"emb": emb, "head_t": emb.T.copy(), "other": rng.standard_normal((16, 50)).astype(np.float32)})
    result = sharescan.analyze([str(path)])
    assert _groups(result, "transposed") == [["emb", "head_t"]]
    assert result.totals.reclaimable_bytes == emb.nbytes


def test_square_transposed_copy_found_but_symmetric_matrix_is_not_its_own_copy(tmp_path: Path) -> None:
    a = rng.standard_normal((8, 8)).astype(np.float32)
    sym = a + a.T
    path = save_safetensors(tmp_path / "m.safetensors", {"a": a, "a_t": a.T.copy(), "sym": sym})
    result = sharescan.analyze([str(path)])
    assert _groups(result, "transposed") == [["a", "a_t"]]


def test_negated_copy_is_bitwise_sign_flip(tmp_path: Path) -> None:
    w = rng.standard_normal((32, 4)).astype(np.float16)
    w[0, 0] = 0.0
    path = save_safetensors(tmp_path / "m.safetensors", {"w": w, "w_neg": -w})
    result = sharescan.analyze([str(path)])
    assert _groups(result, "negated") == [["w", "w_neg"]]
    assert dict(result.totals.by_relation) == {"aliased": 0, "identical": 0, "transposed": 0, "negated": w.nbytes, "scaled": 0, "permuted": 0, "near": 0, "rows": 0}


@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.float16])
@pytest.mark.parametrize("c", [0.5, -3.0, 1.7])
def test_scaled_copy_reports_its_factor(tmp_path: Path, dtype, c: float) -> None:
    w = rng.standard_normal((12, 10)).astype(dtype)
    scaled = np.multiply(w, np.array(c, dtype=dtype), dtype=dtype)
    path = save_safetensors(tmp_path / "m.safetensors", {"w": w, "w_scaled": scaled})
    result = sharescan.analyze([str(path)])
    (group,) = [g for g in result.groups if g.relation == "scaled"]
    assert [m.name for m in group.members] == ["w", "w_scaled"]
    assert group.members[1].scale == pytest.approx(float(np.array(c, dtype=dtype)))
    assert group.reclaimable_bytes == w.nbytes


def test_approximately_scaled_copy_is_not_exact(tmp_path: Path) -> None:
    w = rng.standard_normal((12, 10)).astype(np.float32)
    s = (w * 2.0).astype(np.float32)
    s[5, 5] = np.nextafter(s[5, 5], np.float32(np.inf))  # one ulp off in one element
    path = save_safetensors(tmp_path / "m.safetensors", {"w": w, "s": s})
    result = sharescan.analyze([str(path)])
    assert not _groups(result, "scaled")


def test_scalars_are_never_scaled_copies_of_each_other(tmp_path: Path) -> None:
    path = save_safetensors(tmp_path / "m.safetensors", {"x": np.array(2.0, np.float32), "y": np.array(3.0, np.float32)})
    result = sharescan.analyze([str(path)])
    assert not result.groups


def test_integer_tensors_are_compared_exactly_only(tmp_path: Path) -> None:
    ids = np.arange(20, dtype=np.int64)
    path = save_safetensors(tmp_path / "m.safetensors", {"a": ids, "b": ids.copy(), "double": ids * 2, "neg": -ids})
    result = sharescan.analyze([str(path)])
    assert [g.relation for g in result.groups] == ["identical"]


def test_a_tensor_is_reclaimed_once_even_if_related_several_ways(tmp_path: Path) -> None:
    # b is identical to a, t is a's transpose, n is a's negation: three copies, three reclaims,
    # and identical copies of a transposed copy are not counted again.
    a = rng.standard_normal((6, 5)).astype(np.float32)
    tensors = {"a": a, "b": a.copy(), "t": a.T.copy(), "t2": a.T.copy(), "n": -a}
    path = save_safetensors(tmp_path / "m.safetensors", tensors)
    result = sharescan.analyze([str(path)])
    assert result.totals.reclaimable_bytes == 4 * a.nbytes
    assert result.totals.after_bytes == a.nbytes
    assert sum(g.reclaimable_bytes for g in result.groups) == result.totals.reclaimable_bytes


def test_relations_are_found_across_models(tmp_path: Path) -> None:
    shared = rng.standard_normal((10, 10)).astype(np.float32)
    a = save_safetensors(tmp_path / "a.safetensors", {"trunk": shared, "head": rng.standard_normal((3, 10)).astype(np.float32)})
    b = save_safetensors(tmp_path / "b.safetensors", {"trunk": shared.copy(), "head": rng.standard_normal((3, 10)).astype(np.float32)})
    result = sharescan.analyze([str(a), str(b)])
    (group,) = result.groups
    assert group.relation == "identical"
    assert [m.model for m in group.members] == [str(a), str(b)]
    assert result.models[1].reclaimable_bytes == shared.nbytes
    assert result.models[0].reclaimable_bytes == 0


def test_zero_size_and_scalar_tensors_are_handled(tmp_path: Path) -> None:
    path = save_safetensors(
        tmp_path / "m.safetensors",
        {"empty": np.zeros((0, 4), np.float32), "empty2": np.zeros((0, 4), np.float32), "s": np.array(1.5, np.float32), "s2": np.array(1.5, np.float32)},
    )
    result = sharescan.analyze([str(path)])
    assert _groups(result, "identical") == [["s", "s2"]]  # zero-size tensors share nothing
    assert result.totals.reclaimable_bytes == 4


def test_bool_and_small_int_dtypes(tmp_path: Path) -> None:
    mask = rng.random((8, 8)) > 0.5
    q = rng.integers(-128, 127, (8, 8), dtype=np.int8)
    path = save_safetensors(tmp_path / "m.safetensors", {"m1": mask, "m2": mask.copy(), "q1": q, "q2": q.copy(), "u": q.view(np.uint8)})
    result = sharescan.analyze([str(path)])
    assert sorted(_groups(result, "identical")) == [["m1", "m2"], ["q1", "q2"]]
    assert result.totals.reclaimable_bytes == 64 + 64


def test_negated_copies_inside_a_crowd_of_near_equal_tensors_are_found_without_pairing_the_crowd(tmp_path: Path) -> None:
    from sharescan.detect.search import direction_pairs
    from sharescan.digest import compute_digests
    from sharescan.sources import LoadOptions, load_model

    base = rng.standard_normal(64).astype(np.float32)
    crowd = {f"b{i}": (base + 1e-5 * rng.standard_normal(64)).astype(np.float32) for i in range(400)}
    crowd["neg"] = -crowd["b7"]
    path = save_safetensors(tmp_path / "m.safetensors", crowd)
    result = sharescan.analyze([str(path)], sharescan.AnalysisOptions(tol=None, row_tol=None, candidates=0))
    assert _groups(result, "negated") == [["b7", "neg"]]
    # Every tensor points the same way: all 401 * 400 / 2 pairs are parallel.
    entries = load_model(str(path), 0, LoadOptions()).tensors
    units = list(range(len(entries)))
    pairs = direction_pairs(entries, units, compute_digests(entries, units))
    assert len(pairs) < 4 * len(entries)


def test_identical_compares_block_by_block_and_finds_a_difference_in_any_block(tmp_path: Path) -> None:
    from sharescan.detect.identical import same_content
    from sharescan.sources import LoadOptions, load_model

    w = rng.standard_normal((64, 32)).astype(np.float32)
    late, middle, early = w.copy(), w.copy(), w.copy()
    late.reshape(-1)[-1] = np.nextafter(late.reshape(-1)[-1], np.float32(np.inf))  # one bit, last block
    middle[30, 3] = -middle[30, 3]
    early[0, 0] = -early[0, 0]
    path = save_safetensors(tmp_path / "m.safetensors", {"a": w, "b": w.copy(), "late": late, "middle": middle, "early": early})
    entries = {e.name: e for e in load_model(str(path), 0, LoadOptions()).tensors}
    # The last block shorter, or one block for all; spans on 1 to 3 threads (one block each at most, for 1000-byte blocks).
    for block in (1, 100, 1000, w.nbytes, 1 << 24):
        for threads in (1, 2, 3):
            assert same_content(entries["a"], entries["b"], block, threads)
            for changed in ("late", "middle", "early"):
                assert not same_content(entries["a"], entries[changed], block, threads), (block, threads, changed)


def test_a_file_cut_short_under_a_comparison_on_threads_is_one_input_error(tmp_path: Path) -> None:
    from sharescan.detect.identical import same_content
    from sharescan.errors import InputError
    from sharescan.sources import LoadOptions, load_model

    w = rng.standard_normal((256, 64)).astype(np.float32)
    path = save_safetensors(tmp_path / "m.safetensors", {"a": w, "b": w.copy()})
    entries = {e.name: e for e in load_model(str(path), 0, LoadOptions()).tensors}
    with path.open("r+b") as f:
        f.truncate(path.stat().st_size - 4096)  # the end of the later tensor is gone
    with pytest.raises(InputError, match="changed while it was read"):
        same_content(entries["a"], entries["b"], 1024, 2)


def test_identical_reads_file_tensors_through_a_buffer_without_mapping_them(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from sharescan.detect.identical import find_identical
    from sharescan.digest import compute_digests
    from sharescan.sources import LoadOptions, load_model
    from sharescan.sources.mapped import MappedRead

    w = rng.standard_normal((256, 64)).astype(np.float32)  # 64 KiB: a mapped reader of its own
    path = save_safetensors(tmp_path / "m.safetensors", {"a": w, "b": w.copy(), "c": -w})
    entries = load_model(str(path), 0, LoadOptions()).tensors
    digests = compute_digests(entries, [0, 1, 2], lambda n: None)
    mapped: list[tuple[int, ...]] = []
    original = MappedRead.__call__

    def spy(self: MappedRead, populate: bool = True) -> np.ndarray:
        mapped.append(self.shape)
        return original(self, populate)

    monkeypatch.setattr(MappedRead, "__call__", spy)
    assert [g.members for g in find_identical(entries, [0, 1, 2], digests)] == [(0, 1)]
    assert mapped == []  # compared through pread buffers: no tensor's pages were mapped


def test_permuted_hashes_lines_only_of_tensors_whose_bit_totals_match(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from sharescan.detect import permuted

    w = rng.standard_normal((48, 40)).astype(np.float32)
    copy = w[rng.permutation(48)][:, rng.permutation(40)]
    other = w.copy()
    other[3, 5] = np.nextafter(other[3, 5], np.float32(np.inf))  # the same norm, one bit apart
    path = save_safetensors(tmp_path / "m.safetensors", {"w": w, "copy": copy, "other": other})
    hashed: list[tuple[int, ...]] = []
    line_sums = permuted._line_sums

    def spy(entry):  # type: ignore[no-untyped-def]
        hashed.append(entry.shape)
        return line_sums(entry)

    monkeypatch.setattr(permuted, "_line_sums", spy)
    result = sharescan.analyze([str(path)], sharescan.AnalysisOptions(tol=None))
    assert [sorted(g) for g in _groups(result, "permuted")] == [["copy", "w"]]
    assert len(hashed) == 2  # w and its copy; other's bits add up to another total


@pytest.mark.parametrize("block", [7, 64, 1 << 16])
def test_distance_by_blocks_matches_one_float64_pass_and_counts_signed_zeros(block: int) -> None:
    from sharescan.detect.common import distance
    from sharescan.table import TensorEntry

    a = rng.standard_normal((40, 30)).astype(np.float32)
    a[::5, ::4] = 0.0
    b = a + np.float32(1e-3) * rng.standard_normal(a.shape).astype(np.float32)
    b[::5, ::4] = 0.0
    b[::10, ::4] = -0.0  # 4 x 8 elements: +0.0 against -0.0
    entry = lambda x, name: TensorEntry(0, name, x.shape, "float32", name, read=lambda: x)  # noqa: E731
    d = distance(entry(a, "a"), entry(b, "b"), block=block)
    x, y = a.astype(np.float64), b.astype(np.float64)
    assert d.zero_signs == 32
    assert d.max_abs == np.abs(x - y).max()
    np.testing.assert_allclose([d.diff_norm, d.norm_a, d.norm_b], [np.linalg.norm(x - y), np.linalg.norm(x), np.linalg.norm(y)], rtol=1e-12)
    t = distance(entry(a, "a"), entry(np.ascontiguousarray(b.T), "bt"), transposed=True, block=block)
    assert (t.zero_signs, t.max_abs) == (d.zero_signs, d.max_abs)


def test_near_never_reads_a_pair_whose_norms_are_further_apart_than_tol(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # | ||a|| - ||b|| | <= ||a - b||: a copy 1% larger (with noise, so not a scaled
    # copy) is close on the samples' directions yet cannot be within tol = 2e-3.
    import sharescan.detect.near as near

    rng = np.random.default_rng(5)
    w = rng.standard_normal((64, 64)).astype(np.float32)
    bigger = (w * 1.01 + rng.standard_normal(w.shape).astype(np.float32) * 1e-4).astype(np.float32)
    close = (w + rng.standard_normal(w.shape).astype(np.float32) * 1e-4).astype(np.float32)
    path = save_safetensors(tmp_path / "m.safetensors", {"a": w, "b": bigger, "c": close})
    measured: list[tuple[str, str]] = []
    real = near.measure_pairs

    def counting(entries, pairs):  # type: ignore[no-untyped-def]
        measured.extend((entries[a].name, entries[b].name) for a, b, _ in pairs)
        return real(entries, pairs)

    monkeypatch.setattr(near, "measure_pairs", counting)
    result = sharescan.analyze(path)
    assert [sorted(e.name for e in g.members) for g in result.groups if g.relation == "near"] == [["a", "c"]]
    assert measured and all("b" not in pair for pair in measured)
