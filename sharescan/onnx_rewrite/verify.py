"""Every rewrite is checked: onnx.checker, then onnxruntime on the same inputs.

``reference_runs`` finds inputs the original model runs on (see feeds.py) in
one onnxruntime session and keeps the original's outputs; ``check_result``
runs the rewritten model on the same inputs and says whether it passes. Any
difference in where outputs are non-finite fails, lossy or not: +inf turned
-inf, or a finite value turned NaN, is not a rounding error.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from sharescan.errors import InputError, VerificationError, one_line
from sharescan.onnx_rewrite import feeds as feeding

__all__ = [
    "Reference",
    "Verdict",
    "check_model",
    "check_result",
    "compare_outputs",
    "parse_input_spec",
    "reference_runs",
    "sample_inputs",
    "torch_vs_onnxruntime",
]


@dataclass(frozen=True)
class Verdict:
    checker_passed: bool
    outputs_identical: bool  # every output equal bit for bit (NaN equal to NaN) on every feed set
    max_abs_error: float  # largest |original - result| over finite elements of all outputs
    rel_error: float  # worst ||original - result|| / ||original|| over outputs (finite elements)
    inputs: tuple[tuple[str, tuple[int, ...], str], ...]  # the first feed set: name, shape, dtype
    # Where non-finite outputs differ ("" when they agree): fails verification whatever --max-error says.
    non_finite_mismatch: str = ""
    runs: tuple[str, ...] = ()  # label of each feed set both models ran on
    feeds_source: str = "declared shapes"  # how the feeds were chosen
    branch_inputs: tuple[str, ...] = ()  # inputs compared with constants (they select If branches)
    skipped: tuple[str, ...] = ()  # feed sets the original model itself does not run, and why

    def to_dict(self) -> dict[str, Any]:
        return {
            "checker_passed": self.checker_passed,
            "outputs_identical": self.outputs_identical,
            "max_abs_error": self.max_abs_error,
            "rel_error": self.rel_error,
            "non_finite_mismatch": self.non_finite_mismatch or None,
            "inputs": [{"name": n, "shape": list(s), "dtype": d} for n, s, d in self.inputs],
            "feeds_source": self.feeds_source,
            "runs": list(self.runs),
            "branch_inputs": list(self.branch_inputs),
            "skipped_runs": list(self.skipped),
        }


@dataclass(frozen=True)
class Reference:
    """Feed sets the original model runs on, and its outputs for each."""

    sets: tuple[feeding.FeedSet, ...]
    outputs: tuple[tuple[np.ndarray, ...], ...]
    source: str
    branch_inputs: tuple[str, ...] = ()
    skipped: tuple[str, ...] = field(default=())

    @property
    def first(self) -> dict[str, np.ndarray]:
        return self.sets[0].feeds


def check_model(path: Path, label: str | None = None) -> None:
    """onnx.checker's full check; ``label`` names the file in the message (the path may be temporary)."""
    import onnx

    try:
        onnx.checker.check_model(str(path), full_check=True)
    except (onnx.checker.ValidationError, onnx.shape_inference.InferenceError, UnicodeDecodeError, ValueError) as e:
        # A name or string that is not UTF-8, or an element type onnx does not
        # define, surfaces as a Python error rather than a ValidationError.
        reason = " ".join(str(e).split()) or e.__class__.__name__
        if label:  # the rewrite is at fault, not the input
            raise VerificationError(f"{label}: the rewritten model fails onnx.checker ({reason}); nothing written; check that the file is complete and valid ONNX") from None
        raise InputError(f"{path} fails onnx.checker ({reason}); nothing written; check that the file is complete and valid ONNX") from None


def parse_input_spec(text: str) -> tuple[str, tuple[int, ...], str]:
    """'name:1x32:int64' -> (name, (1, 32), 'int64'); dims must be positive, the element count bounded."""
    try:
        name, shape, dtype = text.rsplit(":", 2)
        dims = tuple(int(d) for d in shape.split("x")) if shape else ()
        np.dtype(dtype)
    except (ValueError, TypeError):
        raise InputError(f"--input {text!r}: expected name:shape:dtype, e.g. input_ids:1x32:int64") from None
    if any(d <= 0 for d in dims):
        raise InputError(f"--input {text!r}: every dim must be a positive integer (got {shape}); e.g. input_ids:1x32:int64")
    elements = int(np.prod(dims, dtype=np.float64))
    if elements > feeding.MAX_FEED_ELEMENTS:
        raise InputError(f"--input {text!r}: {elements:,} elements is more than verification feeds ({feeding.MAX_FEED_ELEMENTS:,}); give smaller dims")
    return name, dims, dtype


def _check_names(model: Any, names: set[str]) -> None:
    declared = [v.name for v in feeding.declared_inputs(model)]
    unknown = sorted(names - set(declared))
    if unknown:
        raise InputError(f"--input {unknown[0]}: the model has no input of that name; its inputs: {', '.join(declared) or 'none'}")


def sample_inputs(model: Any, given: dict[str, tuple[tuple[int, ...], str]], seed: int = 0) -> dict[str, np.ndarray]:
    """One feed without running anything: given specs, else declared shapes with symbolic dims 1 (indices kept in range)."""
    _check_names(model, set(given))
    return feeding.fill(model, {}, specs=given, seed=seed)


def _one_line(message: str) -> str:
    """onnxruntime's message on one line, whole (its sentences are what tells the user the cause)."""
    return one_line(message).removeprefix("[ONNXRuntimeError] : ").strip()


def _session(path: Path) -> Any:
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.log_severity_level = 4  # a failure comes back as an exception and becomes our one line
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def _run(session: Any, feeds: dict[str, np.ndarray]) -> tuple[np.ndarray, ...]:
    return tuple(np.asarray(o) for o in session.run(None, feeds))


def reference_runs(path: Path, model: Any, specs: tuple[tuple[str, tuple[int, ...], str], ...] = (), samples: tuple[str, ...] = ()) -> Reference:
    """Inputs the original model at ``path`` runs on, with its outputs.

    ``samples`` (.npz files) are used as they are; otherwise symbolic dims are
    tried at the sizes feeds.dim_trials lists, in one session, until one runs;
    then each constant a branch input is compared with is run as well.
    """
    given_specs = {n: (s, d) for n, s, d in specs}
    _check_names(model, set(given_specs))
    try:
        session = _session(path)
    except Exception as e:  # onnxruntime raises its own exception types
        raise InputError(f"{path}: onnxruntime could not load the original model ({_one_line(str(e))}); dedup verifies every rewrite with onnxruntime") from None
    if samples:
        return _sample_runs(session, path, model, samples, given_specs)
    branches = {k: v for k, v in feeding.branch_values(model).items() if k not in given_specs}
    first_branch = {k: v[0] for k, v in branches.items()}
    fixed = feeding.settled_dims(model, {n: s for n, (s, _) in given_specs.items()})
    tried: list[str] = []
    first_error = ""
    base: feeding.FeedSet | None = None
    outputs: tuple[np.ndarray, ...] = ()
    for label, sizes in feeding.dim_trials(model, fixed):
        feeds = feeding.fill(model, sizes, branch=first_branch, specs=given_specs)
        tried.append(label)
        try:
            outputs = _run(session, feeds)
        except Exception as e:  # onnxruntime raises its own exception types
            first_error = first_error or str(e)
            continue
        base = feeding.FeedSet(", ".join([label] + [f"{k}={v}" for k, v in first_branch.items()]), feeds)
        sizes_used = sizes
        break
    if base is None:
        raise InputError(_no_run_message(path, model, first_error, tried))
    sets, results, skipped = [base], [outputs], []
    for name, values in branches.items():
        plain = feeding.fill(model, sizes_used, specs=given_specs)[name]
        others = [(v, f"{name}={v}") for v in values[1:]]
        if plain.size and plain.reshape(-1)[0].item() not in values:
            others.append((plain.reshape(-1)[0].item(), f"{name}={plain.reshape(-1)[0].item()} (none of the compared constants)"))
        for value, label in others:
            feeds = feeding.fill(model, sizes_used, branch={**first_branch, name: value}, specs=given_specs)
            try:
                results.append(_run(session, feeds))
                sets.append(feeding.FeedSet(label, feeds))
            except Exception as e:  # onnxruntime raises its own exception types
                skipped.append(f"{label}: the original model does not run ({_one_line(str(e))})")
    source = "--input specs and declared shapes" if given_specs else "declared shapes"
    if sizes_used:
        source += f", {tried[-1]}" + (f" (after {len(tried) - 1} refused)" if len(tried) > 1 else "")
    return Reference(tuple(sets), tuple(results), source, tuple(branches), tuple(skipped))


def _sample_runs(session: Any, path: Path, model: Any, samples: tuple[str, ...], specs: dict[str, tuple[tuple[int, ...], str]]) -> Reference:
    sets, results = [], []
    for sample in feeding.load_samples(samples, model):
        fixed = feeding.settled_dims(model, {**{n: s for n, (s, _) in specs.items()}, **{n: a.shape for n, a in sample.feeds.items()}})
        feeds = feeding.fill(model, fixed, given=sample.feeds, specs=specs)
        try:
            results.append(_run(session, feeds))
        except Exception as e:  # onnxruntime raises its own exception types
            raise InputError(f"--inputs {sample.label}: the original model {path} does not run on it ({_one_line(str(e))}); check the arrays' shapes and dtypes") from None
        sets.append(feeding.FeedSet(sample.label, feeds))
    return Reference(tuple(sets), tuple(results), f"--inputs ({len(sets)} sample{'s' if len(sets) != 1 else ''})")


def _no_run_message(path: Path, model: Any, error: str, tried: list[str]) -> str:
    message = _one_line(error)
    node = feeding.failing_node(message)
    where = ""
    if node is not None:
        inputs = feeding.upstream_inputs(model, node)
        where = f"node {node!r}" + (f" (reading input {', '.join(repr(i) for i in inputs)})" if inputs else "") + " fails: "
    sizes = f"; tried {tried[0]} to {tried[-1].split(' (')[0].removeprefix('symbolic dims at ')}" if len(tried) > 1 else ""
    return f"{path}: onnxruntime runs the original model on no input verification could make: {where}{message}{sizes}; pass --input NAME:SHAPE:DTYPE or --inputs sample.npz"


def compare_outputs(original: tuple[np.ndarray, ...], result: tuple[np.ndarray, ...], names: list[str] | None = None) -> tuple[bool, float, float, str]:
    """(identical, max abs error, relative error, non-finite mismatch) of two runs' outputs."""
    identical = len(original) == len(result)
    max_abs = rel = 0.0
    mismatch = ""
    for k, (x, y) in enumerate(zip(original, result)):
        label = names[k] if names and k < len(names) else f"#{k}"
        if x.shape != y.shape or x.dtype != y.dtype:
            identical = False
            mismatch = mismatch or f"output {label!r} changed shape or type ({x.dtype}{list(x.shape)} -> {y.dtype}{list(y.shape)})"
            continue
        if x.dtype.kind != "f" and x.dtype.name != "bfloat16":
            identical = identical and bool(np.array_equal(x, y))
            continue
        a, b = x.astype(np.float64), y.astype(np.float64)
        identical = identical and bool(np.array_equal(x, y, equal_nan=True))
        finite_a, finite_b = np.isfinite(a), np.isfinite(b)
        # Non-finite elements must agree exactly: same infinity, NaN against NaN.
        bad = (finite_a != finite_b) | (~finite_a & ~finite_b & ~((a == b) | (np.isnan(a) & np.isnan(b))))
        if bad.any() and not mismatch:
            i = int(np.flatnonzero(bad.reshape(-1))[0])
            mismatch = f"output {label!r} has {int(bad.sum())} element(s) whose non-finite value changed (e.g. {a.reshape(-1)[i]} -> {b.reshape(-1)[i]})"
        both = finite_a & finite_b
        if both.any():
            with np.errstate(over="ignore", invalid="ignore"):
                diff = np.abs(a[both] - b[both])
                max_abs = max(max_abs, float(diff.max()))
                norm = float(np.linalg.norm(a[both]))
                if norm > 0 and np.isfinite(norm):
                    rel = max(rel, float(np.linalg.norm(diff)) / norm)
                elif float(diff.max()) > 0:
                    rel = float("inf")
    return identical and not mismatch, max_abs, rel, mismatch


def check_result(path: Path, reference: Reference, lossy: bool, max_error: float) -> tuple[Verdict, str]:
    """Run the rewritten model on every reference feed set; (verdict, why it fails or "")."""
    first = reference.first
    inputs = tuple((k, tuple(v.shape), str(v.dtype)) for k, v in first.items())
    base: dict[str, Any] = dict(runs=tuple(s.label for s in reference.sets), feeds_source=reference.source, branch_inputs=reference.branch_inputs, skipped=reference.skipped)
    try:
        session = _session(path)
        names = [o.name for o in session.get_outputs()]
        outs = [_run(session, s.feeds) for s in reference.sets]
    except Exception as e:  # onnxruntime raises its own exception types
        return Verdict(True, False, float("inf"), float("inf"), inputs, **base), f"onnxruntime could not run the rewritten model ({_one_line(str(e))})"
    identical, max_abs, rel, mismatch = True, 0.0, 0.0, ""
    for s, a, b in zip(reference.sets, reference.outputs, outs):
        same, m, r, bad = compare_outputs(a, b, names)
        identical, max_abs, rel = identical and same, max(max_abs, m), max(rel, r)
        if bad and not mismatch:
            mismatch = f"{bad} on {s.label}"
    verdict = Verdict(True, identical, max_abs, rel, inputs, mismatch, **base)
    if mismatch:
        return verdict, f"non-finite outputs differ: {mismatch}"
    if not lossy and not identical:
        return verdict, f"outputs differ from the original by up to {max_abs:.3g} after lossless merges"
    if lossy and rel > max_error:
        return verdict, f"outputs moved by {rel:.3g} relative (> --max-error {max_error:g})"
    return verdict, ""


def torch_vs_onnxruntime(path: Path, feeds: dict[str, np.ndarray], expected: Any) -> tuple[float, float]:
    """(max abs error, worst relative L2 error) of onnxruntime on the file at ``path`` against torch's ``expected``.

    ``expected``: the torch model's output on ``feeds``, a tensor or a tuple or
    list of them, in the graph's output order. Feeds the graph does not declare
    are left out (the dynamo exporter drops inputs the graph does not read).
    Differences are taken in float64, so float32 rounding adds nothing of its own.
    """
    import onnxruntime as ort

    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    declared = {i.name for i in session.get_inputs()}
    got = session.run(None, {n: a for n, a in feeds.items() if n in declared})
    wanted = expected if isinstance(expected, (tuple, list)) else (expected,)
    max_abs = rel = 0.0
    for t, g in zip(wanted, got):
        x = t.detach().cpu().numpy().astype(np.float64)
        diff = np.abs(x - np.asarray(g).astype(np.float64))
        max_abs = max(max_abs, float(diff.max()) if diff.size else 0.0)
        norm = float(np.linalg.norm(x))
        rel = max(rel, float(np.linalg.norm(diff)) / norm if norm else 0.0)
    return max_abs, rel
