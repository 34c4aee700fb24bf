"""Planted permuted copies among distractors: recall, precision and time of the permuted relation.

    python benchmarks/bench_permuted.py [--copies 30] [--distractors 150]

Writes reports/permuted.md. The model is one safetensors file of float32
tensors: N planted copies (a third rows permuted, a third columns, a third
both) of N originals, and distractors of the same shapes: independent random
tensors; "shuffled" ones holding an original's values in another order (same
norm and value multiset, no row/column permutation); near-permuted ones (a
permuted copy plus 1e-6 relative noise, which an exact relation must not
report); and tensors of equal rows with a permuted twin (left to rows).
Times are medians of 5 interleaved runs, page-cached, with and without the relation in
``detect.RELATIONS``; the gap is what the relation costs.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import sharescan  # noqa: E402
from sharescan import detect  # noqa: E402
from tests.helpers import save_safetensors  # noqa: E402

SHAPES = [(1024, 256), (512, 512), (256, 1024)]
RUNS = 5


def planted(n_copies: int, n_distractors: int, seed: int = 0) -> tuple[dict[str, np.ndarray], dict[str, tuple[str, np.ndarray | None, np.ndarray | None]]]:
    """The tensors, and for each planted copy: (original, row order, col order) with copy = original[rows][:, cols]."""
    rng = np.random.default_rng(seed)
    tensors: dict[str, np.ndarray] = {}
    truth: dict[str, tuple[str, np.ndarray | None, np.ndarray | None]] = {}
    for k in range(n_copies):
        shape = SHAPES[k % len(SHAPES)]
        base = rng.standard_normal(shape).astype(np.float32)
        rows = rng.permutation(shape[0]) if k % 3 != 1 else None
        cols = rng.permutation(shape[1]) if k % 3 != 0 else None
        copy = base[rows] if rows is not None else base
        copy = copy[:, cols] if cols is not None else copy
        tensors[f"orig.{k}"], tensors[f"copy.{k}"] = base, np.ascontiguousarray(copy)
        truth[f"copy.{k}"] = (f"orig.{k}", rows, cols)
    for k in range(n_distractors):
        shape = SHAPES[k % len(SHAPES)]
        kind = k % 4
        if kind == 0:
            tensors[f"random.{k}"] = rng.standard_normal(shape).astype(np.float32)
        elif kind == 1:  # an original's values in another order: same norm, not a row/column permutation
            source = tensors[f"orig.{k % n_copies}"]
            tensors[f"shuffled.{k}"] = rng.permutation(source.reshape(-1)).reshape(source.shape)
        elif kind == 2:
            base = rng.standard_normal(shape).astype(np.float32)
            noisy = base[rng.permutation(shape[0])] * (1 + 1e-6 * rng.standard_normal(shape)).astype(np.float32)
            tensors[f"near.{k}.a"], tensors[f"near.{k}.b"] = base, noisy.astype(np.float32)
        else:
            row = rng.standard_normal(shape[1]).astype(np.float32)
            flat = np.tile(row, (shape[0], 1))
            tensors[f"flat.{k}.a"], tensors[f"flat.{k}.b"] = flat, np.ascontiguousarray(flat[:, rng.permutation(shape[1])])
    return tensors, truth


def score(result, tensors: dict[str, np.ndarray], truth: dict) -> dict:
    found = {}
    for g in result.groups:
        if g.relation != "permuted":
            continue
        kept = g.members[0].name
        for m in g.members[1:]:
            rebuilt = tensors[kept]
            for axis, index in m.permutation:
                rebuilt = np.take(rebuilt, np.asarray(index), axis=axis)
            found[m.name] = (kept, bool(np.array_equal(rebuilt, tensors[m.name])))
    # Either tensor of a planted pair may be the kept one (the first in file order).
    pairs = {frozenset((copy, orig)) for copy, (orig, _, _) in truth.items()}
    right = sum(1 for name, (kept, exact) in found.items() if frozenset((name, kept)) in pairs and exact)
    return {"planted": len(truth), "reported": len(found), "right": right, "recall": right / len(truth), "precision": right / len(found) if found else 1.0}


def timed(path: Path) -> tuple[float, float]:
    """Median seconds of analyze with and without the relation, runs interleaved (the machine's load hits both alike)."""
    saved = detect.RELATIONS
    without = tuple(r for r in saved if r.name != "permuted")
    times: dict[bool, list[float]] = {True: [], False: []}
    try:
        for _ in range(RUNS):
            for with_relation in (True, False):
                detect.RELATIONS = saved if with_relation else without
                start = time.perf_counter()
                sharescan.analyze(str(path))
                times[with_relation].append(time.perf_counter() - start)
    finally:
        detect.RELATIONS = saved
    return statistics.median(times[True]), statistics.median(times[False])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--copies", type=int, default=30)
    parser.add_argument("--distractors", type=int, default=150)
    parser.add_argument("--out", type=Path, default=ROOT / "reports" / "permuted.md")
    args = parser.parse_args()
    tensors, truth = planted(args.copies, args.distractors)
    with tempfile.TemporaryDirectory() as tmp:
        path = save_safetensors(Path(tmp) / "planted.safetensors", tensors)
        size = path.stat().st_size
        path.read_bytes()  # page-cache it
        result = sharescan.analyze(str(path))
        figures = score(result, tensors, truth)
        reclaimed = dict(result.totals.by_relation)["permuted"]
        with_relation, without = timed(path)
    lines = [
        "# Permuted copies: planted recall, precision and time",
        "",
        f"Generated by `python benchmarks/bench_permuted.py --copies {args.copies} --distractors {args.distractors}`.",
        "",
        f"- model: {len(tensors)} float32 tensors, {size / 2**20:.1f} MiB (safetensors), shapes {', '.join('x'.join(map(str, s)) for s in SHAPES)}",
        f"- planted: {args.copies} permuted copies (rows, columns, both in turn) among {args.distractors} distractor cases "
        "(random; shuffled values with the same norm; near-permuted within 1e-6; equal-row tensors with a column-permuted twin)",
        f"- found right (copy = kept[perm], bit for bit): {figures['right']} of {figures['planted']}; reported: {figures['reported']}",
        f"- recall {figures['recall']:.3f}, precision {figures['precision']:.3f}",
        f"- reclaimable by `permuted`: {reclaimed:,} B (copies' bytes minus their int32 indices)",
        f"- analyze, median of {RUNS} interleaved runs, page-cached, 2 shared CPU cores: {with_relation:.3f} s with the relation, {without:.3f} s without "
        f"(the relation costs {with_relation - without:+.3f} s, {(with_relation - without) / max(without, 1e-9) * 100:+.0f}%)",
        "",
    ]
    args.out.write_text("\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
