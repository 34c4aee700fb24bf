"""The streamed scan: tensors read block by block through a reused buffer, in threads.

A streamed digest must equal the digest of the whole tensor in memory (the
same hash, samples and, within rounding, norm), keep resident memory at the
buffer rather than the tensor, and give the same result from several
threads over several files as from one.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from sharescan.digest import _digest, _digest_array, compute_digests
from sharescan.errors import InputError
from sharescan.sources import LoadOptions, load_model
from sharescan.sources.mapped import file_range
from tests.helpers import save_onnx, save_safetensors

MiB = 1 << 20


def _entries(path: Path) -> dict:
    return {e.name: e for e in load_model(str(path), 0, LoadOptions()).tensors}


def _assert_same(streamed, whole, name: str) -> None:
    assert streamed.content == whole.content, name
    assert streamed.nonfinite == whole.nonfinite and streamed.has_nan == whole.has_nan, name
    assert np.array_equal(streamed.grid, whole.grid), name
    assert (streamed.row_sample is None) == (whole.row_sample is None), name
    if whole.row_sample is not None:
        assert np.array_equal(streamed.row_sample, whole.row_sample), name


def _tensors() -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    return {
        "f32": rng.standard_normal((1000, 777), dtype=np.float32),  # rows do not divide the block
        "f16": rng.standard_normal((900, 1024)).astype(np.float16),
        "i32": rng.integers(-1000, 1000, (700, 600), dtype=np.int32),
        "vector": rng.standard_normal(600_000, dtype=np.float32),  # one row longer than a block
        "wide": rng.standard_normal((3, 400_000), dtype=np.float32),  # rows longer than a block
        "f64": rng.standard_normal((300, 700)),
        "tiny_values": (rng.standard_normal((600, 600)) * 1e-30).astype(np.float32),  # float32 squares underflow
    }


def test_streamed_digests_equal_the_whole_tensor_digests(tmp_path: Path) -> None:
    arrays = _tensors()
    entries = _entries(save_safetensors(tmp_path / "m.safetensors", arrays))
    for name, array in arrays.items():
        e = entries[name]
        assert file_range(e.read) is not None and e.nbytes >= MiB, name
        streamed, whole = _digest(e), _digest_array(e, e.read())
        _assert_same(streamed, whole, name)
        if array.dtype.kind == "f":
            exact = float(np.linalg.norm(array.astype(np.float64)))
            # float32 sums per block: within float32 rounding of the exact norm, as the whole-tensor sum is.
            assert streamed.norm == pytest.approx(exact, rel=1e-5) and whole.norm == pytest.approx(exact, rel=1e-5), name


def test_bfloat16_is_streamed_with_its_float_norm(tmp_path: Path) -> None:
    import ml_dtypes

    values = np.random.default_rng(1).standard_normal((800, 1024)).astype(ml_dtypes.bfloat16)
    path = tmp_path / "b.safetensors"
    from safetensors.numpy import save_file

    save_file({"b": values}, str(path))
    e = _entries(path)["b"]
    assert e.dtype == "bfloat16"
    streamed, whole = _digest(e), _digest_array(e, e.read())
    _assert_same(streamed, whole, "b")
    assert streamed.norm == pytest.approx(float(np.linalg.norm(values.astype(np.float64))), rel=1e-5)


def test_a_large_tensor_with_nan_or_inf_gets_the_close_look(tmp_path: Path) -> None:
    rng = np.random.default_rng(2)
    nan = rng.standard_normal((600, 600), dtype=np.float32)
    nan[300, 7] = np.nan
    inf = rng.standard_normal((600, 600), dtype=np.float32)
    inf[5, 5] = -np.inf
    huge = np.full((600, 600), 3e38, dtype=np.float32)  # finite, but the squares overflow
    entries = _entries(save_safetensors(tmp_path / "m.safetensors", {"nan": nan, "inf": inf, "huge": huge}))
    d = _digest(entries["nan"])
    assert d.nonfinite and d.has_nan
    d = _digest(entries["inf"])
    assert d.nonfinite and not d.has_nan
    d = _digest(entries["huge"])
    assert not d.nonfinite and d.norm == pytest.approx(3e38 * 600, rel=1e-6)


def test_streaming_keeps_resident_memory_at_the_buffer_not_the_tensor(tmp_path: Path) -> None:
    big = np.random.default_rng(3).standard_normal((16384, 1024), dtype=np.float32)  # 64 MiB
    path = save_safetensors(tmp_path / "big.safetensors", {"big": big})
    del big
    code = (
        "import sys\n"
        "from sharescan.sources import LoadOptions, load_model\n"
        "from sharescan.digest import compute_digests\n"
        "def hwm():\n"
        "    return next(int(l.split()[1]) for l in open('/proc/self/status') if l.startswith('VmHWM')) * 1024\n"
        "entries = load_model(sys.argv[1], 0, LoadOptions()).tensors\n"
        "base = hwm()\n"
        "compute_digests(entries, [0])\n"
        "print(hwm() - base)\n"
    )
    out = subprocess.run([sys.executable, "-c", code, str(path)], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    # A mapped read would make all 64 MiB resident; the buffer and the row sample (2 MiB) stay well under.
    assert int(out.stdout) < 16 * MiB, int(out.stdout) / MiB


def test_threads_over_shards_and_external_data_give_the_serial_digests(tmp_path: Path) -> None:
    rng = np.random.default_rng(4)
    arrays = {f"w{k}": rng.standard_normal((512 + k, 640), dtype=np.float32) for k in range(6)}
    arrays["copy"] = arrays["w0"].copy()
    save_onnx(tmp_path / "m.onnx", arrays, save_as_external_data=True, all_tensors_to_one_file=True, location="m.onnx.data", size_threshold=0)
    sharded = tmp_path / "sharded"
    sharded.mkdir()
    import json

    names = list(arrays)
    weight_map = {}
    for k in range(3):
        part = {n: arrays[n] for n in names[k::3]}
        save_safetensors(sharded / f"model-0000{k + 1}-of-00003.safetensors", part)
        weight_map |= {n: f"model-0000{k + 1}-of-00003.safetensors" for n in part}
    (sharded / "model.safetensors.index.json").write_text(json.dumps({"metadata": {}, "weight_map": weight_map}))
    for path in (tmp_path / "m.onnx", sharded):
        entries = load_model(str(path), 0, LoadOptions()).tensors
        units = list(range(len(entries)))
        serial, threaded = compute_digests(entries, units, workers=1), compute_digests(entries, units, workers=4)
        for u in units:
            _assert_same(threaded[u], serial[u], entries[u].name)
            assert threaded[u].norm == serial[u].norm
        by_name = {e.name: threaded[u] for u, e in enumerate(entries)}
        assert by_name["copy"].content == by_name["w0"].content


def test_a_file_cut_short_while_it_is_read_is_an_input_error(tmp_path: Path) -> None:
    path = save_safetensors(tmp_path / "m.safetensors", {"w": np.ones((1024, 1024), dtype=np.float32)})
    entry = _entries(path)["w"]
    with path.open("r+b") as f:
        f.truncate(path.stat().st_size - 4096)
    with pytest.raises(InputError, match="changed while it was read"):
        _digest(entry)


def test_the_digest_does_without_numpy_random(tmp_path: Path) -> None:
    # numpy.random costs ~10 ms to import (it loads OpenSSL), and its
    # generators' streams may change between numpy versions: sample positions
    # kept in a zoo store must not.
    path = save_safetensors(tmp_path / "m.safetensors", {"w": np.arange(64 * 96, dtype=np.float32).reshape(64, 96), "v": np.ones(5000, dtype=np.float32)})
    code = (
        "import sys\n"
        "from sharescan.digest import compute_digests\n"
        "from sharescan.sources import LoadOptions, load_model\n"
        f"entries = load_model({str(path)!r}, 0, LoadOptions()).tensors\n"
        "compute_digests(entries, list(range(len(entries))), workers=1)\n"
        "print('numpy.random' in sys.modules)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"
