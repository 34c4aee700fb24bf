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
