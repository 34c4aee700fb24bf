"""``sharescan export``: a PyTorch model to a deduplicated, verified ONNX file.

Reads TorchScript, ``torch.export`` programs (.pt2), or a state dict with
``--arch module:factory`` (which imports the user's code: an explicit
opt-in). Exports with ``torch.onnx.export``, deduplicates the export with
:func:`dedup`, then compares torch's outputs with onnxruntime's on the
written file.
"""

from __future__ import annotations

import contextlib
import io
import logging
import shutil
import sys
import tempfile
import warnings
from dataclasses import dataclass, replace
from pathlib import Path
from collections.abc import Iterator
from typing import Any

import numpy as np

from sharescan.entry_points import import_entry_point
from sharescan.errors import InputError
from sharescan.outputs import check_output
from sharescan.onnx_rewrite.dedup import DedupOptions, DedupResult, dedup

__all__ = ["ExportOptions", "ExportResult", "export"]


@dataclass(frozen=True)
class ExportOptions:
    arch: str | None = None  # "module:factory" building the nn.Module for a state dict
    inputs_npz: str | None = None  # sample inputs, one array per graph input, in order
    opset: int = 17
    dynamo: bool = False  # torch.onnx.export(dynamo=True) instead of the TorchScript exporter
    constant_folding: bool = True
    trust_pickle: bool = False
    dedup: DedupOptions = DedupOptions()

    def __post_init__(self) -> None:
        # Checked here so the Python API refuses what the command line refuses.
        if isinstance(self.opset, bool) or not isinstance(self.opset, int) or self.opset < 1:
            raise InputError(f"--opset {self.opset}: must be a positive integer (e.g. 17)")


@dataclass(frozen=True)
class ExportResult:
    dedup: DedupResult
    torch_vs_onnxruntime_max_abs: float  # largest |torch - onnxruntime| over outputs of the written file
    torch_vs_onnxruntime_rel: float

    def to_dict(self) -> dict[str, Any]:
        return {**self.dedup.to_dict(), "torch_vs_onnxruntime": {"max_abs_error": self.torch_vs_onnxruntime_max_abs, "rel_error": self.torch_vs_onnxruntime_rel}}


def _module(path: Path, options: ExportOptions) -> Any:
    import torch

    from sharescan.sources import detect_format
    from sharescan.sources.torch_source import torch_load, walk_tensors

    fmt = detect_format(path)
    if fmt in ("torchscript", "torch.export"):
        return _program(path, fmt, options.trust_pickle)
    if fmt != "pytorch":
        raise InputError(f"{path}: export reads TorchScript, .pt2 or a PyTorch state dict (with --arch), not {fmt}")
    obj = torch_load(path, options.trust_pickle)
    if isinstance(obj, torch.nn.Module):
        return obj
    if options.arch is None:
        raise InputError(f"{path}: a state dict needs --arch module:factory to build the model it belongs to")
    factory = import_entry_point(options.arch, "--arch", "factory", "mypkg.models:build")
    try:
        model = factory()
    except Exception as e:  # the user's code: any failure is theirs to fix
        raise InputError(f"--arch {options.arch}: calling it failed ({e.__class__.__name__}: {str(e).splitlines()[0][:160] if str(e) else ''}); it must build the model with no arguments") from None
    state = dict(walk_tensors(obj, ""))
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as e:
        detail = " ".join(line.strip() for line in str(e).splitlines()[1:3])[:200]
        raise InputError(f"{path}: does not fit --arch {options.arch} ({detail or str(e)[:160]})") from None
    return model


def _program(path: Path, fmt: str, trust_code: bool) -> Any:
    """A TorchScript module or a torch.export program: loading either runs code from the file."""
    import torch

    from sharescan.sources import torch_archive
    from sharescan.sources.torch_source import first_line

    # Read without running first: a damaged archive is refused the same way with or without trust.
    if fmt == "torchscript":
        torch_archive.load_torchscript_archive(path, 0)
    else:
        torch_archive.load_pt2_archive(path, 0)
    what = "TorchScript archive" if fmt == "torchscript" else "torch.export program"
    if not trust_code:
        raise InputError(f"{path}: loading a {what} runs code from the file; pass --trust-code only if you trust where it came from")
    previous = logging.root.manager.disable
    logging.disable(logging.WARNING)  # torch logs a traceback of its own for a bad archive
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)  # TorchScript is deprecated; reading it is still the point
            if fmt == "torchscript":
                return torch.jit.load(str(path), map_location="cpu")
            return torch.export.load(str(path))  # exported as it is, by the dynamo exporter
    except Exception as e:  # torch raises many types for an archive it cannot load
        raise InputError(f"{path}: torch could not load this {what} ({e.__class__.__name__}: {first_line(e)}); re-save it") from None
    finally:
        logging.disable(previous)


def _sample(options: ExportOptions) -> tuple[np.ndarray, ...]:
    if options.inputs_npz:
        try:
            data = np.load(options.inputs_npz)
            return tuple(data[k] for k in data.files)
        except (OSError, ValueError) as e:
            raise InputError(f"{options.inputs_npz}: unreadable inputs file ({e.__class__.__name__}); write it with numpy.savez") from None
    if not options.dedup.inputs:
        raise InputError("export needs example inputs: --input name:shape:dtype (one per model input) or --inputs sample.npz")
    rng = np.random.default_rng(0)
    out = []
    for _, shape, dtype in options.dedup.inputs:
        dt = np.dtype(dtype)
        out.append(rng.standard_normal(shape).astype(dt) if dt.kind == "f" else rng.integers(0, 8, size=shape).astype(dt))
    return tuple(out)


@contextlib.contextmanager
def _quiet_exporter() -> Iterator[None]:
    """The dynamo exporter prints progress on stdout and logs on stderr: keep stdout for results."""
    previous = logging.root.manager.disable
    logging.disable(logging.WARNING)
    try:
        with contextlib.redirect_stdout(sys.stderr if sys.stderr else io.StringIO()):
            yield
    finally:
        logging.disable(previous)


def export(source: str, output: str, options: ExportOptions = ExportOptions()) -> ExportResult:
    import warnings

    import torch

    path = Path(source)
    if not path.is_file():
        raise InputError(f"{path}: no such file; check the path")
    out = Path(output)
    check_output(out, [path])
    model = _module(path, options)
    program = isinstance(model, torch.export.ExportedProgram)
    run = model.module() if program else model
    if not program:
        model.eval()
    arrays = _sample(options)
    args = tuple(torch.from_numpy(np.ascontiguousarray(a)) for a in arrays)
    names = [n for n, _, _ in options.dedup.inputs] or [f"input_{k}" for k in range(len(args))]
    work = Path(tempfile.mkdtemp(prefix=".sharescan-export-", dir=Path(output).parent))
    try:
        raw = work / "export.onnx"
        with warnings.catch_warnings(), torch.no_grad(), _quiet_exporter():
            warnings.simplefilter("ignore")
            try:
                torch.onnx.export(model, args, str(raw), input_names=names, opset_version=max(options.opset, 18) if program else options.opset, dynamo=options.dynamo or program, do_constant_folding=options.constant_folding)
            except Exception as e:  # the exporters raise many types
                raise InputError(f"{path}: torch.onnx.export failed ({e.__class__.__name__}: {str(e).strip().splitlines()[0][:160]})") from None
            expected = run(*args)
        import onnx

        # The dynamo exporter drops inputs the graph does not read: verify with those it kept.
        kept = {i.name for i in onnx.load(str(raw), load_external_data=False).graph.input}
        specs = tuple((n, tuple(a.shape), str(a.dtype)) for n, a in zip(names, arrays) if n in kept)
        result = replace(dedup(str(raw), output, replace(options.dedup, inputs=specs)), input=str(path))
    finally:
        shutil.rmtree(work, ignore_errors=True)
    outs = expected if isinstance(expected, (tuple, list)) else (expected,)
    import onnxruntime as ort

    session = ort.InferenceSession(output, providers=["CPUExecutionProvider"])
    declared = {i.name for i in session.get_inputs()}
    got = session.run(None, {n: a for n, a in zip(names, arrays) if n in declared})
    max_abs = rel = 0.0
    for t, g in zip(outs, got):
        x = t.detach().numpy().astype(np.float64)
        diff = np.abs(x - g.astype(np.float64))
        max_abs = max(max_abs, float(diff.max()) if diff.size else 0.0)
        norm = float(np.linalg.norm(x))
        rel = max(rel, float(np.linalg.norm(diff)) / norm if norm else 0.0)
    return ExportResult(result, max_abs, rel)
