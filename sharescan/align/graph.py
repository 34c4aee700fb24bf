"""Which hidden units of a model can be permuted, and every tensor that indexes them.

A *site* is the output of a Linear or Conv2d whose units feed only
elementwise or per-channel operations (activations, BatchNorm, dropout,
pooling, flatten) and then other Linear/Conv2d layers. Permuting a site's
units, consistently in its producer's rows, bias, norm parameters and
statistics and its consumers' input columns, leaves what the model computes
unchanged. The graph is read with ``torch.fx``; an operation outside that
list (a residual add, attention, a reshape) is refused, naming it, rather
than guessed at.
"""

from __future__ import annotations

import logging
import operator
from dataclasses import dataclass
from typing import Any

from sharescan.errors import InputError, one_line

__all__ = ["Consumer", "Site", "trace_sites"]

logger = logging.getLogger(__name__)

# Modules and functions that act on each unit (or channel) alone: a site's units pass through them.
_PASS_MODULES = (
    "ReLU", "ReLU6", "LeakyReLU", "GELU", "SiLU", "ELU", "SELU", "CELU", "Tanh", "Sigmoid", "Softplus", "Mish", "Hardswish",
    "Hardtanh", "Hardsigmoid", "Dropout", "Dropout1d", "Dropout2d", "AlphaDropout", "Identity",
    "MaxPool1d", "MaxPool2d", "AvgPool1d", "AvgPool2d", "AdaptiveAvgPool1d", "AdaptiveAvgPool2d", "AdaptiveMaxPool2d",
)
_PASS_FUNCTIONS = {
    "relu", "relu_", "relu6", "leaky_relu", "gelu", "silu", "elu", "selu", "tanh", "sigmoid", "softplus", "mish", "hardswish",
    "dropout", "max_pool2d", "avg_pool2d", "adaptive_avg_pool2d", "adaptive_max_pool2d", "max_pool1d", "avg_pool1d",
}


@dataclass(frozen=True)
class Consumer:
    module: str  # a Linear or Conv2d whose input dimension 1 holds the site's units
    spatial: int = 1  # > 1: a Linear after Flatten of a conv site; each unit spans this many inputs


@dataclass(frozen=True)
class Site:
    producer: str  # the Linear/Conv2d whose output units are permuted
    units: int
    norms: tuple[str, ...]  # BatchNorm modules on these units (weight, bias, running_mean, running_var)
    consumers: tuple[Consumer, ...]


@dataclass
class _Flow:
    """What a tensor in the traced graph carries: units of a site (or the input), and how they are laid out."""

    site: str | None  # producer name; None: the model's input (never permuted)
    kind: str  # "features": units on the last/only dim of a 2-D tensor; "channels": dim 1 of N-D; "flat": flattened channels
    channels: int = 0


def trace_sites(model: Any) -> list[Site]:
    """The model's permutable sites, in the order their producers run.

    Raises:
        InputError: one line naming the operation or layer that the tracer
            could not follow, or that is not a per-unit operation.
    """
    import torch
    from torch import fx, nn

    try:
        graph = fx.symbolic_trace(model).graph
    except Exception as e:  # the model's own forward: any failure means it cannot be traced
        raise InputError(f"{type(model).__name__}: torch.fx cannot trace its forward ({e.__class__.__name__}: {one_line(e)}); align handles Linear/Conv2d chains") from None
    modules = dict(model.named_modules())
    flows: dict[str, _Flow] = {}
    norms: dict[str, list[str]] = {}
    consumers: dict[str, list[Consumer]] = {}
    units: dict[str, int] = {}
    fixed: set[str] = set()  # sites whose units leave the model or meet something that is not per-unit

    def source(node: Any) -> _Flow:
        return flows[node.name]

    for node in graph.nodes:
        if node.op == "placeholder":
            flows[node.name] = _Flow(None, "input")
            continue
        if node.op == "output":
            for arg in _tensor_args(node.args):
                f = flows.get(arg.name)
                if f is not None and f.site is not None:
                    fixed.add(f.site)  # the model's outputs keep their order
            continue
        ins = [a for a in _tensor_args(node.args) + _tensor_args(node.kwargs) if a.name in flows]
        if node.op == "call_module":
            mod = modules[node.target]
            name = node.target
            kind = type(mod).__name__
            if len(ins) != 1:
                raise InputError(f"layer {name} ({kind}): takes {len(ins)} tensors; align handles one-input layers in a chain")
            f = source(ins[0])
            if isinstance(mod, (nn.Linear, nn.Conv2d)):
                if isinstance(mod, nn.Conv2d) and mod.groups != 1:
                    raise InputError(f"layer {name}: grouped convolution (groups={mod.groups}); align permutes ungrouped Conv2d channels only")
                _consume(name, mod, f, consumers, fixed)
                width = mod.out_features if isinstance(mod, nn.Linear) else mod.out_channels
                units[name] = width
                flows[node.name] = _Flow(name, "features" if isinstance(mod, nn.Linear) else "channels", width)
                norms[name], consumers[name] = [], []
            elif isinstance(mod, (nn.BatchNorm1d, nn.BatchNorm2d)):
                if f.site is not None:
                    if not mod.affine or not mod.track_running_stats:
                        raise InputError(f"layer {name}: BatchNorm without affine parameters or running statistics; align needs both")
                    norms[f.site].append(name)
                flows[node.name] = f
            elif isinstance(mod, nn.Flatten):
                flows[node.name] = _flatten(f, mod.start_dim, name)
            elif kind in _PASS_MODULES:
                flows[node.name] = f
            else:
                raise InputError(f"layer {name} ({kind}): not a per-unit operation align can permute through; align handles Linear/Conv2d chains with activations, BatchNorm, dropout, pooling and flatten")
        elif node.op == "call_function" or node.op == "call_method":
            fname = getattr(node.target, "__name__", str(node.target))
            if fname == "flatten" and ins:
                start = node.args[1] if len(node.args) > 1 else node.kwargs.get("start_dim", 0)
                flows[node.name] = _flatten(source(ins[0]), start, f"{fname} at {node.name}")
            elif fname in _PASS_FUNCTIONS and len(ins) == 1:
                flows[node.name] = source(ins[0])
            elif node.target is operator.getitem or fname == "size":
                raise InputError(f"operation {node.name} ({fname}): indexing or shapes in forward; align handles Linear/Conv2d chains")
            else:
                what = "a residual add" if node.target in (operator.add, torch.add) else fname
                raise InputError(f"operation {node.name} ({what}): not a per-unit operation align can permute through (residual adds, attention and reshapes are not handled)")
        else:  # get_attr: a parameter used outside its module
            raise InputError(f"{node.target}: a tensor read directly in forward; align permutes parameters through their own Linear/Conv2d modules only")
    sites = []
    for name, width in units.items():
        if name in fixed or not consumers.get(name):
            continue
        sites.append(Site(name, width, tuple(norms[name]), tuple(consumers[name])))
    return sites


def _tensor_args(args: Any) -> list[Any]:
    from torch import fx

    out: list[Any] = []
    items = args.values() if isinstance(args, dict) else args
    for a in items:
        if isinstance(a, fx.Node):
            out.append(a)
        elif isinstance(a, (list, tuple, dict)):
            out += _tensor_args(a)
    return out


def _flatten(f: _Flow, start_dim: Any, where: str) -> _Flow:
    if f.site is None:
        return f
    if start_dim != 1 or f.kind != "channels":
        raise InputError(f"{where}: flattens {f.site}'s output other than from dimension 1 of a conv output; align cannot follow its units")
    return _Flow(f.site, "flat", f.channels)


def _consume(name: str, mod: Any, f: _Flow, consumers: dict[str, list[Consumer]], fixed: set[str]) -> None:
    from torch import nn

    if f.site is None:
        return
    width = mod.in_features if isinstance(mod, nn.Linear) else mod.in_channels
    if isinstance(mod, nn.Linear) and f.kind == "features" and width == f.channels:
        consumers[f.site].append(Consumer(name))
    elif isinstance(mod, nn.Linear) and f.kind == "flat" and width % f.channels == 0:
        consumers[f.site].append(Consumer(name, width // f.channels))
    elif isinstance(mod, nn.Conv2d) and f.kind == "channels" and width == f.channels:
        consumers[f.site].append(Consumer(name))
    else:
        raise InputError(f"layer {name}: reads {f.site}'s output in a layout align does not follow ({type(mod).__name__} after {f.kind}); align handles Linear/Conv2d chains")
