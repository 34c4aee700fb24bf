"""``sharescan align``: permute B's hidden units to match A, check B computes the same, save it."""

from __future__ import annotations

import copy
import dataclasses
import logging
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from sharescan.align.graph import Site, trace_sites
from sharescan.align.matching import permute, weight_matching
from sharescan.align.result import AlignResult, LayerGap
from sharescan.errors import InputError, VerificationError

__all__ = ["AlignOptions", "align", "align_modules"]

logger = logging.getLogger(__name__)

# Square image sizes tried for a conv net's random inputs when --input-shape is not given.
_IMAGE_SIDES = (8, 16, 28, 32, 64, 224)
_CHECK_SAMPLES = 16


@dataclass(frozen=True)
class AlignOptions:
    arch: str | None = None  # module:factory for state dicts (imports that code)
    trust_pickle: bool = False
    starts: int = 4  # coordinate-descent starts (the first from B as given); the best similarity wins
    one_pass: bool = False  # a single alternating pass in graph order instead (for comparison)
    seed: int = 0
    input_shape: tuple[int, ...] | None = None  # one sample's shape for the output check; None: inferred

    def __post_init__(self) -> None:
        if self.starts < 1:
            raise InputError(f"--starts {self.starts}: must be 1 or more")
        if self.input_shape is not None and (not self.input_shape or min(self.input_shape) < 1):
            raise InputError(f"--input-shape {self.input_shape}: one sample's dimensions, each 1 or more (e.g. 1,28,28)")


def align(a: str | os.PathLike[str], b: str | os.PathLike[str], output: str | os.PathLike[str] | None, options: AlignOptions = AlignOptions()) -> AlignResult:
    """Permute model ``b``'s hidden units to match ``a`` and save the permuted ``b`` (a state dict) to ``output``.

    Raises:
        InputError: unreadable models, different architectures or shapes
            (naming the layer), a structure align does not follow; nothing written.
        VerificationError: the permuted B computes something else; nothing written.
    """
    import torch

    from sharescan.outputs import atomic_path, check_output
    from sharescan.torch_module import load_module

    paths = [os.fspath(a), os.fspath(b)]
    out = None if output is None else Path(output)
    if out is not None:
        check_output(out, paths)
    models = []
    for path in paths:
        m = load_module(path, options.arch, options.trust_pickle)
        if not isinstance(m, torch.nn.Module) or isinstance(m, torch.jit.ScriptModule):
            raise InputError(f"{path}: align permutes nn.Modules: give a state dict with --arch (TorchScript and .pt2 programs are not traced)")
        models.append(m)
    result = align_modules(models[0], models[1], options)
    if out is not None:
        state = {k: v.detach().cpu().contiguous() for k, v in result.modules["B"].state_dict().items()}
        with atomic_path(out) as tmp:
            if out.suffix == ".safetensors":
                from safetensors.torch import save_file

                save_file(state, str(tmp), metadata={"format": "pt"})
            else:
                torch.save(state, str(tmp))
    return dataclasses.replace(result, models=tuple(paths), output=None if out is None else str(out))


def align_modules(a: Any, b: Any, options: AlignOptions = AlignOptions()) -> AlignResult:
    """``b`` permuted to match ``a`` (a copy, in ``result.modules["B"]``); neither input is modified."""
    import torch

    start = time.perf_counter()
    _check_same_shapes(a, b)
    sites = trace_sites(a)
    if [(s.producers, s.consumers) for s in trace_sites(b)] != [(s.producers, s.consumers) for s in sites]:
        raise InputError(f"{type(b).__name__}: its layer graph differs from A's ({type(a).__name__}); align models of one architecture")
    sa, sb = _numpy_state(a), _numpy_state(b)
    matching = weight_matching(sa, sb, sites, options.starts, seed=options.seed, one_pass=options.one_pass)
    aligned_state = permute(sb, sites, matching.perms)
    aligned = copy.deepcopy(b)
    with torch.no_grad():
        reference = b.state_dict()
        aligned.load_state_dict({k: torch.as_tensor(v).to(reference[k].dtype) for k, v in aligned_state.items()})
    shape = options.input_shape or _input_shape(a)
    diff = _output_diff(b, aligned, shape, options.seed)
    layers = _layer_gaps(a, sa, sb, aligned_state, sites)
    trunk = [n for s in sites for n in (*s.producers, *s.norms)]
    trunk_names = [k for k in sa if k.rsplit(".", 1)[0] in trunk and k.rsplit(".", 1)[1] in ("weight", "bias")]
    params = [k for k, _ in a.named_parameters()]
    moved = sum(int((p != np.arange(len(p))).sum()) for p in matching.perms.values())
    logger.info("aligned %d sites in %d passes (%d starts); max abs output difference %.3g", len(sites), matching.passes, matching.starts, diff)
    return AlignResult(
        ("A", "B"), None, tuple(s.producer for s in sites), tuple(layers),
        _gap(sa, sb, trunk_names), _gap(sa, aligned_state, trunk_names), _gap(sa, sb, params), _gap(sa, aligned_state, params),
        moved, diff, tuple(shape), matching.passes, matching.starts, time.perf_counter() - start, modules={"B": aligned},
    )


def _check_same_shapes(a: Any, b: Any) -> None:
    """One architecture: the same parameter and buffer names with the same shapes; the first difference is named."""
    sa, sb = a.state_dict(), b.state_dict()
    for name in sa:
        if name not in sb:
            raise InputError(f"layer {name.rsplit('.', 1)[0]}: {name} is in A but not in B; align models of one architecture")
        if tuple(sa[name].shape) != tuple(sb[name].shape):
            raise InputError(f"layer {name.rsplit('.', 1)[0]}: {name} has shape {tuple(sa[name].shape)} in A and {tuple(sb[name].shape)} in B; align models of one architecture")
    for name in sb:
        if name not in sa:
            raise InputError(f"layer {name.rsplit('.', 1)[0]}: {name} is in B but not in A; align models of one architecture")


def _numpy_state(model: Any) -> dict[str, np.ndarray]:
    return {k: v.detach().cpu().numpy().copy() for k, v in model.state_dict().items()}


def _gap(a: dict[str, np.ndarray], b: dict[str, np.ndarray], names: list[str]) -> float:
    """||A - B|| / max(||A||, ||B||) over ``names`` taken together (0 for two zero tensors)."""
    if not names:
        return 0.0
    va = np.concatenate([a[n].ravel().astype(np.float64) for n in names])
    vb = np.concatenate([b[n].ravel().astype(np.float64) for n in names])
    scale = max(np.linalg.norm(va), np.linalg.norm(vb))
    return float(np.linalg.norm(va - vb) / scale) if scale > 0 else 0.0


def _layer_gaps(model: Any, a: dict[str, np.ndarray], b: dict[str, np.ndarray], aligned: dict[str, np.ndarray], sites: list[Site]) -> list[LayerGap]:
    outs = {n for s in sites for n in (*s.producers, *s.norms)}
    ins = {c.module for s in sites for c in s.consumers}
    rows = []
    for name, module in model.named_modules():
        params = [f"{name}.{p}" for p, _ in module.named_parameters(recurse=False)]
        if params:
            how = "+".join(w for w, inside in (("in", name in ins), ("out", name in outs)) if inside)
            rows.append(LayerGap(name, _gap(a, b, params), _gap(a, aligned, params), how))
    return rows


def _input_shape(model: Any) -> tuple[int, ...]:
    """One sample's shape: the first Linear's features, or the first Conv2d's channels at the first square size that runs."""
    import torch
    from torch import nn

    for m in model.modules():
        if isinstance(m, nn.Linear):
            return (m.in_features,)
        if isinstance(m, nn.Conv2d):
            for side in _IMAGE_SIDES:
                shape = (m.in_channels, side, side)
                try:
                    with torch.no_grad():
                        copy.deepcopy(model).eval()(torch.zeros(2, *shape))
                    return shape
                except Exception:  # a size the model does not take: try the next
                    continue
            raise InputError(f"layer {_name(model, m)}: no square input size in {_IMAGE_SIDES} runs through the model; pass --input-shape C,H,W")
    raise InputError(f"{type(model).__name__}: no Linear or Conv2d layer; nothing to align")


def _name(model: Any, target: Any) -> str:
    return next((n for n, m in model.named_modules() if m is target), type(target).__name__)


def _output_diff(b: Any, aligned: Any, shape: tuple[int, ...], seed: int) -> float:
    """max |aligned(x) - b(x)| on random inputs, both in eval mode; raises if it is beyond float rounding."""
    import torch

    device = next((p.device for p in b.parameters()), torch.device("cpu"))
    x = torch.randn(_CHECK_SAMPLES, *shape, generator=torch.Generator().manual_seed(seed)).to(device)
    was = b.training
    b.eval()
    aligned.eval()
    try:
        with torch.no_grad():
            want, got = b(x), aligned(x)
    except Exception as e:  # the user's forward on inputs of the inferred shape
        raise InputError(f"running the model on random inputs of shape {shape} failed ({e.__class__.__name__}); pass --input-shape") from None
    finally:
        b.train(was)
    diff = float((got - want).abs().max())
    if not diff <= 1e-4 * max(1.0, float(want.abs().max())):
        raise VerificationError(f"the permuted B differs from B by {diff:.3g} on random inputs; a layer's units are not permuted consistently; nothing written")
    return diff
