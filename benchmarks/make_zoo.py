"""A zoo of fine-tune-like variants of one small trained model, with what was planted written down.

    python benchmarks/make_zoo.py --n 1000 --out ~/.cache/sharescan-corpus/zoo/n1000 [--seed 0]

The base is an MLP 64-256-256-10 (fc1, fc2, head; 85,002 float32 parameters,
332 KiB) trained on scikit-learn's 8x8 digits, cached under
``~/.cache/sharescan-corpus/zoo-base`` (``--cache``). Model hubs hold
thousands of checkpoints that descend from a few bases like this: re-uploads,
linear probes, fine-tunes with some layers frozen, exports. Each of the N
variants is one of these kinds (shares of N; every kind at least once):

- ``copy`` (3%): the base re-saved, perhaps in another format.
- ``head_only`` (20%): fc1, fc2 frozen (bytes identical to the base), the
  head fine-tuned a few SGD steps on a subset of shifted digits: near-equal.
- ``top_tuned`` (20%): fc1 frozen, fc2 and head fine-tuned slightly.
- ``full_slight`` (20%): every layer fine-tuned slightly.
- ``full_tuned`` (12%): every layer fine-tuned longer (Adam): related, but
  beyond the default near tolerance (candidates for tying, not merges).
- ``head_retrained`` (15%): fc1, fc2 frozen, a new head trained from a fresh
  initialisation: the head is unrelated to the base's.
- ``scratch`` (10%): trained from scratch with its own seed: unrelated.

Each fine-tune task is the digits shifted by (dx, dy) in {-1, 0, 1}^2, with
the variant's own random subset of the training split. Formats: safetensors,
a ``.pt`` state dict, and ONNX written the way the TorchScript exporter
writes a Linear applied to a batch of sequences: ``MatMul(x, W^T)`` with the
transposed weight stored as an ``onnx::MatMul_N`` initializer, so an ONNX
variant's frozen layers are exact transposed copies of the base's tensors.
A few more files are unreadable (truncated copies) to exercise skipping.

All variants of one kind train together as one batched model (``bmm`` over a
leading model axis; per-model data, learning rates, step counts and frozen
layers), so 1,000 variants take well under a minute on 2 cores; writing the
files takes the rest.

Writes ``OUT/models/m0000.safetensors`` (the base) ... ``mNNNN.<ext>``,
``OUT/manifest.txt`` (one path per line, relative to OUT) and
``OUT/truth.json``: per model its kind, format, task, accuracy on its task
and, per stored tensor, the base parameter it stands for, whether it is
stored transposed, its relation to the base (``identical``, ``near`` within
``--tol``, ``tuned`` beyond it, ``unrelated``) and its exact relative L2
distance to the base's tensor; the unreadable files with the reason.
"""

from __future__ import annotations

import argparse
import functools
import hashlib
import json
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

__all__ = [
    "ARCH",
    "KINDS",
    "PARAMS",
    "Kind",
    "accuracy",
    "digits_task",
    "load_params",
    "make_zoo",
    "read_tensor",
]

ARCH = (64, 256, 256, 10)  # input, two hidden widths, classes (--hidden changes the widths)
PARAMS = ("fc1.weight", "fc1.bias", "fc2.weight", "fc2.bias", "head.weight", "head.bias")
LAYERS = ("fc1", "fc2", "head")
TOL = 2e-3  # sharescan's default --tol: a near variant is planted within it
N_TRAIN = 1437  # the digits split the fixtures use: 1,437 train, 360 test
DEFAULT_CACHE = Path.home() / ".cache" / "sharescan-corpus" / "zoo-base"
BASE_VERSION = 1  # bump when the base's training changes, so the cache is not reused
ONNX_OPSET = 17
SHIFTS = tuple((dx, dy) for dy in (-1, 0, 1) for dx in (-1, 0, 1))  # the tasks: digits moved by one pixel or not
BASE_STEPS = 3000  # Adam steps of 64 images for the base (134 epochs of the training split, spread over the shifts)
# The i-th variant of the k-th kind is written as FORMATS[(i + k + 8) % 10]: 4 safetensors,
# 4 .pt, 2 ONNX in 10; a small zoo (one or two of each kind) still has all three, and
# its first full_slight variant is ONNX (near-equal transposed copies of every weight).
FORMATS = ("safetensors", "onnx", "pytorch", "safetensors", "pytorch", "safetensors", "pytorch", "onnx", "pytorch", "safetensors")
SUFFIX = {"safetensors": ".safetensors", "pytorch": ".pt", "onnx": ".onnx"}


@dataclass(frozen=True)
class Kind:
    """One way a published checkpoint descends from the base."""

    name: str
    share: float  # fraction of the N variants
    frozen: tuple[str, ...]  # layers left bit-identical to the base's
    training: str  # none | slight (a few SGD steps) | tuned (Adam, longer) | head (fresh head) | scratch


KINDS = (
    Kind("copy", 0.03, LAYERS, "none"),
    Kind("head_only", 0.20, ("fc1", "fc2"), "slight"),
    Kind("top_tuned", 0.20, ("fc1",), "slight"),
    Kind("full_slight", 0.20, (), "slight"),
    Kind("full_tuned", 0.12, (), "tuned"),
    Kind("head_retrained", 0.15, ("fc1", "fc2"), "head"),
    Kind("scratch", 0.10, (), "scratch"),
)


# --- data -------------------------------------------------------------------


@functools.lru_cache(maxsize=1)
def digits_split() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(x_train, y_train, x_test, y_test): digits scaled to [0, 1], a fixed permutation split 1,437 / 360."""
    from sklearn.datasets import load_digits

    data = load_digits()
    x = (data.data / 16.0).astype(np.float32)
    y = data.target.astype(np.int64)
    order = np.random.default_rng(0).permutation(len(x))
    train, test = order[:N_TRAIN], order[N_TRAIN:]
    return x[train], y[train], x[test], y[test]


def shifted(x: np.ndarray, dx: int, dy: int) -> np.ndarray:
    """Images moved dx columns right and dy rows down, the border filled with zeros."""
    img = x.reshape(-1, 8, 8)
    out = np.zeros_like(img)
    src_r = slice(max(0, -dy), 8 - max(0, dy))
    dst_r = slice(max(0, dy), 8 - max(0, -dy))
    src_c = slice(max(0, -dx), 8 - max(0, dx))
    dst_c = slice(max(0, dx), 8 - max(0, -dx))
    out[:, dst_r, dst_c] = img[:, src_r, src_c]
    return out.reshape(len(x), 64)


def digits_task(shift: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """The test images and labels of a variant's task (digits shifted by ``shift``)."""
    _, _, x_test, y_test = digits_split()
    return shifted(x_test, *shift), y_test


def accuracy(params: dict[str, np.ndarray], x: np.ndarray, y: np.ndarray) -> float:
    """Test accuracy (%) of the MLP with these canonical parameters (weights [out, in])."""
    h = np.maximum(x @ params["fc1.weight"].T + params["fc1.bias"], 0)
    h = np.maximum(h @ params["fc2.weight"].T + params["fc2.bias"], 0)
    logits = h @ params["head.weight"].T + params["head.bias"]
    return float((logits.argmax(1) == y).mean() * 100)


# --- batched training -------------------------------------------------------


def arch_of(hidden: int) -> tuple[int, int, int, int]:
    """The MLP's layer widths with both hidden layers this wide."""
    return (ARCH[0], hidden, hidden, ARCH[-1])


def _arch_of_params(params: dict[str, np.ndarray]) -> tuple[int, int, int, int]:
    fc1, fc2, head = (params[f"{layer}.weight"].shape for layer in LAYERS)
    return (fc1[1], fc1[0], fc2[0], head[0])


def _init(k: int, gen: object, arch: tuple[int, ...] = ARCH) -> dict[str, object]:
    """k fresh parameter sets, initialised as torch.nn.Linear does (uniform +-1/sqrt(fan_in))."""
    import torch

    params: dict[str, object] = {}
    for layer, (fan_in, fan_out) in zip(LAYERS, zip(arch[:-1], arch[1:])):
        bound = 1.0 / fan_in**0.5
        params[f"{layer}.weight"] = (torch.rand(k, fan_out, fan_in, generator=gen) * 2 - 1) * bound
        params[f"{layer}.bias"] = (torch.rand(k, fan_out, generator=gen) * 2 - 1) * bound
    return params


def _forward(p: dict, x: object) -> object:
    """Logits [K, B, 10] of K models on their own batches x [K, B, 64]."""
    import torch

    h = torch.relu(torch.baddbmm(p["fc1.bias"].unsqueeze(1), x, p["fc1.weight"].transpose(1, 2)))
    h = torch.relu(torch.baddbmm(p["fc2.bias"].unsqueeze(1), h, p["fc2.weight"].transpose(1, 2)))
    return torch.baddbmm(p["head.bias"].unsqueeze(1), h, p["head.weight"].transpose(1, 2))


def _batches(xs: object, ys: object, shift_ids: object, orders: object, sizes: object, batch: int, steps: int, gen: object) -> Iterator[tuple[object, object]]:
    """Per step, each model's own batch drawn from its own subset (the first ``sizes[i]`` of ``orders[i]``) of its own shifted task."""
    import torch

    k = orders.shape[0]
    for _ in range(steps):
        pick = (torch.rand(k, batch, generator=gen) * sizes.unsqueeze(1)).long()
        rows = torch.gather(orders, 1, pick)
        yield xs[shift_ids.unsqueeze(1), rows], ys[rows]


def _loss(p: dict, x: object, y: object) -> object:
    import torch.nn.functional as F

    logits = _forward(p, x)
    k, b, c = logits.shape
    # Summed over models, mean over each model's batch: model i's gradient is its own loss's.
    return F.cross_entropy(logits.reshape(k * b, c), y.reshape(k * b), reduction="sum") / b


def train_base(seed: int, cache: Path, arch: tuple[int, ...] = ARCH) -> dict[str, np.ndarray]:
    """The base MLP trained on the digits under all nine one-pixel shifts (Adam), read from the cache when there."""
    import torch
    from safetensors.numpy import load_file, save_file

    path = cache / f"base-v{BASE_VERSION}-{'x'.join(map(str, arch))}-seed{seed}.safetensors"
    if path.exists():
        return load_file(str(path))
    x_train, y_train, _, _ = digits_split()
    gen = torch.Generator().manual_seed(seed)
    p = {name: t.requires_grad_() for name, t in _init(1, gen, arch).items()}
    opt = torch.optim.Adam(p.values(), lr=1e-3)
    # Pre-trained on every shift, so that a variant tuned to one shift starts from a model that already reads it.
    xs = torch.as_tensor(np.stack([shifted(x_train, dx, dy) for dx, dy in SHIFTS]))
    yt = torch.as_tensor(y_train)
    for _ in range(BASE_STEPS):
        idx = torch.randint(0, N_TRAIN, (1, 64), generator=gen)
        which = torch.randint(0, len(SHIFTS), (1, 64), generator=gen)
        opt.zero_grad()
        _loss(p, xs[which, idx], yt[idx]).backward()
        opt.step()
    base = {name: t.detach()[0].numpy().copy() for name, t in p.items()}
    cache.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    save_file(base, str(tmp))
    tmp.replace(path)
    return base


@dataclass(frozen=True)
class Plan:
    """One variant before training: what it is and the task it is tuned on."""

    index: int  # file number (0 is the base)
    kind: Kind
    fmt: str
    shift: tuple[int, int]
    subset: int  # training images it sees
    steps: int
    lr: float
    seed: int


def _plans(n: int, rng: np.random.Generator) -> list[Plan]:
    """N variants split over KINDS by share (largest remainder, each kind at least once when N allows)."""
    counts = [1 if n >= len(KINDS) else 0 for _ in KINDS]
    left = n - sum(counts)
    raw = [k.share * left for k in KINDS]
    counts = [c + int(r) for c, r in zip(counts, raw)]
    for i in sorted(range(len(KINDS)), key=lambda i: int(raw[i]) - raw[i])[: n - sum(counts)]:
        counts[i] += 1
    plans = []
    index = 1
    for kind, count in zip(KINDS, counts):
        for i in range(count):
            shift = (int(rng.integers(-1, 2)), int(rng.integers(-1, 2)))
            if kind.training == "slight":
                # A few small SGD steps; the rate is drawn so that most tensors land within TOL.
                steps, lr = int(rng.integers(2, 7)), float(10 ** rng.uniform(-2.7, -1.7))
            elif kind.training == "tuned":
                steps, lr = int(rng.integers(20, 60)), float(10 ** rng.uniform(-4.3, -3.7))
            elif kind.training == "head":
                steps, lr = 150, 3e-3
            elif kind.training == "scratch":
                steps, lr = 300, 2e-3
            else:
                steps, lr = 0, 0.0
            fmt = FORMATS[(i + KINDS.index(kind) + 8) % len(FORMATS)]
            plans.append(Plan(index, kind, fmt, shift, int(rng.integers(128, 513)), steps, lr, int(rng.integers(2**31))))
            index += 1
    return plans


def _train_kind(plans: list[Plan], base: dict[str, np.ndarray], seed: int) -> list[dict[str, np.ndarray]]:
    """Train every variant of one kind together; the trained parameters, one dict per plan."""
    import torch

    kind = plans[0].kind
    k = len(plans)
    if kind.training == "none":
        return [dict(base) for _ in plans]
    gen = torch.Generator().manual_seed(seed)
    x_train, y_train, _, _ = digits_split()
    xs = torch.as_tensor(np.stack([shifted(x_train, dx, dy) for dx, dy in SHIFTS]))
    ys = torch.as_tensor(y_train)
    shift_ids = torch.as_tensor([SHIFTS.index(pl.shift) for pl in plans])
    orders = torch.stack([torch.as_tensor(np.random.default_rng(pl.seed).permutation(N_TRAIN)) for pl in plans])
    sizes = torch.as_tensor([pl.subset for pl in plans], dtype=torch.float32)
    start = {name: torch.as_tensor(base[name]).expand(k, *base[name].shape).clone() for name in PARAMS}
    if kind.training in ("head", "scratch"):
        fresh = _init(k, gen, _arch_of_params(base))
        for name in PARAMS:
            if name.split(".")[0] not in kind.frozen:
                start[name] = fresh[name]
    trainable = [name for name in PARAMS if name.split(".")[0] not in kind.frozen]
    p = {name: t.requires_grad_(name in trainable) for name, t in start.items()}
    steps = max(pl.steps for pl in plans)
    if kind.training == "slight":
        # Plain SGD, each model with its own rate and its own number of steps.
        lr = torch.as_tensor([pl.lr for pl in plans], dtype=torch.float32)
        last = torch.as_tensor([pl.steps for pl in plans])
        for step, (x, y) in enumerate(_batches(xs, ys, shift_ids, orders, sizes, 32, steps, gen)):
            grads = torch.autograd.grad(_loss(p, x, y), [p[n] for n in trainable])
            rate = lr * (step < last)
            with torch.no_grad():
                for name, g in zip(trainable, grads):
                    p[name] -= rate.view(-1, *[1] * (g.dim() - 1)) * g
    else:
        # Adam is element-wise, so one optimiser over the stacked models trains each on its own.
        opt = torch.optim.Adam([p[n] for n in trainable], lr=plans[0].lr if kind.training != "tuned" else 1.0)
        if kind.training == "tuned":
            lr = torch.as_tensor([pl.lr for pl in plans], dtype=torch.float32)
            last = torch.as_tensor([pl.steps for pl in plans])
        for step, (x, y) in enumerate(_batches(xs, ys, shift_ids, orders, sizes, 64, steps, gen)):
            opt.zero_grad()
            _loss(p, x, y).backward()
            if kind.training == "tuned":
                # Per-model rates and step counts: scale each model's Adam step (the update is lr * m/sqrt(v)).
                before = {n: p[n].detach().clone() for n in trainable}
                opt.step()
                rate = lr * (step < last)
                with torch.no_grad():
                    for n in trainable:
                        p[n].copy_(before[n] + (p[n] - before[n]) * rate.view(-1, *[1] * (p[n].dim() - 1)))
            else:
                opt.step()
    return [{name: p[name].detach()[i].numpy().copy() for name in PARAMS} for i in range(k)]


# --- writing ----------------------------------------------------------------


def _onnx_names(index: int) -> dict[str, str]:
    """Initializer names as the TorchScript exporter writes them: transposed weights as onnx::MatMul_N."""
    return {"fc1.weight": f"onnx::MatMul_{index * 10 + 13}", "fc2.weight": f"onnx::MatMul_{index * 10 + 14}", "head.weight": f"onnx::MatMul_{index * 10 + 15}"}


def write_onnx(path: Path, params: dict[str, np.ndarray], index: int) -> dict[str, str]:
    """The MLP as ONNX: MatMul(x, W^T) + bias per layer; returns parameter -> initializer name."""
    from onnx import TensorProto, helper, numpy_helper

    names = {name: _onnx_names(index).get(name, name) for name in PARAMS}
    arch = _arch_of_params(params)
    inits = []
    for name in PARAMS:
        value = params[name].T if name.endswith("weight") else params[name]
        inits.append(numpy_helper.from_array(np.ascontiguousarray(value), names[name]))
    nodes = []
    prev = "input"
    for i, layer in enumerate(LAYERS):
        nodes.append(helper.make_node("MatMul", [prev, names[f"{layer}.weight"]], [f"/{layer}/MatMul_output_0"], name=f"/{layer}/MatMul"))
        out = f"/{layer}/Add_output_0" if layer != "head" else "logits"
        nodes.append(helper.make_node("Add", [f"/{layer}/MatMul_output_0", names[f"{layer}.bias"]], [out], name=f"/{layer}/Add"))
        if i < len(LAYERS) - 1:
            nodes.append(helper.make_node("Relu", [out], [f"/{layer}/Relu_output_0"], name=f"/{layer}/Relu"))
            prev = f"/{layer}/Relu_output_0"
    graph = helper.make_graph(
        nodes,
        "main_graph",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["batch", arch[0]])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", arch[-1]])],
        initializer=inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", ONNX_OPSET)], producer_name="pytorch", producer_version="2.13.0")
    model.ir_version = 8
    path.write_bytes(model.SerializeToString())
    return names


def write_model(path: Path, fmt: str, params: dict[str, np.ndarray], index: int) -> dict[str, str]:
    """Write one variant; returns parameter -> the name it is stored under."""
    if fmt == "safetensors":
        from safetensors.numpy import save_file

        save_file({n: np.ascontiguousarray(params[n]) for n in PARAMS}, str(path))
        return {n: n for n in PARAMS}
    if fmt == "pytorch":
        import torch

        torch.save({n: torch.from_numpy(np.ascontiguousarray(params[n])) for n in PARAMS}, path)
        return {n: n for n in PARAMS}
    return write_onnx(path, params, index)


def read_tensor(path: Path, name: str) -> np.ndarray:
    """One stored tensor of a zoo file, as stored (an ONNX weight comes back transposed)."""
    if path.suffix == ".safetensors":
        from safetensors import safe_open

        with safe_open(str(path), "np") as f:
            return f.get_tensor(name)
    if path.suffix == ".pt":
        import torch

        return torch.load(path, map_location="cpu", weights_only=True)[name].numpy()
    import onnx
    from onnx import numpy_helper

    for init in onnx.load(str(path)).graph.initializer:
        if init.name == name:
            return numpy_helper.to_array(init)
    raise KeyError(f"{path}: no tensor {name}")


def load_params(path: Path, stored: dict[str, dict]) -> dict[str, np.ndarray]:
    """Canonical parameters ([out, in] weights) of a zoo model, from its truth entry's ``tensors``."""
    out = {}
    for name, t in stored.items():
        value = read_tensor(path, name)
        out[t["param"]] = value.T if t["transposed"] else value
    return out


def _relation(value: np.ndarray, base: np.ndarray, frozen: bool, training: str, tol: float) -> tuple[str, float]:
    dist = float(np.linalg.norm((value - base).ravel()) / np.linalg.norm(base.ravel()))
    if np.array_equal(value, base):
        return "identical", 0.0
    if frozen:
        raise AssertionError("a frozen layer changed")
    if training in ("head", "scratch"):
        return "unrelated", dist
    return ("near" if dist <= tol else "tuned"), dist


def _broken(path: Path, source: Path, which: int) -> str:
    """A truncated copy of a written file; the reason it cannot be read."""
    raw = source.read_bytes()
    if which % 3 == 0:
        path.write_bytes(raw[: len(raw) // 2])
        return f"truncated to {len(raw) // 2} of {len(raw)} bytes"
    if which % 3 == 1:
        path.write_bytes(raw[:7])
        return f"truncated to 7 of {len(raw)} bytes"
    path.write_bytes(raw[: len(raw) - 1000])
    return f"last 1000 of {len(raw)} bytes cut"


def make_zoo(n: int, out: Path, seed: int = 0, cache: Path = DEFAULT_CACHE, tol: float = TOL, hidden: int = ARCH[1]) -> dict:
    """Generate the zoo under ``out``; returns the truth dict (also written to ``out/truth.json``)."""
    import torch

    # One thread: these models are small, and two threads contending for two shared cores ran 40x slower per step.
    torch.set_num_threads(1)
    started = time.perf_counter()
    arch = arch_of(hidden)
    base = train_base(0, cache, arch)
    trained_base = time.perf_counter()
    rng = np.random.default_rng(seed)
    plans = _plans(n, rng)
    models_dir = out / "models"
    models_dir.mkdir(parents=True, exist_ok=True)
    rows = []
    base_path = models_dir / "m0000.safetensors"
    write_model(base_path, "safetensors", base, 0)
    x_base, y_base = digits_task((0, 0))
    rows.append({
        "path": "models/m0000.safetensors", "format": "safetensors", "kind": "base", "task": {"shift": [0, 0]},
        "accuracy": accuracy(base, x_base, y_base),
        "tensors": {n_: {"param": n_, "transposed": False, "relation": "identical", "rel_distance": 0.0} for n_ in PARAMS},
    })
    train_seconds = 0.0
    for kind in KINDS:
        group = [pl for pl in plans if pl.kind == kind]
        if not group:
            continue
        t0 = time.perf_counter()
        trained = _train_kind(group, base, seed * 1000 + KINDS.index(kind))
        train_seconds += time.perf_counter() - t0
        for pl, params in zip(group, trained):
            rel = f"models/m{pl.index:04d}{SUFFIX[pl.fmt]}"
            names = write_model(out / rel, pl.fmt, params, pl.index)
            x, y = digits_task(pl.shift)
            tensors = {}
            for name in PARAMS:
                relation, dist = _relation(params[name], base[name], name.split(".")[0] in kind.frozen, kind.training, tol)
                tensors[names[name]] = {"param": name, "transposed": pl.fmt == "onnx" and name.endswith("weight"), "relation": relation, "rel_distance": dist}
            rows.append({
                "path": rel, "format": pl.fmt, "kind": kind.name,
                "task": {"shift": list(pl.shift), "subset": pl.subset, "steps": pl.steps, "lr": pl.lr},
                "accuracy": accuracy(params, x, y), "tensors": tensors,
            })
    unreadable = []
    for j in range(max(2, n // 200)):
        source = rows[1 + (j * 37) % (len(rows) - 1)] if len(rows) > 1 else rows[0]
        rel = f"models/m{len(plans) + 1 + j:04d}{SUFFIX[source['format']]}"
        reason = _broken(out / rel, out / source["path"], j)
        unreadable.append({"path": rel, "format": source["format"], "reason": reason})
    paths = [r["path"] for r in rows] + [u["path"] for u in unreadable]
    order = np.random.default_rng(seed + 1).permutation(len(paths))
    (out / "manifest.txt").write_text("".join(paths[i] + "\n" for i in order))
    counts: dict[str, int] = {}
    for r in rows:
        for t in r["tensors"].values():
            key = t["relation"] + (" (transposed)" if t["transposed"] else "")
            counts[key] = counts.get(key, 0) + 1
    truth = {
        "schema_version": 1,
        "n": n,
        "seed": seed,
        "arch": list(arch),
        "tol": tol,
        "base": "models/m0000.safetensors",
        "base_sha256": hashlib.sha256(base_path.read_bytes()).hexdigest(),
        "kinds": {k.name: sum(1 for pl in plans if pl.kind == k) for k in KINDS},
        "formats": {f: sum(1 for r in rows if r["format"] == f) for f in SUFFIX},
        "tensor_relations": counts,
        "file_bytes": sum((out / p).stat().st_size for p in paths),
        "seconds": {"base": round(trained_base - started, 2), "train": round(train_seconds, 2), "total": round(time.perf_counter() - started, 2)},
        "models": rows,
        "unreadable": unreadable,
    }
    (out / "truth.json").write_text(json.dumps(truth, indent=1) + "\n")
    return truth


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, required=True, help="variants to write (the base and the unreadable files come on top)")
    parser.add_argument("--out", type=Path, required=True, help="folder to write (models/, manifest.txt, truth.json)")
    parser.add_argument("--seed", type=int, default=0, help="seed for the variants (the base is always seed 0)")
    parser.add_argument("--cache", type=Path, default=DEFAULT_CACHE, help="where the trained base is kept")
    parser.add_argument("--tol", type=float, default=TOL, help="relative L2 distance below which a fine-tuned tensor counts as near")
    parser.add_argument("--hidden", type=int, default=ARCH[1], help="width of both hidden layers (256: 332 KiB a model; 1024: 4.3 MiB, 1,000 of them about 4.5 GB)")
    opts = parser.parse_args()
    if opts.n < 1 or opts.n > 100_000:
        parser.error("--n must be between 1 and 100,000")
    if not 1 <= opts.hidden <= 4096:
        parser.error("--hidden must be between 1 and 4,096")
    if (opts.out / "manifest.txt").exists():
        parser.error(f"{opts.out} already holds a zoo (manifest.txt); choose an empty folder")
    truth = make_zoo(opts.n, opts.out, opts.seed, opts.cache, opts.tol, opts.hidden)
    summary = {k: truth[k] for k in ("kinds", "formats", "tensor_relations", "file_bytes", "seconds")}
    summary["unreadable"] = len(truth["unreadable"])
    print(json.dumps(summary, indent=1))


if __name__ == "__main__":
    main()
