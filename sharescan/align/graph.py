"""Which hidden units of a model can be permuted, and every tensor that indexes them.

A *site* is a set of hidden units written by one or more Linear/Conv2d
layers and read back only by other Linear/Conv2d layers, with nothing in
between but per-unit operations (activations, BatchNorm, dropout, pooling,
flatten). Permuting a site's units, consistently in its producers' rows,
biases, norm parameters and statistics and its consumers' input columns,
leaves what the model computes unchanged.

Two kinds of site:

- plain units: the outputs of one Linear/Conv2d (an MLP's hidden layer, a
  conv's channels, a transformer MLP's fc1 units read by fc2);
- attention heads: the q, k and v Linears whose outputs are split into heads
  (``view``/``reshape``/``unflatten``, then ``transpose``/``permute``),
  combined by ``q @ k.transpose(-2, -1)``, softmax and ``@ v`` (or
  ``F.scaled_dot_product_attention``) and merged back
  (``transpose``, ``reshape``/``view``/``flatten``) into the output
  projection. A head moves as a whole: its block of rows in q, k and v and
  its block of the output projection's columns.

The residual stream is never permuted: a tensor derived only from the
model's input (through LayerNorm, residual adds, embeddings, anything) is
left as it is, and a Linear reading it starts a new site. A site's units may
be added into the stream (or normalised) only when nothing reads them as
hidden units, i.e. the permuted units lie strictly inside a branch.
The graph is read with ``torch.fx``; anything else that touches permuted
units is refused, naming it, rather than guessed at.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, replace
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
    "dropout", "max_pool2d", "avg_pool2d", "adaptive_avg_pool2d", "adaptive_max_pool2d", "max_pool1d", "avg_pool1d", "contiguous",
}
# Elementwise arithmetic: with a number it acts per unit; with a tensor it adds into (or mixes with) something else.
_ARITHMETIC = {"add", "iadd", "sub", "mul", "imul", "truediv", "div", "masked_fill"}
# Reading a tensor's shape: the value is not a tensor and carries no units.
_SHAPE_READS = {"size", "dim", "getattr"}


@dataclass(frozen=True)
class Consumer:
    module: str  # a Linear or Conv2d whose input dimension 1 holds the site's units
    spatial: int = 1  # > 1: each unit spans this many consecutive inputs (Flatten of a conv, or a head's dims)


@dataclass(frozen=True)
class Site:
    producers: tuple[str, ...]  # the Linear/Conv2d layers whose output units are permuted together (q, k, v for heads)
    units: int  # units (or heads) permuted
    norms: tuple[str, ...]  # BatchNorm modules on these units (weight, bias, running_mean, running_var)
    consumers: tuple[Consumer, ...]
    block: int = 1  # rows per unit in each producer: a head's dimensions; 1 for plain units

    @property
    def producer(self) -> str:
        """The site's name: its first producer."""
        return self.producers[0]


@dataclass(frozen=True)
class _Flow:
    """What a tensor in the traced graph carries."""

    site: str | None  # producer name; None: the residual stream / input (never permuted)
    # "stream"; "features": units on the last dim; "channels": dim 1 of N-D; "flat": flattened channels;
    # "heads": split into heads (head_axis) of head dims (dim_axis); "scores": per-head attention scores
    kind: str
    channels: int = 0
    head_axis: int = 0  # negative axis
    dim_axis: int = 0  # negative axis
    ndim: int | None = None


_STREAM = _Flow(None, "stream")


class _Tracer:
    def __init__(self, modules: dict[str, Any]) -> None:
        self.modules = modules
        self.flows: dict[str, _Flow] = {}
        self.shapes: set[str] = set()  # nodes holding shapes or sizes, not tensors
        self.norms: dict[str, list[str]] = {}
        self.consumers: dict[str, list[Consumer]] = {}
        self.units: dict[str, int] = {}
        self.heads: dict[str, tuple[int, int]] = {}  # site -> (heads, head dims) once split into heads
        self.parent: dict[str, str] = {}  # union-find: sites that must move together (q, k, v of one attention)
        self.fixed: set[str] = set()  # sites whose units leave the model
        self.streamed: dict[str, str] = {}  # site -> operation where its units join the stream (residual add, LayerNorm)

    def find(self, s: str) -> str:
        while self.parent.get(s, s) != s:
            s = self.parent[s]
        return s

    def union(self, a: str, b: str, where: str) -> str:
        ra, rb = self.find(a), self.find(b)
        if ra != rb:
            if self.heads.get(ra) != self.heads.get(rb):
                raise InputError(f"operation {where}: combines {a}'s heads {self.heads.get(ra)} with {b}'s {self.heads.get(rb)} ((heads, head dims) differ); align permutes heads of equal shape")
            self.parent[rb] = ra
        return ra


def trace_sites(model: Any) -> list[Site]:
    """The model's permutable sites, in the order their producers run.

    Raises:
        InputError: one line naming the operation or layer that the tracer
            could not follow, or that is not a per-unit operation.
    """
    from torch import fx

    try:
        graph = fx.symbolic_trace(model).graph
    except Exception as e:  # the model's own forward: any failure means it cannot be traced
        raise InputError(f"{type(model).__name__}: torch.fx cannot trace its forward ({e.__class__.__name__}: {one_line(e)}); align handles Linear/Conv2d chains and explicit attention") from None
    t = _Tracer(dict(model.named_modules()))
    for node in graph.nodes:
        _step(t, node)
    groups: dict[str, list[str]] = {}
    for name in t.units:
        groups.setdefault(t.find(name), []).append(name)
    sites = []
    for root, members in groups.items():
        consumers = [c for m in members for c in t.consumers[m]]
        streamed = [m for m in members if m in t.streamed]
        if streamed and consumers:
            m = streamed[0]
            raise InputError(f"layer {m}: its units are read by {consumers[0].module} and also join the residual stream at {t.streamed[m]}; "
                             "align permutes units strictly inside a branch (from a Linear reading the stream to the Linear writing back into it)")
        if streamed or any(m in t.fixed for m in members) or not consumers:
            continue
        heads, dims = t.heads.get(root, (t.units[root], 1))
        consumers = [replace(c, spatial=dims) if dims > 1 else c for c in consumers]
        sites.append(Site(tuple(members), heads, tuple(n for m in members for n in t.norms[m]), tuple(consumers), dims))
    return sites


def _step(t: _Tracer, node: Any) -> None:
    from torch import nn

    if node.op == "placeholder":
        t.flows[node.name] = _STREAM
        return
    if node.op == "output":
        for arg in _tensor_args(node.args):
            f = t.flows.get(arg.name)
            if f is not None and f.site is not None:
                t.fixed.add(f.site)  # the model's outputs keep their order
        return
    if node.op == "get_attr":  # a parameter or buffer used outside its module: part of the stream unless a permuted layer owns it
        owner = t.modules.get(node.target.rpartition(".")[0])
        if isinstance(owner, (nn.Linear, nn.Conv2d, nn.BatchNorm1d, nn.BatchNorm2d)):
            raise InputError(f"{node.target}: a tensor read directly in forward; align permutes parameters through their own Linear/Conv2d modules only")
        t.flows[node.name] = _STREAM
        return
    args = _tensor_args(node.args) + _tensor_args(node.kwargs)
    fname = node.target if node.op == "call_method" else getattr(node.target, "__name__", str(node.target))
    if fname in _SHAPE_READS or (fname == "getitem" and args and args[0].name in t.shapes) or (args and all(a.name in t.shapes for a in args)):
        t.shapes.add(node.name)
        return
    ins = [t.flows[a.name] for a in args if a.name in t.flows]
    sited = [f for f in ins if f.site is not None]
    if node.op == "call_module":
        _module(t, node, ins)
    elif not sited:
        t.flows[node.name] = _STREAM  # only the stream: never permuted, any operation is safe
    else:
        t.flows[node.name] = _function(t, node, fname, ins, sited)


def _module(t: _Tracer, node: Any, ins: list[_Flow]) -> None:
    from torch import nn

    mod, name = t.modules[node.target], node.target
    kind = type(mod).__name__
    if isinstance(mod, (nn.Linear, nn.Conv2d)):
        if len(ins) != 1:
            raise InputError(f"layer {name} ({kind}): takes {len(ins)} tensors; align handles one-input layers")
        if isinstance(mod, nn.Conv2d) and mod.groups != 1:
            raise InputError(f"layer {name}: grouped convolution (groups={mod.groups}); align permutes ungrouped Conv2d channels only")
        _consume(t, name, mod, ins[0])
        width = mod.out_features if isinstance(mod, nn.Linear) else mod.out_channels
        t.units[name], t.norms[name], t.consumers[name] = width, [], []
        t.flows[node.name] = _Flow(name, "features" if isinstance(mod, nn.Linear) else "channels", width)
        return
    sited = [f for f in ins if f.site is not None]
    if not sited:
        t.flows[node.name] = _STREAM
    elif isinstance(mod, (nn.BatchNorm1d, nn.BatchNorm2d)) and len(ins) == 1:
        if not mod.affine or not mod.track_running_stats:
            raise InputError(f"layer {name}: BatchNorm without affine parameters or running statistics; align needs both")
        t.norms[ins[0].site].append(name)  # type: ignore[index]
        t.flows[node.name] = ins[0]
    elif isinstance(mod, nn.LayerNorm) and len(ins) == 1:
        t.streamed.setdefault(t.find(ins[0].site), f"{name} (LayerNorm)")  # type: ignore[arg-type]
        t.flows[node.name] = _STREAM
    elif isinstance(mod, nn.Flatten) and len(ins) == 1:
        t.flows[node.name] = _flatten(ins[0], mod.start_dim, mod.end_dim, name)
    elif kind in _PASS_MODULES and len(ins) == 1:
        t.flows[node.name] = ins[0]
    elif isinstance(mod, nn.Softmax) and len(ins) == 1 and ins[0].kind == "scores":
        t.flows[node.name] = _softmax(ins[0], mod.dim, name)
    else:
        raise InputError(f"layer {name} ({kind}): not a per-unit operation align can permute through; align handles Linear/Conv2d chains with activations, BatchNorm, dropout, pooling, flatten, residual branches and explicit attention")


def _function(t: _Tracer, node: Any, fname: str, ins: list[_Flow], sited: list[_Flow]) -> _Flow:
    where = f"{node.name} ({fname})"
    f = sited[0]
    if fname in _PASS_FUNCTIONS and len(ins) == 1:
        return f
    if fname in _ARITHMETIC:
        if len(ins) == 1:
            return f  # with a number: per unit
        if f.kind == "scores" and len(sited) == 1:
            return f  # an attention mask or bias, shared by every head
        if fname in ("add", "iadd"):  # a residual add: these units join the stream
            for s in sited:
                t.streamed.setdefault(t.find(s.site), f"{node.name} (residual add)")  # type: ignore[arg-type]
            return _STREAM
    if len(ins) == 1:
        rest, kw = list(node.args[1:]), node.kwargs
        if fname in ("view", "reshape"):
            return _reshape(t, f, rest[0] if len(rest) == 1 and isinstance(rest[0], (list, tuple)) else rest, where)
        if fname == "unflatten":
            dim, sizes = (rest + [kw.get("dim"), kw.get("sizes")][len(rest):])[:2]
            if isinstance(dim, int) and _neg(f, dim, where) == -1 and isinstance(sizes, (list, tuple)):
                return _reshape(t, f, ["*", *sizes], where)
        if fname == "flatten":
            start = rest[0] if rest else kw.get("start_dim", 0)
            end = rest[1] if len(rest) > 1 else kw.get("end_dim", -1)
            return _flatten(f, start, end, where)
        if fname in ("transpose", "swapaxes") and f.kind in ("heads", "scores"):
            a, b = (_neg(f, d, where) for d in rest[:2])
            swap = {a: b, b: a}
            return replace(f, head_axis=swap.get(f.head_axis, f.head_axis), dim_axis=swap.get(f.dim_axis, f.dim_axis))
        if fname == "permute" and f.kind in ("heads", "scores"):
            dims = list(rest[0]) if len(rest) == 1 and isinstance(rest[0], (list, tuple)) else list(rest)
            g = replace(f, ndim=len(dims))
            new = [_neg(g, d, where) for d in dims]
            n = len(dims)
            return replace(g, head_axis=new.index(f.head_axis) - n, dim_axis=(new.index(f.dim_axis) - n) if f.kind == "heads" else 0)
        if fname == "softmax" and f.kind == "scores":
            return _softmax(f, rest[0] if rest else kw.get("dim"), where)
    if fname == "matmul" and len(ins) == 2 and len(sited) == 2:
        left, right = ins
        if left.kind == "heads" and right.kind == "heads" and left.dim_axis == -1 and right.dim_axis == -2 and left.head_axis == right.head_axis <= -3:
            return _Flow(t.union(left.site, right.site, where), "scores", head_axis=left.head_axis, ndim=left.ndim)  # type: ignore[arg-type]
        if left.kind == "scores" and right.kind == "heads" and right.dim_axis == -1 and left.head_axis == right.head_axis <= -3:
            return replace(right, site=t.union(left.site, right.site, where))  # type: ignore[arg-type]
    if fname == "scaled_dot_product_attention" and len(sited) == len(ins) >= 3:
        q, k, v = ins[:3]
        if all(x.kind == "heads" and x.dim_axis == -1 and x.head_axis == q.head_axis <= -3 for x in (q, k, v)):
            t.union(q.site, k.site, where)  # type: ignore[arg-type]
            return replace(v, site=t.union(q.site, v.site, where))  # type: ignore[arg-type]
    if fname == "getitem":
        raise InputError(f"operation {where}: indexes {f.site}'s output; align cannot follow its units")
    raise InputError(f"operation {where}: not a per-unit operation align can permute through {f.site}'s units; "
                     "align handles Linear/Conv2d chains, residual branches and explicit attention (split heads with view/reshape, q @ k.transpose, softmax, @ v, merge)")


def _softmax(f: _Flow, dim: Any, where: str) -> _Flow:
    if not isinstance(dim, int) or _neg(f, dim, where) == f.head_axis:
        raise InputError(f"operation {where}: softmax across {f.site}'s heads (dim={dim}); align permutes heads only when each head is normalised alone")
    return f


def _neg(f: _Flow, d: Any, where: str) -> int:
    """Axis ``d`` counted from the end, so layouts compare whatever the leading dimensions."""
    if not isinstance(d, int):
        raise InputError(f"operation {where}: an axis computed in forward; align needs literal axes")
    if d < 0:
        return d
    if f.ndim is None:
        raise InputError(f"operation {where}: axis {d} of a tensor of unknown rank; use negative axes (e.g. transpose(-3, -2))")
    return d - f.ndim


def _reshape(t: _Tracer, f: _Flow, shape: Any, where: str) -> _Flow:
    """Split a Linear's features into (heads, head dims), or merge them back; other reshapes of permuted units are refused."""
    shape = list(shape)
    sizes = [s for s in shape[-2:] if isinstance(s, int)]
    if f.kind == "features" and len(shape) >= 2 and len(sizes) == 2 and (sizes[0] * sizes[1] == f.channels or (-1 in sizes and f.channels % abs(sizes[0] * sizes[1]) == 0)):
        heads, dims = (f.channels // -(sizes[0] * sizes[1]) if s == -1 else s for s in sizes)
        site = t.find(f.site)  # type: ignore[arg-type]
        if t.heads.setdefault(site, (heads, dims)) != (heads, dims):
            raise InputError(f"operation {where}: splits {f.site} into {(heads, dims)} heads, elsewhere {t.heads[site]}; align needs one head layout per layer")
        return _Flow(f.site, "heads", f.channels, head_axis=-2, dim_axis=-1, ndim=None if "*" in shape else len(shape))
    if f.kind == "heads" and f.head_axis == -2 and f.dim_axis == -1 and shape and (f.ndim is None or len(shape) == f.ndim - 1):
        heads, dims = t.heads[t.find(f.site)]  # type: ignore[arg-type]
        if not isinstance(shape[-1], int) or shape[-1] in (heads * dims, -1):  # a size read from a shape is checked when outputs are compared
            return _Flow(f.site, "features", heads * dims, ndim=len(shape))
    raise InputError(f"operation {where}: reshapes {f.site}'s output other than splitting its last dimension into heads or merging (heads, head dims) back; align cannot follow its units")


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


def _flatten(f: _Flow, start_dim: Any, end_dim: Any, where: str) -> _Flow:
    if f.site is None:
        return f
    if f.kind == "heads" and f.head_axis == -2 and f.dim_axis == -1 and end_dim == -1 and isinstance(start_dim, int) and _neg(f, start_dim, where) == -2:
        return _Flow(f.site, "features", f.channels, ndim=None if f.ndim is None else f.ndim - 1)
    if start_dim != 1 or f.kind != "channels":
        raise InputError(f"{where}: flattens {f.site}'s output other than from dimension 1 of a conv output or (heads, head dims) together; align cannot follow its units")
    return _Flow(f.site, "flat", f.channels)


def _consume(t: _Tracer, name: str, mod: Any, f: _Flow) -> None:
    from torch import nn

    if f.site is None:
        return
    width = mod.in_features if isinstance(mod, nn.Linear) else mod.in_channels
    if isinstance(mod, nn.Linear) and f.kind == "features" and width == f.channels:
        t.consumers[f.site].append(Consumer(name))
    elif isinstance(mod, nn.Linear) and f.kind == "flat" and width % f.channels == 0:
        t.consumers[f.site].append(Consumer(name, width // f.channels))
    elif isinstance(mod, nn.Conv2d) and f.kind == "channels" and width == f.channels:
        t.consumers[f.site].append(Consumer(name))
    else:
        raise InputError(f"layer {name}: reads {f.site}'s output in a layout align does not follow ({type(mod).__name__} after {f.kind}); align handles Linear/Conv2d chains")
