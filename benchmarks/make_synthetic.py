"""Write a synthetic safetensors model with planted relations, and its truth.

    python benchmarks/make_synthetic.py --size 2GB --out benchmarks/data/synthetic

writes ``synthetic.safetensors`` (float32) and ``synthetic.truth.json``. Most
tensors are unrelated random matrices; planted among them are identical,
transposed, negated, scaled and near-equal copies (relative noise 1e-5 to
1e-3, within the default tolerance 2e-3), and an embedding with 256
identical (all-zero) rows and some near-equal rows. Tensors are streamed to
disk one by one, so writing needs little memory.
"""

from __future__ import annotations

import argparse
import json
import struct
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from sharescan.units import parse_threshold  # noqa: F401  (used by bench_analyze too)

ROW = 2048  # row length of every matrix: rows of all tensors form one family
NEAR_LEVELS = (1e-5, 1e-4, 5e-4, 1e-3)
SCALES = (0.5, -3.0, 1.7)


def noisy(rng: np.random.Generator, w: np.ndarray, rel: float) -> np.ndarray:
    noise = rng.standard_normal(w.shape, dtype=np.float32)
    return (w + np.float32(rel * np.linalg.norm(w) / np.linalg.norm(noise)) * noise).astype(np.float32)


def planted(rng: np.random.Generator, rows: int, embedding_rows: int) -> Iterator[tuple[str, np.ndarray, dict | None]]:
    """(name, tensor, truth entry or None) for every planted tensor."""
    def base() -> np.ndarray:
        return rng.standard_normal((rows, ROW), dtype=np.float32)

    for k in range(2):
        w = base()
        yield f"identical.{k}.a", w, None
        yield f"identical.{k}.b", w.copy(), {"relation": "identical", "members": [f"identical.{k}.a", f"identical.{k}.b"]}
    for k in range(2):
        w = base()
        yield f"transposed.{k}.a", w, None
        yield f"transposed.{k}.b", np.ascontiguousarray(w.T), {"relation": "transposed", "members": [f"transposed.{k}.a", f"transposed.{k}.b"]}
    for k in range(2):
        w = base()
        yield f"negated.{k}.a", w, None
        yield f"negated.{k}.b", -w, {"relation": "negated", "members": [f"negated.{k}.a", f"negated.{k}.b"]}
    for k, c in enumerate(SCALES):
        w = base()
        yield f"scaled.{k}.a", w, None
        yield f"scaled.{k}.b", (w * np.float32(c)).astype(np.float32), {"relation": "scaled", "members": [f"scaled.{k}.a", f"scaled.{k}.b"], "scale": c}
    for k, rel in enumerate(NEAR_LEVELS):
        w = base()
        yield f"near.{k}.a", w, None
        yield f"near.{k}.b", noisy(rng, w, rel), {"relation": "near", "members": [f"near.{k}.a", f"near.{k}.b"], "noise": rel}
    w = base()
    yield "near_t.a", w, None
    yield "near_t.b", noisy(rng, np.ascontiguousarray(w.T), 3e-4), {"relation": "near", "members": ["near_t.a", "near_t.b"], "noise": 3e-4}
    emb = rng.standard_normal((embedding_rows, ROW), dtype=np.float32)
    emb[-256:] = 0.0  # 256 reserved, untrained tokens
    near_rows = 16
    for k in range(near_rows):
        emb[2 * k + 1] = noisy(rng, emb[2 * k], NEAR_LEVELS[k % len(NEAR_LEVELS)])
    distinct = embedding_rows - 255 - near_rows
    yield "embedding.weight", emb, {"relation": "rows", "members": ["embedding.weight"], "distinct_rows": distinct}


def write(path: Path, size: int, rows: int, seed: int = 0) -> dict:
    rng = np.random.default_rng(seed)
    embedding_rows = max(1024, rows * 4)
    tensors: list[tuple[str, np.ndarray | None, tuple[int, ...]]] = []
    truth = []
    planted_bytes = 0
    for name, t, entry in planted(rng, rows, embedding_rows):
        tensors.append((name, t, t.shape))
        planted_bytes += t.nbytes
        if entry:
            truth.append(entry)
    unrelated = max(0, (size - planted_bytes) // (rows * ROW * 4))
    names = [f"layers.{k}.weight" for k in range(unrelated)]
    order = [(n, None, (rows, ROW)) for n in names] + tensors
    header: dict[str, dict] = {}
    offset = 0
    for name, _, shape in order:
        n = int(np.prod(shape)) * 4
        header[name] = {"dtype": "F32", "shape": list(shape), "data_offsets": [offset, offset + n]}
        offset += n
    raw = json.dumps(header, separators=(",", ":")).encode()
    raw += b" " * (-len(raw) % 8)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    with tmp.open("wb") as f:
        f.write(struct.pack("<Q", len(raw)))
        f.write(raw)
        for _name, t, shape in order:
            f.write((t if t is not None else rng.standard_normal(shape, dtype=np.float32)).tobytes())
    tmp.replace(path)
    info = {"file": path.name, "bytes": path.stat().st_size, "tensors": len(order), "unrelated": unrelated, "truth": truth}
    path.with_suffix(".truth.json").write_text(json.dumps(info, indent=1))
    return info


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", default="2GB", help="total size, e.g. 2GB (10^9 bytes), 512MiB")
    parser.add_argument("--rows", type=int, default=256, help=f"rows of each {ROW}-wide matrix")
    parser.add_argument("--out", default="benchmarks/data/synthetic", help="path without suffix")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    try:
        size = int(parse_threshold(args.size).value)
    except ValueError:
        parser.error(f"--size {args.size!r}: expected bytes like 2GB or 512MiB")
    if size <= 0 or args.rows <= 0:
        parser.error("--size and --rows must be positive")
    info = write(Path(args.out).with_suffix(".safetensors"), size, args.rows, args.seed)
    print(f"wrote {info['file']}: {info['bytes']:,} bytes, {info['tensors']} tensors, {len(info['truth'])} planted relations")


if __name__ == "__main__":
    main()
