"""Exact pair distances: the scalar relative distance agrees with the vector one, and batched measuring with one pair at a time."""

from __future__ import annotations

import math

import numpy as np

from sharescan.detect.common import Distance, distance, measure_pairs, relative_error
from sharescan.table import TensorEntry

rng = np.random.default_rng(0)


def test_distance_relative_equals_relative_error_bit_for_bit_including_zero_and_infinite_norms() -> None:
    cases = [(float(d), float(a), float(b)) for d, a, b in rng.random((200, 3)) * 10]
    cases += [(0.0, 0.0, 0.0), (1.0, 0.0, 0.0), (0.0, 1.0, 0.0), (math.inf, math.inf, 1.0), (1.0, math.inf, 2.0), (3.0, 1e-300, 1e-310)]
    for diff, a, b in cases:
        got = Distance(0.0, diff, a, b).relative
        want = float(relative_error(diff, a, b))
        assert got == want or (math.isnan(got) and math.isnan(want)), (diff, a, b, got, want)


def _entry(k: int, array: np.ndarray, reads: list[int]) -> TensorEntry:
    def read() -> np.ndarray:
        reads.append(k)
        return array

    return TensorEntry(0, f"t{k}", array.shape, "float32", f"t{k}", read)


def test_measure_pairs_matches_distance_pair_by_pair_and_reads_a_shared_tensor_once() -> None:
    base = rng.standard_normal((16, 24)).astype(np.float32)
    big = rng.standard_normal((160, 128)).astype(np.float32)  # over the element count measured as table rows
    zeros = np.where(rng.random(base.shape) < 0.3, np.float32(0), base)
    signed = np.where(zeros == 0, np.float32(-0.0), zeros)
    arrays = [base, base + 1e-3 * rng.standard_normal(base.shape).astype(np.float32), base.T.copy(), -base, big, big.T.copy() * np.float32(1.0001), zeros, signed]
    reads: list[int] = []
    entries = [_entry(k, a, reads) for k, a in enumerate(arrays)]
    pairs = [(0, 1, False), (0, 2, True), (4, 5, True), (0, 3, False), (1, 2, True), (6, 7, False), (5, 4, True)]
    batch = measure_pairs(entries, pairs)
    assert reads.count(0) == 1, "tensor 0 is in three pairs of the batch and should be read once"
    for (a, b, t), d in zip(pairs, batch):
        one = distance(entries[a], entries[b], transposed=t)
        assert (d.max_abs, d.diff_norm, d.norm_a, d.norm_b, d.zero_signs) == (one.max_abs, one.diff_norm, one.norm_a, one.norm_b, one.zero_signs)
    assert batch[1].diff_norm == 0  # the transposed copy, compared transposed
    assert batch[5].diff_norm == 0 and batch[5].zero_signs == int(np.count_nonzero(zeros == 0)) > 0


def test_pair_chunks_bound_pairs_and_elements_and_keep_every_pair_in_order(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    import sharescan.detect.common as common

    monkeypatch.setattr(common, "_PAIRS_AT_ONCE", 5)
    monkeypatch.setattr(common, "_ELEMENTS_AT_ONCE", 100)
    sizes = {i: int(s) for i, s in enumerate(rng.integers(1, 40, size=30))}
    sizes[29] = 500  # one pair over the bound alone still gets a chunk
    pairs = [(int(a), int(b), False) for a, b in rng.integers(0, 30, size=(40, 2))] + [(29, 0, False)]
    chunks = list(common.pair_chunks(pairs, sizes.__getitem__))
    assert [p for c in chunks for p in c] == pairs
    for c in chunks:
        assert 1 <= len(c) <= 5
        assert len(c) == 1 or sum(sizes[a] + sizes[b] for a, b, _ in c) <= 100


def test_a_large_transposed_pair_measures_as_the_transpose_copied_out_bit_for_bit() -> None:
    from sharescan.detect.common import distance_of

    a = rng.standard_normal((300, 517)).astype(np.float32)  # over the row-table size, odd widths
    a[0, :7] = 0
    b = (a.T + np.float32(1e-3) * rng.standard_normal(a.T.shape).astype(np.float32)).astype(np.float32)
    b[:5, 0] = np.float32(-0.0)
    turned = distance_of(a, "float32", b, "float32", transposed=True)
    copied = distance_of(np.ascontiguousarray(a.T), "float32", b, "float32")
    assert (turned.max_abs, turned.diff_norm, turned.norm_a, turned.norm_b, turned.zero_signs) == (copied.max_abs, copied.diff_norm, copied.norm_a, copied.norm_b, copied.zero_signs)
    assert turned.zero_signs == 5


def test_large_tensors_streamed_through_buffers_give_the_analysis_of_whole_reads(tmp_path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """Near pairs, scaled candidates and permutation invariants read large tensors a block at a time: same groups, same errors."""
    import sharescan
    import sharescan.detect.common as common
    from sharescan.detect import scaled
    from tests.helpers import save_safetensors

    w = rng.standard_normal((96, 80)).astype(np.float32)
    v = rng.standard_normal((96, 80)).astype(np.float32)
    tensors = {  # names sort in file order: w is kept, each other a copy of it or of v
        "a_w": w,
        "b_scaled": (w * np.float32(2.5)).astype(np.float32),
        "c_near": (w + np.float32(1e-4) * rng.standard_normal(w.shape).astype(np.float32)).astype(np.float32),
        "d_v": v,
        "e_permuted": np.ascontiguousarray(v[rng.permutation(96)][:, rng.permutation(80)]),
        "f_other": rng.standard_normal((96, 80)).astype(np.float32),
    }
    path = save_safetensors(tmp_path / "m.safetensors", tensors)

    def analysed() -> list[dict]:
        return [g.to_dict() for g in sharescan.analyze(str(path)).groups]

    whole = analysed()
    streamed: list[str] = []
    real = common.flat_blocks

    def watched(entry, elements=1 << 20):  # type: ignore[no-untyped-def]
        if common.file_range(entry.read) is not None and entry.nbytes >= common._STREAM_BYTES:
            streamed.append(entry.name)
        return real(entry, elements)

    real_distance = common.streamed_distance
    streamed_pairs: list[tuple[str, str]] = []

    def watched_distance(a, b, block=1 << 16):  # type: ignore[no-untyped-def]
        d = real_distance(a, b, block)
        if d is not None:
            streamed_pairs.append((a.name, b.name))
        return d

    monkeypatch.setattr(common, "_STREAM_BYTES", 1024)  # every tensor here is "large"
    monkeypatch.setattr(common, "streamed_distance", watched_distance)
    monkeypatch.setattr(common, "flat_blocks", watched)
    monkeypatch.setattr(scaled, "flat_blocks", watched)
    monkeypatch.setattr(scaled, "_BLOCK", 1000)  # several blocks a tensor, one not a multiple of a row
    assert analysed() == whole
    assert streamed, "no tensor was streamed"
    assert ("a_w", "c_near") in streamed_pairs, streamed_pairs
    assert {g["relation"] for g in whole} >= {"scaled", "near", "permuted"}



def test_chunks_measured_on_threads_give_the_one_thread_bits_in_pair_order_and_warn_nothing(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    import warnings

    import sharescan.detect.common as common

    monkeypatch.setattr(common, "_PAIRS_AT_ONCE", 3)  # many chunks
    base = rng.standard_normal((12, 10))
    arrays = [base, base + 1e-4, base * 1e-300, base * 1e200, -base, base * 2, base * 1e200 + 1e190]
    entries = [TensorEntry(0, f"t{k}", a.shape, "float64", f"t{k}", lambda a=a: a) for k, a in enumerate(arrays)]
    pairs = [(a, b, False) for a in range(len(arrays)) for b in range(len(arrays)) if a != b]
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # squares of 1e200 overflow: never a warning, on any thread
        one = measure_pairs(entries, pairs, threads=1)
        many = measure_pairs(entries, pairs, threads=4)
    fields = lambda d: (d.max_abs, d.diff_norm, d.norm_a, d.norm_b, d.zero_signs)  # noqa: E731
    assert len(many) == len(pairs) and [fields(d) for d in many] == [fields(d) for d in one]
    assert [fields(d) for d in one] == [fields(distance(entries[a], entries[b])) for a, b, _ in pairs]
