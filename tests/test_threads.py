"""Pair measures and copy comparisons on threads: the one-thread answers, and an error stops the work at once."""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path

import numpy as np
import pytest

import sharescan.detect.common as common
from sharescan.detect.common import measure_pairs
from sharescan.detect.identical import same_content
from sharescan.errors import InputError
from sharescan.sources import LoadOptions, load_model
from sharescan.sources.mapped import file_range
from sharescan.table import TensorEntry
from tests.helpers import save_safetensors

rng = np.random.default_rng(7)


def _slow_entries(count: int, failing: int, error: BaseException, reads: list[int]) -> list[TensorEntry]:
    """Entries of distinct small arrays; reading ``failing`` raises ``error``, the others take a few ms."""

    def reader(k: int, array: np.ndarray):  # type: ignore[no-untyped-def]
        def read() -> np.ndarray:
            if k == failing:
                raise error
            time.sleep(0.005)
            reads.append(k)
            return array

        return read

    arrays = [rng.standard_normal(16) for _ in range(count)]
    return [TensorEntry(0, f"t{k}", a.shape, "float64", f"t{k}", reader(k, a)) for k, a in enumerate(arrays)]


@pytest.mark.parametrize("error", [InputError("t0: cut short"), KeyboardInterrupt()])
def test_an_error_in_one_chunk_propagates_and_the_queued_chunks_are_not_measured(monkeypatch: pytest.MonkeyPatch, error: BaseException) -> None:
    monkeypatch.setattr(common, "_PAIRS_AT_ONCE", 1)  # a chunk per pair
    reads: list[int] = []
    entries = _slow_entries(120, 0, error, reads)
    pairs = [(2 * k, 2 * k + 1, False) for k in range(60)]
    before = threading.active_count()
    with pytest.raises(type(error)):
        measure_pairs(entries, pairs, threads=4)
    # At most the chunks already running when the first one failed: the
    # others are cancelled, not measured before the error is raised.
    assert len(reads) <= 2 * 8, len(reads)
    assert threading.active_count() == before  # no thread left running


def _two_tensors(tmp_path: Path, nbytes: int) -> tuple[Path, TensorEntry, TensorEntry]:
    w = rng.integers(0, 256, nbytes, dtype=np.uint8)
    path = save_safetensors(tmp_path / "m.safetensors", {"a": w, "b": w.copy()})
    entries = {e.name: e for e in load_model(str(path), 0, LoadOptions()).tensors}
    return path, entries["a"], entries["b"]


def test_a_file_cut_short_on_one_span_stops_the_other_spans(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path, a, b = _two_tensors(tmp_path, 512 * 1024)
    with path.open("r+b") as f:
        f.truncate(path.stat().st_size - 200 * 1024)  # b's later spans are gone
    calls: list[int] = []
    preadv = os.preadv

    def slow_preadv(fd, buffers, offset):  # type: ignore[no-untyped-def]
        calls.append(offset)
        time.sleep(0.002)
        return preadv(fd, buffers, offset)

    monkeypatch.setattr(os, "preadv", slow_preadv)
    with pytest.raises(InputError, match="changed while it was read"):
        same_content(a, b, 1024, 4)
    # 1,024 reads of 1 KiB would compare every span whole; the span that
    # failed stops the others within a few blocks.
    assert len(calls) < 200, len(calls)


def test_chunks_measured_at_once_hold_no_more_memory_than_one_chunk_alone(monkeypatch: pytest.MonkeyPatch) -> None:
    import tracemalloc

    monkeypatch.setattr(common, "_ELEMENTS_AT_ONCE", 1 << 21)  # a 16 MiB table per chunk alone
    arrays = [rng.standard_normal(1 << 14) for _ in range(512)]  # tabled (small), 4 chunks' worth
    entries = [TensorEntry(0, f"t{k}", a.shape, "float64", f"t{k}", lambda a=a: a) for k, a in enumerate(arrays)]
    pairs = [(2 * k, 2 * k + 1, False) for k in range(256)]
    peaks = {}
    for threads in (1, 4):
        tracemalloc.start()
        try:
            measure_pairs(entries, pairs, threads=threads)
            peaks[threads] = tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
    assert peaks[1] > 16 << 20  # the table of a chunk is counted
    # Beyond the one-thread peak: each thread's scratch blocks (1.5 MiB), not
    # a 16 MiB table per thread.
    assert peaks[4] < peaks[1] + 4 * (2 << 20), peaks


def _fields(d):  # type: ignore[no-untyped-def]
    return (d.max_abs, d.diff_norm, d.norm_a, d.norm_b, d.zero_signs)


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_random_batches_of_many_chunks_give_the_one_thread_bits_in_pair_order(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, seed: int) -> None:
    from sharescan.detect.common import distance

    r = np.random.default_rng(seed)
    monkeypatch.setattr(common, "_PAIRS_AT_ONCE", int(r.integers(2, 9)))
    monkeypatch.setattr(common, "_ELEMENTS_AT_ONCE", int(r.integers(1 << 12, 1 << 17)))
    monkeypatch.setattr(common, "_STREAM_BYTES", 64 << 10)  # the largest pairs streamed from the file
    shapes = [(8, 12), (12, 8), (96,), (64, 64), (160, 128), (128, 160), (300, 200)]  # tabled, blocked (> 16 Ki elements), streamed
    tensors: dict[str, np.ndarray] = {}
    for s, shape in enumerate(shapes):
        base = r.standard_normal(shape)
        for c in range(4):
            w = base + r.standard_normal(shape) * 10.0 ** -int(r.integers(1, 6)) if c else base.copy()
            flat = w.reshape(-1)
            flat[r.integers(0, flat.size, 5)] = 0.0
            flat[r.integers(0, flat.size, 5)] = -0.0  # signed zeros counted
            tensors[f"s{s}c{c}"] = w.astype(np.float16 if c == 3 else np.float32)
    path = save_safetensors(tmp_path / "m.safetensors", tensors)
    entries = load_model(str(path), 0, LoadOptions()).tensors
    pairs = []
    for _ in range(300):
        a, b = (int(x) for x in r.integers(0, len(entries), 2))
        if entries[a].shape == entries[b].shape:
            pairs.append((a, b, False))
        elif len(entries[a].shape) == 2 and entries[a].shape[::-1] == entries[b].shape:
            pairs.append((a, b, True))
    assert len(pairs) > 30 and any(t for *_, t in pairs)
    assert any(not t and common.streamed_distance(entries[a], entries[b]) is not None for a, b, t in pairs)  # streamed ones too
    one = measure_pairs(entries, pairs, threads=1)
    for threads in (2, 4, 7):
        many = measure_pairs(entries, pairs, threads=threads)
        assert [_fields(d) for d in many] == [_fields(d) for d in one], threads
    assert [_fields(d) for d in one] == [_fields(distance(entries[a], entries[b], t)) for a, b, t in pairs]


def test_same_content_on_threads_agrees_with_array_equal_for_random_single_bit_flips(tmp_path: Path) -> None:
    r = np.random.default_rng(11)
    for trial in range(6):
        nbytes = int(r.integers(40_000, 90_000))  # read from the file (small ones are not)
        w = r.integers(0, 256, nbytes, dtype=np.uint8)
        flips = {}
        for at in (0, nbytes - 1, int(r.integers(0, nbytes)), int(r.integers(0, nbytes))):  # the ends, and anywhere
            flipped = w.copy()
            flipped[at] ^= np.uint8(1 << int(r.integers(0, 8)))
            flips[f"c{at}"] = flipped
        path = save_safetensors(tmp_path / f"m{trial}.safetensors", {"a": w, "b": w.copy(), **flips})
        e = {x.name: x for x in load_model(str(path), 0, LoadOptions()).tensors}
        assert all(file_range(x.read) is not None for x in e.values())
        # Blocks not dividing the length, 4 to 5 blocks on up to 9 threads (spans of no block), one block for all.
        for block in {97, 1000, 4096, nbytes // 5, nbytes // 4, nbytes // 4 + 1, nbytes // 3, nbytes, nbytes + 1}:
            for threads in (1, 2, 3, 4, 5, 9):
                assert same_content(e["a"], e["b"], block, threads), (nbytes, block, threads)
                for name, flipped in flips.items():
                    assert same_content(e["a"], e[name], block, threads) == bool(np.array_equal(w, flipped)), (nbytes, name, block, threads)
