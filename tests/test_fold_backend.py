"""--simplify over onnx's own operator test models: every one onnxruntime runs still runs, bit for bit."""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np
import onnx
import onnxruntime as ort

from sharescan.onnx_rewrite.fold import simplify


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, list):
        return isinstance(b, list) and len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b))
    if a is None or b is None:
        return a is b
    a, b = np.asarray(a), np.asarray(b)
    if a.dtype != b.dtype or a.shape != b.shape:
        return False
    if a.dtype.kind in "fc":  # NaN where NaN, and the sign of every zero
        return bool(np.array_equal(a, b, equal_nan=True) and np.array_equal(np.signbit(a.real), np.signbit(b.real)))
    return bool(np.array_equal(a, b))


def _run(model: onnx.ModelProto, feeds: dict[str, Any]) -> list[Any]:
    options = ort.SessionOptions()
    options.log_severity_level = 4
    return ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"]).run(None, feeds)


def test_simplify_keeps_every_backend_node_model_onnxruntime_runs_bit_identical() -> None:
    import onnx.backend.test.case.node as node_cases

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the generators overflow and divide by zero on purpose
        cases = node_cases.collect_testcases()
    checked, changed, broken = 0, 0, []
    for case in cases:
        inputs = case.data_sets[0][0]
        names = [i.name for i in case.model.graph.input]
        if len(inputs) != len(names):
            continue
        feeds = dict(zip(names, inputs))
        try:
            expected = _run(case.model, feeds)
        except Exception:  # onnxruntime lacks the op, type or locale: nothing to compare
            continue
        checked += 1
        model = onnx.ModelProto()
        model.CopyFrom(case.model)
        try:
            simplify(model)
            changed += model.SerializeToString() != case.model.SerializeToString()
            onnx.checker.check_model(model)
            if not _same(expected, _run(model, feeds)):
                broken.append(f"{case.name}: outputs differ")
        except Exception as e:
            broken.append(f"{case.name}: {e.__class__.__name__}: {str(e)[:160]}")
    assert checked > 1000 and changed > 100  # the sweep ran, and simplify did something on a good share of it
    assert broken == []
