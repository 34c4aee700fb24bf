"""The rows detector reads the few rows it compares, not whole tensors: a large
embedding with two equal rows must not become resident to confirm them."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

from sharescan.detect.aliased import find_aliased
from sharescan.detect.rows import find_rows
from sharescan.digest import compute_digests
from sharescan.sources import LoadOptions, load_model
from tests.helpers import save_safetensors

MiB = 1 << 20


def _rss_mib() -> tuple[int, int]:
    status = {line.split(":")[0]: int(line.split()[1]) for line in open("/proc/self/status") if line.startswith(("VmRSS", "VmHWM"))}
    return status["VmRSS"] >> 10, status["VmHWM"] >> 10


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads the peak RSS from /proc")
def test_confirming_equal_rows_keeps_the_tensor_off_resident_memory(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    emb = rng.standard_normal((32768, 1024), dtype=np.float32)  # 128 MiB
    emb[20000:20100] = emb[7]  # 100 copies of one row, far from it in the file: worth an index
    path = save_safetensors(tmp_path / "emb.safetensors", {"emb": emb})
    del emb
    loaded = load_model(str(path), 0, LoadOptions())
    entries = list(loaded.tensors)
    _, units = find_aliased(entries)
    digests = compute_digests(entries, units)
    with open("/proc/self/clear_refs", "w") as f:  # the peak starts again from here
        f.write("5")
    before, _ = _rss_mib()
    groups = find_rows(entries, units, digests, None)
    _, peak = _rss_mib()
    assert len(groups) == 1 and groups[0].rows is not None and groups[0].rows.distinct_rows == 32768 - 100
    assert peak - before < 32, f"peak grew {peak - before} MiB while confirming the equal rows"
