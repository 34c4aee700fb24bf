"""Measure `sharescan analyze` on the synthetic model: correctness, speed, memory, scaling.

    python benchmarks/bench_analyze.py            # makes the data if missing (2 GB)

Writes reports/analyze_synthetic.md and reports/analyze_synthetic.json. Every figure comes
from one run on one machine: medians of 5, page-cached file, the time to read
the same file with `cat` measured alongside.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import struct
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "benchmarks"))

import make_synthetic  # noqa: E402

import sharescan  # noqa: E402
from sharescan.analysis import DEFAULT_TOL  # noqa: E402

RUNS = 5


def median_time(fn, runs: int = RUNS) -> tuple[float, list[float]]:
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times), times


def cat_time(path: Path) -> tuple[float, list[float]]:
    return median_time(lambda: subprocess.run(["cat", str(path)], stdout=subprocess.DEVNULL, check=True))


def score(result, truth: list[dict]) -> dict:
    """Recall and precision of the found groups against the planted truth."""
    found = [g for g in result.groups if g.relation != "aliased"]
    expected = {(t["relation"], frozenset(t["members"])): t for t in truth}
    matched = set()
    true_positive = 0
    for g in found:
        key = (g.relation, frozenset(m.name for m in g.members))
        t = expected.get(key)
        ok = t is not None and (g.relation != "rows" or g.rows.distinct_rows == t["distinct_rows"])
        if ok:
            matched.add(key)
            true_positive += 1
    return {
        "planted": len(expected),
        "found": len(found),
        "recall": len(matched) / len(expected),
        "precision": true_positive / len(found) if found else 1.0,
        "missed": sorted(f"{r}:{sorted(m)}" for r, m in set(expected) - matched),
        "unexpected": [f"{g.relation}:{[m.name for m in g.members]}" for g in found if (g.relation, frozenset(m.name for m in g.members)) not in matched],
    }


def peak_rss(path: Path) -> dict:
    """Peak RSS of a fresh process that analyses the file, and of one that only imports."""
    # VmHWM, not ru_maxrss: Linux carries ru_maxrss over from the parent across exec.
    code = (
        "import sys, numpy, xxhash, sharescan.analysis\n"
        "def hwm():\n"
        "    return next(int(l.split()[1]) for l in open('/proc/self/status') if l.startswith('VmHWM'))\n"
        "base = hwm()\n"
        "sharescan.analyze([sys.argv[1]])\n"
        "print(base, hwm())\n"
    )
    out = subprocess.run([sys.executable, "-c", code, str(path)], capture_output=True, text=True, check=True).stdout.split()
    base_kib, peak_kib = int(out[0]), int(out[1])
    return {"peak_bytes": peak_kib * 1024, "after_imports_bytes": base_kib * 1024}


def write_same_shape(path: Path, count: int, shape: tuple[int, int], seed: int) -> None:
    rng = np.random.default_rng(seed)
    n = shape[0] * shape[1] * 4
    header = {f"t.{k}": {"dtype": "F32", "shape": list(shape), "data_offsets": [k * n, (k + 1) * n]} for k in range(count)}
    raw = json.dumps(header, separators=(",", ":")).encode()
    raw += b" " * (-len(raw) % 8)
    with path.open("wb") as f:
        f.write(struct.pack("<Q", len(raw)) + raw)
        for _ in range(count):
            f.write(rng.standard_normal(shape, dtype=np.float32).tobytes())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default=str(ROOT / "benchmarks/data"))
    parser.add_argument("--size", default="2GB")
    parser.add_argument("--scaling-size", default="512MiB", help="total size of each scaling file")
    args = parser.parse_args()
    data = Path(args.data)
    model = data / "synthetic.safetensors"
    truth_path = data / "synthetic.truth.json"
    if not model.exists() or not truth_path.exists():
        from sharescan.units import parse_threshold

        make_synthetic.write(model, int(parse_threshold(args.size).value), rows=256)
    info = json.loads(truth_path.read_text())
    size = model.stat().st_size

    cat_time(model)  # warm the page cache
    result = sharescan.analyze([str(model)])
    correctness = score(result, info["truth"])
    analyze_median, analyze_runs = median_time(lambda: sharescan.analyze([str(model)]))
    cat_median, cat_runs = cat_time(model)
    rss = peak_rss(model)

    scaling = {}
    total = int(make_synthetic.parse_threshold(args.scaling_size).value)
    for count in (512, 4096):
        rows = max(1, total // (count * 1024 * 4))
        path = data / f"same_shape_{count}.safetensors"
        if not path.exists():
            write_same_shape(path, count, (rows, 1024), seed=count)
        cat_time(path)
        median, runs = median_time(lambda p=path: sharescan.analyze([str(p)]))
        scaling[count] = {"shape": [rows, 1024], "bytes": path.stat().st_size, "median_s": median, "runs_s": runs}

    report = {
        "machine": {"python": platform.python_version(), "cpus": __import__("os").cpu_count(), "platform": platform.platform()},
        "model": {"file": model.name, "bytes": size, "tensors": info["tensors"], "tol": DEFAULT_TOL, "row_tol": DEFAULT_TOL},
        "correctness": correctness,
        "time": {
            "analyze_median_s": analyze_median,
            "analyze_runs_s": analyze_runs,
            "cat_median_s": cat_median,
            "cat_runs_s": cat_runs,
            "ratio": analyze_median / cat_median,
        },
        "memory": {**rss, "peak_fraction_of_file": rss["peak_bytes"] / size, "growth_fraction_of_file": (rss["peak_bytes"] - rss["after_imports_bytes"]) / size},
        "scaling": {**{str(k): v for k, v in scaling.items()}, "ratio_4096_over_512": scaling[4096]["median_s"] / scaling[512]["median_s"]},
    }
    (ROOT / "reports").mkdir(exist_ok=True)
    (ROOT / "reports/analyze_synthetic.json").write_text(json.dumps(report, indent=1) + "\n")
    (ROOT / "reports/analyze_synthetic.md").write_text(render(report))
    print(render(report))


def render(r: dict) -> str:
    t, m, c, s = r["time"], r["memory"], r["correctness"], r["scaling"]
    mib = 1024 * 1024

    def ok(flag: bool) -> str:
        return "yes" if flag else "**no**"

    return "\n".join(
        [
            "# sharescan analyze: benchmark",
            "",
            "Generated by `python benchmarks/bench_analyze.py` (data from `benchmarks/make_synthetic.py`).",
            f"Machine: {r['machine']['cpus']} CPUs, Python {r['machine']['python']}, {r['machine']['platform']}.",
            f"Model: `{r['model']['file']}`, {r['model']['bytes']:,} bytes ({r['model']['bytes'] / mib:,.0f} MiB), {r['model']['tensors']} float32 tensors;"
            f" default tolerances (tol {r['model']['tol']:g}, row-tol {r['model']['row_tol']:g}). Medians of {RUNS} runs, page-cached file.",
            "",
            "| measure | value | floor | met |",
            "|---|---|---|---|",
            f"| recall (planted relations found) | {c['recall']:.0%} ({c['planted']} planted) | 100% | {ok(c['recall'] == 1)} |",
            f"| precision (found groups that were planted) | {c['precision']:.0%} ({c['found']} found) | 100% | {ok(c['precision'] == 1)} |",
            f"| full analysis, median | {t['analyze_median_s']:.3f} s | | |",
            f"| `cat file > /dev/null`, median | {t['cat_median_s']:.3f} s | | |",
            f"| analysis / read time | {t['ratio']:.2f}x | < 4x | {ok(t['ratio'] < 4)} |",
            f"| peak RSS (fresh process) | {m['peak_bytes'] / mib:,.0f} MiB = {m['peak_fraction_of_file']:.1%} of file | < 25% | {ok(m['peak_fraction_of_file'] < 0.25)} |",
            f"| of which after imports | {m['after_imports_bytes'] / mib:,.0f} MiB (growth {m['growth_fraction_of_file']:.1%} of file) | | |",
            f"| 512 tensors {s['512']['shape']}, median | {s['512']['median_s']:.3f} s | | |",
            f"| 4,096 tensors {s['4096']['shape']}, median | {s['4096']['median_s']:.3f} s | | |",
            f"| time ratio for 8x the tensors | {s['ratio_4096_over_512']:.2f}x | < 10x | {ok(s['ratio_4096_over_512'] < 10)} |",
            "",
            f"Missed: {', '.join(c['missed']) or 'none'}. Unexpected: {', '.join(c['unexpected']) or 'none'}.",
            f"Analysis runs (s): {', '.join(f'{x:.3f}' for x in t['analyze_runs_s'])}; cat runs (s): {', '.join(f'{x:.3f}' for x in t['cat_runs_s'])}.",
            "",
        ]
    )


if __name__ == "__main__":
    main()
