"""onnxruntime RAM is measured in a child process; a failed probe is one line."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest

from sharescan.onnx_rewrite.feeds import fill
from sharescan.onnx_rewrite.ram import measure_ram

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures"


def test_a_session_and_one_run_grow_the_probe_rss(tmp_path: Path) -> None:
    path = FIXTURES / "mlp.onnx"
    grown = measure_ram(path, fill(onnx.load(path), {}), recommended=True, workdir=tmp_path)
    assert isinstance(grown, int) and grown > 0


def test_a_probe_that_cannot_run_the_model_fails_in_one_line(tmp_path: Path) -> None:
    with pytest.raises(RuntimeError) as caught:
        measure_ram(FIXTURES / "mlp.onnx", {"no_such_input": np.zeros(1, np.float32)}, recommended=False, workdir=tmp_path)
    assert "\n" not in str(caught.value) and str(caught.value)
