"""``sharescan export``: a PyTorch model to a deduplicated, verified ONNX file.

Reads TorchScript, ``torch.export`` programs (.pt2), a state dict with
``--arch module:factory`` (which imports the user's code: an explicit
opt-in), or a transformers model folder or repo id (built by transformers).
Inputs go by name where every input name is a keyword of the model's forward
(``input_ids``, ``attention_mask``), else by position. Exports with ``torch.onnx.export``, deduplicates the export with
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
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from sharescan.errors import InputError, one_line
from sharescan.onnx_rewrite.dedup import DedupOptions, DedupResult, dedup
from sharescan.onnx_rewrite.feeds import random_array
from sharescan.onnx_rewrite.verify import torch_vs_onnxruntime
from sharescan.outputs import check_output
from sharescan.torch_module import input_names, is_transformers_model, load_module

__all__ = ["ExportOptions", "ExportResult", "export"]


@dataclass(frozen=True)
class ExportOptions:
    arch: str | None = None  # "module:factory" building the nn.Module for a state dict
    inputs_npz: str | None = None  # sample inputs: arrays named by the model's inputs (fed by name), else fed in order
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


def _sample(options: ExportOptions) -> tuple[list[str], tuple[np.ndarray, ...]]:
    """The example inputs' names (npz keys or --input names) and arrays."""
    if options.inputs_npz:
        try:
            data = np.load(options.inputs_npz)
            return list(data.files), tuple(data[k] for k in data.files)
        except (OSError, ValueError) as e:
            raise InputError(f"{options.inputs_npz}: unreadable inputs file ({e.__class__.__name__}); write it with numpy.savez") from None
    if not options.dedup.inputs:
        raise InputError("export needs example inputs: --input name:shape:dtype (one per model input) or --inputs sample.npz")
    rng = np.random.default_rng(0)
    return [n for n, _, _ in options.dedup.inputs], tuple(random_array(rng, name, shape, np.dtype(dtype)) for name, shape, dtype in options.dedup.inputs)


def _outputs(out: Any) -> Any:
    """A dict or ModelOutput as the tuple of its tensors, in order: the graph outputs the exporter writes for it."""
    from collections.abc import Mapping

    if isinstance(out, Mapping):
        return tuple(v for v in out.values() if v is not None)
    return out


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


def export(source: str | Path, output: str | Path, options: ExportOptions = ExportOptions(), on_step: Callable[[str], None] | None = None) -> ExportResult:
    """Export a PyTorch model to ONNX, deduplicate it, verify it against torch, write it to ``output``.

    Args:
        source: a TorchScript archive, a .pt2 program, a checkpoint (a state
            dict with ``options.arch``), a transformers folder or repo id.
        output: the .onnx file to write (external data beside it when large).
        options: architecture, example inputs, exporter and ``dedup`` settings.
        on_step: called with the name of each step as it starts (a progress display).

    Returns:
        The deduplication result and torch's distance to onnxruntime's outputs.

    Raises:
        InputError: an unreadable model or a failed export; VerificationError: nothing written.

    Example:
        >>> import sharescan
        >>> r = sharescan.export("model.pt", "model.onnx", sharescan.ExportOptions(arch="mypkg.models:build"))  # doctest: +SKIP
        >>> r.torch_vs_onnxruntime_max_abs  # doctest: +SKIP
    """
    import torch

    step = on_step or (lambda name: None)
    out = Path(output)
    check_output(out, [source])
    step("loading the model")
    model = load_module(source, options.arch, options.trust_pickle)
    program = isinstance(model, torch.export.ExportedProgram)
    run = model.module() if program else model
    if not program:
        model.eval()
    names, arrays = _sample(options)
    args = tuple(torch.from_numpy(np.ascontiguousarray(a)) for a in arrays)
    accepted = input_names(model)
    by_name = accepted is not None and bool(names) and set(names) <= accepted
    if options.inputs_npz and not by_name:
        names = [f"input_{k}" for k in range(len(args))]  # npz keys that are no input names: fed in order, as before
    kwargs = dict(zip(names, args)) if by_name else {}
    positional = () if by_name else args
    # transformers' attention masks use ops the TorchScript exporter lacks (aten::diff): the dynamo exporter takes them.
    dynamo = options.dynamo or program or is_transformers_model(model)
    work = Path(tempfile.mkdtemp(prefix=".sharescan-export-", dir=Path(output).parent))
    try:
        raw = work / "export.onnx"
        step("exporting with torch.onnx")
        with warnings.catch_warnings(), torch.no_grad(), _quiet_exporter():
            warnings.simplefilter("ignore")
            try:
                torch.onnx.export(model, positional, str(raw), kwargs=kwargs or None, input_names=names, opset_version=max(options.opset, 18) if dynamo else options.opset, dynamo=dynamo, do_constant_folding=options.constant_folding)
            except Exception as e:  # the exporters raise many types
                raise InputError(f"{source}: torch.onnx.export failed ({e.__class__.__name__}: {one_line(e)})") from None
            expected = _outputs(run(*positional, **kwargs))
        import onnx

        # The dynamo exporter drops inputs the graph does not read: verify with those it kept.
        kept = {i.name for i in onnx.load(str(raw), load_external_data=False).graph.input}
        specs = tuple((n, tuple(a.shape), str(a.dtype)) for n, a in zip(names, arrays) if n in kept)
        result = replace(dedup(str(raw), output, replace(options.dedup, inputs=specs), on_step=on_step), input=str(source))
    finally:
        shutil.rmtree(work, ignore_errors=True)
    step("comparing torch with onnxruntime")
    max_abs, rel = torch_vs_onnxruntime(Path(output), dict(zip(names, arrays)), expected)
    return ExportResult(result, max_abs, rel)
