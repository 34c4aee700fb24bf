"""Many small tensors: the batched digest gives what the single one gives,
the work is chunked, and a model of many tiny tensors stays fast.

The figures at full size (100,000 ONNX initializers, a million safetensors
tensors) are measured by benchmarks/bench_scale.py; these tests keep the
paths that make them fast honest, at sizes that run in seconds.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import pytest

from sharescan.digest import _digest, _digest_batch, _digest_chunk, compute_digests
from sharescan.sources import LoadOptions, load_model
from tests.test_bad_input import run

SHAPES = [((16,), np.float32), ((4, 8), np.float16), ((3, 5, 2), np.float64), ((), np.float32), ((8, 4), np.int32), ((2, 3), np.uint8)]


def _model(tmp_path: Path, copies: int = 10):
    from safetensors.numpy import save_file

    rng = np.random.default_rng(1)
    tensors = {}
    for shape, dtype in SHAPES:
        for i in range(copies):
            tensors[f"{dtype.__name__}{list(shape)}.{i}"] = np.asarray(rng.standard_normal(shape) * 10).astype(dtype)
    tensors["with_nan"] = np.where(np.arange(16) == 3, np.nan, np.arange(16)).astype(np.float32)
    path = tmp_path / "m.safetensors"
    save_file(tensors, str(path))
    return list(load_model(str(path), 0, LoadOptions()).tensors)


def _same(a, b) -> None:
    assert a.content == b.content and a.nonfinite == b.nonfinite and a.has_nan == b.has_nan
    assert a.norm == pytest.approx(b.norm, rel=1e-12, abs=0, nan_ok=True)
    assert a.grid.dtype == b.grid.dtype and a.grid.shape == b.grid.shape and a.grid.tobytes() == b.grid.tobytes()
    assert (a.row_sample is None) == (b.row_sample is None)
    if a.row_sample is not None:
        assert a.row_sample.shape == b.row_sample.shape and a.row_sample.tobytes() == b.row_sample.tobytes()


def test_a_batch_of_small_tensors_digests_as_each_tensor_alone(tmp_path):
    entries = _model(tmp_path)
    families: dict[tuple, list[int]] = {}
    for i, e in enumerate(entries):
        families.setdefault((e.dtype, e.shape), []).append(i)
    nan = next(i for i, e in enumerate(entries) if e.name == "with_nan")
    assert len(families) == len(SHAPES)
    for (dtype, shape), members in families.items():
        batch = _digest_batch(entries, members, dtype, shape)
        assert set(batch) == set(members) - {nan}
        for u in batch:
            _same(_digest(entries[u]), batch[u])


def test_a_tensor_with_nan_is_left_to_the_single_digest(tmp_path):
    entries = _model(tmp_path)
    nan = next(i for i, e in enumerate(entries) if e.name == "with_nan")
    others = [i for i, e in enumerate(entries) if e.shape == (16,) and e.dtype == "float32" and i != nan][:8]
    chunk = [*others[:4], nan, *others[4:]]  # one batch of 9
    digests = _digest_chunk(entries, chunk)
    assert digests[4].nonfinite and digests[4].has_nan
    for u, d in zip(chunk, digests):
        _same(_digest(entries[u]), d)


def test_chunked_threaded_digests_match_the_serial_ones(tmp_path):
    entries = _model(tmp_path, copies=40)
    units = list(range(len(entries)))
    threaded = compute_digests(entries, units, workers=2)
    serial = compute_digests(entries, units, workers=1)
    assert set(threaded) == set(units)
    for u in units:
        _same(serial[u], threaded[u])


def _write_identical(path: Path, n: int, size: int = 64) -> Path:
    import struct

    one = np.arange(size, dtype=np.float32)
    header = {f"b.{i}": {"dtype": "F32", "shape": [size], "data_offsets": [i * one.nbytes, (i + 1) * one.nbytes]} for i in range(n)}
    raw = json.dumps(header).encode()
    path.write_bytes(struct.pack("<Q", len(raw)) + raw + one.tobytes() * n)
    return path


def test_thousands_of_identical_small_tensors_are_one_group_found_fast(tmp_path):
    """One group of 5,000 members, in seconds: nothing is expanded into pairs."""
    path = _write_identical(tmp_path / "same.safetensors", 5000)
    started = time.perf_counter()
    proc = run(path, "--json", cwd=tmp_path)
    elapsed = time.perf_counter() - started
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout)
    (group,) = result["groups"]
    assert group["relation"] == "identical" and len(group["members"]) == 5000
    assert result["totals"]["reclaimable_bytes"] == 4999 * 256
    assert elapsed < 15, f"{elapsed:.1f} s for 5,000 identical [64] tensors"
