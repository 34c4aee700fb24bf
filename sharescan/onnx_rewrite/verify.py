"""Every rewrite is checked: onnx.checker, then onnxruntime on the same inputs."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from sharescan.errors import InputError

__all__ = ["Verdict", "check_model", "compare_outputs", "sample_inputs", "parse_input_spec"]


@dataclass(frozen=True)
class Verdict:
    checker_passed: bool
    outputs_identical: bool  # every output equal bit for bit (NaN equal to NaN)
    max_abs_error: float  # largest |original - result| element over outputs
    rel_error: float  # worst ||original - result|| / ||original|| over outputs
    inputs: tuple[tuple[str, tuple[int, ...], str], ...]  # what was fed: name, shape, dtype

    def to_dict(self) -> dict[str, Any]:
        return {
            "checker_passed": self.checker_passed,
            "outputs_identical": self.outputs_identical,
            "max_abs_error": self.max_abs_error,
            "rel_error": self.rel_error,
            "inputs": [{"name": n, "shape": list(s), "dtype": d} for n, s, d in self.inputs],
        }


def check_model(path: Path, label: str | None = None) -> None:
    """onnx.checker's full check; ``label`` names the file in the message (the path may be temporary)."""
    import onnx

    try:
        onnx.checker.check_model(str(path), full_check=True)
    except (onnx.checker.ValidationError, onnx.shape_inference.InferenceError) as e:
        what = f"{label}: the rewritten model" if label else str(path)
        raise InputError(f"{what} fails onnx.checker ({str(e).strip().splitlines()[0][:200]}); nothing written") from None


def parse_input_spec(text: str) -> tuple[str, tuple[int, ...], str]:
    """'name:1x32:int64' -> (name, (1, 32), 'int64')."""
    try:
        name, shape, dtype = text.rsplit(":", 2)
        dims = tuple(int(d) for d in shape.split("x")) if shape else ()
        np.dtype(dtype)
    except (ValueError, TypeError):
        raise InputError(f"--input {text!r}: expected name:shape:dtype, e.g. input_ids:1x32:int64") from None
    return name, dims, dtype


def sample_inputs(model: Any, given: dict[str, tuple[tuple[int, ...], str]], seed: int = 0) -> dict[str, np.ndarray]:
    """Inputs for every graph input: given specs, else declared shapes with symbolic dims as 1."""
    from onnx import helper

    rng = np.random.default_rng(seed)
    stored = {i.name for i in model.graph.initializer}
    declared = [i.name for i in model.graph.input if i.name not in stored]
    unknown = sorted(set(given) - set(declared))
    if unknown:
        raise InputError(f"--input {unknown[0]}: the model has no input of that name; its inputs: {', '.join(declared) or 'none'}")
    feeds = {}
    for value in model.graph.input:
        if value.name in stored:
            continue
        if value.name in given:
            shape, dtype_name = given[value.name]
            dtype = np.dtype(dtype_name)
        else:
            t = value.type.tensor_type
            if not value.type.HasField("tensor_type"):
                raise InputError(f"graph input {value.name!r} is not a tensor; pass --input {value.name}:SHAPE:DTYPE")
            dtype = np.dtype(helper.tensor_dtype_to_np_dtype(t.elem_type))
            shape = tuple(d.dim_value if d.HasField("dim_value") and d.dim_value > 0 else 1 for d in t.shape.dim)
        if dtype.kind == "f":
            feeds[value.name] = np.asarray(rng.standard_normal(shape)).astype(dtype)
        elif dtype.kind in "iu":
            # Small ids stay inside any vocabulary or index range.
            feeds[value.name] = np.asarray(rng.integers(0, 8, size=shape)).astype(dtype)
        elif dtype.kind == "b":
            feeds[value.name] = np.asarray(rng.random(shape) > 0.5)
        else:
            raise InputError(f"graph input {value.name!r} has dtype {dtype}; pass --input {value.name}:SHAPE:DTYPE")
    return feeds


def _run(path: Path, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.log_severity_level = 4  # a failure comes back as an exception and becomes our one error line
    try:
        session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        return [np.asarray(o) for o in session.run(None, feeds)]
    except Exception as e:  # onnxruntime raises its own exception types
        raise InputError(f"{path}: onnxruntime could not run it ({str(e).strip().splitlines()[0][:200]}); check the model or pass --input specs") from None


def compare_outputs(original: Path, result: Path, feeds: dict[str, np.ndarray]) -> Verdict:
    a, b = _run(original, feeds), _run(result, feeds)
    identical = len(a) == len(b) and all(x.shape == y.shape and np.array_equal(x, y, equal_nan=x.dtype.kind == "f") for x, y in zip(a, b))
    max_abs = rel = 0.0
    for x, y in zip(a, b):
        if x.dtype.kind == "f" and x.size and x.shape == y.shape:
            diff = np.abs(x.astype(np.float64) - y.astype(np.float64))
            finite = np.isfinite(diff)
            if finite.any():
                max_abs = max(max_abs, float(diff[finite].max()))
            norm = float(np.linalg.norm(np.nan_to_num(x.astype(np.float64))))
            if norm > 0:
                rel = max(rel, float(np.linalg.norm(np.nan_to_num(diff))) / norm)
    shapes = tuple((k, tuple(v.shape), str(v.dtype)) for k, v in feeds.items())
    return Verdict(True, identical, max_abs, rel, shapes)
