"""sharescan analyze on models with very many small tensors: time and peak memory.

    python benchmarks/bench_scale.py            # all cases, median of 3 where cheap
    python benchmarks/bench_scale.py --runs 1   # one run each

Generates, in a temporary folder,

- an ONNX model with 100,000 small initializers (a chain of Add nodes, each
  adding its own [8] float32 initializer; every tenth initializer repeats an
  earlier one, so identical groups are found),
- a safetensors file with 20,000 identical [64] float32 tensors (one group
  of 20,000 members: nothing may expand it into its pairs),
- a safetensors file with 1,000,000 tiny tensors ([4] float32, every tenth
  a repeat; run once, with ``--candidates 0``),

then runs ``sharescan analyze --json`` on each in a fresh process and
records the wall time and the peak RSS of that process (getrusage of the
child). Writes reports/scale.json and reports/scale.md, each case with the
floor it must stay under.
"""

from __future__ import annotations

import argparse
import json
import statistics
import struct
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
MiB = 1024 * 1024


def write_safetensors(path: Path, arrays: list[np.ndarray], names: list[str]) -> Path:
    """A safetensors file written directly (the library takes minutes for a million entries)."""
    header: dict[str, object] = {"__metadata__": {"format": "np"}}
    offset = 0
    for name, a in zip(names, arrays):
        header[name] = {"dtype": "F32", "shape": list(a.shape), "data_offsets": [offset, offset + a.nbytes]}
        offset += a.nbytes
    raw = json.dumps(header, separators=(",", ":")).encode()
    raw += b" " * (-len(raw) % 8)
    with path.open("wb") as f:
        f.write(struct.pack("<Q", len(raw)))
        f.write(raw)
        f.write(b"".join(a.tobytes() for a in arrays))
    return path


def tiny_safetensors(path: Path, n: int = 1_000_000, size: int = 4) -> Path:
    rng = np.random.default_rng(0)
    data = rng.standard_normal((n, size), dtype=np.float32)
    data[::10] = data[1::10][: len(data[::10])]  # every tenth repeats its neighbour
    return write_safetensors(path, list(data), [f"layer.{i}.weight" for i in range(n)])


def identical_safetensors(path: Path, n: int = 20_000, size: int = 64) -> Path:
    one = np.random.default_rng(0).standard_normal(size, dtype=np.float32)
    return write_safetensors(path, [one] * n, [f"block.{i}.scale" for i in range(n)])


def many_initializers_onnx(path: Path, n: int = 100_000, size: int = 8) -> Path:
    from onnx import TensorProto, helper

    rng = np.random.default_rng(0)
    data = rng.standard_normal((n, size), dtype=np.float32)
    data[::10] = data[1::10][: len(data[::10])]
    inits = []
    nodes = []
    prev = "X"
    for i in range(n):
        t = TensorProto(name=f"w{i}", data_type=TensorProto.FLOAT, dims=[size])
        t.raw_data = data[i].tobytes()
        inits.append(t)
        out = f"h{i}" if i < n - 1 else "Y"
        nodes.append(helper.make_node("Add", [prev, f"w{i}"], [out], name=f"add{i}"))
        prev = out
    graph = helper.make_graph(
        nodes,
        "chain",
        [helper.make_tensor_value_info("X", TensorProto.FLOAT, [size])],
        [helper.make_tensor_value_info("Y", TensorProto.FLOAT, [size])],
        initializer=inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    path.write_bytes(model.SerializeToString())
    return path


def near_safetensors(path: Path, n: int = 2_000, size: int = 64) -> Path:
    """n biases, each one base vector plus its own 1e-5 noise: one near cluster under the default --tol."""
    rng = np.random.default_rng(0)
    base = rng.standard_normal(size, dtype=np.float32)
    data = base + rng.standard_normal((n, size), dtype=np.float32) * np.float32(1e-5)
    return write_safetensors(path, list(data), [f"block.{i}.bias" for i in range(n)])


# (label, file name, generator, extra analyze flags, floor seconds, floor peak MiB, most runs)
CASES: list[tuple[str, str, Callable[[Path], Path], list[str], float, float | None, int]] = [
    ("ONNX, 100,000 small initializers", "many.onnx", many_initializers_onnx, [], 20.0, 1024.0, 3),
    ("safetensors, 20,000 identical [64] float32", "identical.safetensors", identical_safetensors, [], 5.0, 500.0, 3),
    # Default options: every detector and the tying-candidate search.
    ("safetensors, 1,000,000 tiny tensors", "tiny.safetensors", tiny_safetensors, [], 30.0, None, 3),
    # One cluster of mutually near tensors: no search may measure it pair by pair.
    ("safetensors, 2,000 near-equal [64] float32", "near.safetensors", near_safetensors, [], 5.0, 300.0, 3),
    ("safetensors, 20,000 near-equal [64] float32", "near20k.safetensors", lambda p: near_safetensors(p, 20_000), [], 20.0, 1024.0, 3),
]


NOTES = """Before this benchmark's fixes (same files, same command): the ONNX case took
about 36 s under cProfile, the 20,000 identical tensors 7.1 s (24 GB and 4 min
27 s before tying candidates stopped expanding each group into its pairs), the
million tiny tensors 320 s and 9.8 GiB (near, negated and scaled searches over
4-element samples: 270 s), and 2,000 near-equal biases 418 s and 2.3 GB (every
pair of the cluster measured). Now: digests in chunks and stacks, one mapping
per file, identical members dropped through a set, negated copies joined on
their samples' bits, crowds of near tensors measured against a leader, near
and scaled search only among tensors of 8+ elements, tensor sizes computed
once per entry.
"""


def run_once(args: list[str]) -> tuple[float, int, str]:
    """Wall seconds, peak RSS (bytes) and stdout of one ``sharescan`` run in a fresh process."""
    code = (
        "import resource, subprocess, sys; "
        "p = subprocess.run(sys.argv[1:], stdout=subprocess.PIPE, stderr=subprocess.PIPE); "
        "sys.stderr.write(p.stderr.decode()[-2000:]); "
        "print(p.returncode, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss, len(p.stdout))"
    )
    start = time.perf_counter()
    out = subprocess.run([sys.executable, "-c", code, sys.executable, "-m", "sharescan", *args], capture_output=True, text=True, cwd=ROOT)
    seconds = time.perf_counter() - start
    rc, rss_kib, _ = out.stdout.split()
    if rc != "0":
        raise SystemExit(f"sharescan {' '.join(args)} exited {rc}: {out.stderr}")
    return seconds, int(rss_kib) * 1024, out.stderr


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3, help="runs per case (the median is reported)")
    parser.add_argument("--only", help="run only the cases whose label contains this text")
    parser.add_argument("--keep", type=Path, help="write the generated models here (and reuse them) instead of a temporary folder")
    opts = parser.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        folder = opts.keep or Path(tmp)
        folder.mkdir(parents=True, exist_ok=True)
        for label, name, make, extra, floor_s, floor_mib, most_runs in CASES:
            if opts.only and opts.only not in label:
                continue
            path = folder / name
            started = time.perf_counter()
            if not path.exists():
                make(path)
            made = time.perf_counter() - started
            args = ["analyze", str(path), "--json", *extra]
            runs = [run_once(args) for _ in range(min(opts.runs, most_runs))]
            seconds = statistics.median(s for s, _, _ in runs)
            peak = max(r for _, r, _ in runs)
            rows.append({
                "case": label,
                "command": "sharescan " + " ".join(args).replace(str(folder) + "/", ""),
                "file_bytes": path.stat().st_size,
                "generate_seconds": round(made, 1),
                "runs": len(runs),
                "median_seconds": round(seconds, 2),
                "all_seconds": [round(s, 2) for s, _, _ in runs],
                "peak_rss_mib": round(peak / MiB, 1),
                "floor_seconds": floor_s,
                "floor_peak_rss_mib": floor_mib,
                "within_floor": seconds < floor_s and (floor_mib is None or peak / MiB < floor_mib),
            })
            print(json.dumps(rows[-1]), flush=True)
    if opts.only:
        return
    reports = ROOT / "reports"
    (reports / "scale.json").write_text(json.dumps({"python": sys.version.split()[0], "cases": rows}, indent=2) + "\n")
    lines = [
        "# Scale: models with very many small tensors",
        "",
        "`python benchmarks/bench_scale.py`: `sharescan analyze --json` in a fresh process; median wall time of",
        f"the runs, peak RSS of the largest (getrusage of the child). Python {sys.version.split()[0]}.",
        "",
        "| case | file | runs | median time | peak RSS | floor | within |",
        "| --- | ---: | ---: | ---: | ---: | --- | --- |",
    ]
    for r in rows:
        floor = f"< {r['floor_seconds']:g} s" + (f", < {r['floor_peak_rss_mib']:g} MiB" if r["floor_peak_rss_mib"] else "")
        lines.append(f"| {r['case']} | {r['file_bytes'] / MiB:.1f} MiB | {r['runs']} | {r['median_seconds']:.2f} s | {r['peak_rss_mib']:.0f} MiB | {floor} | {'yes' if r['within_floor'] else 'no'} |")
    (reports / "scale.md").write_text("\n".join(lines) + "\n\n" + NOTES)


if __name__ == "__main__":
    main()
