"""Full `sharescan analyze` against `cat FILE > /dev/null` on every format, page-cached.

    python benchmarks/bench_read_speed.py            # 2 GB Llama-style safetensors and GPT-2 in 3 layouts
    python benchmarks/bench_read_speed.py --quick    # a ~250 MB Llama-style file instead; 3 runs

Generates (once; cached under ~/.cache/sharescan-bench/read_speed, never in the repo):

- ``llama/model.safetensors``: a Llama-style model (transformers' LlamaConfig,
  shapes from the model built on the meta device) with random float32
  weights, about 2 GB, with planted relations: an untied ``lm_head`` that is
  a copy of the embedding, a layer's q_proj repeated in another layer, a
  transposed, a negated and a near-equal (1e-4) copy;
- ``gpt2-sharded/``: GPT-2 small (random init) saved by ``save_pretrained``
  as 5 safetensors shards with their index;
- ``gpt2-onnx/model.onnx`` + ``model.onnx.data``: GPT-2 small's weights as
  ONNX initializers in one external-data file (built with onnx.helper: a
  torch export takes minutes and changes nothing about reading);
- ``gpt2-bin/pytorch_model.bin``: ``torch.save`` of GPT-2 small's state dict.

Each case: `cat` over every file of the model and `sharescan analyze --json`
(and `--exact`) in fresh processes, alternating, median of 5 after one
warm-up read of everything; then one more run whose peak RSS (VmHWM) is
read at exit, and one that splits the time by the library's progress steps.
Writes reports/benchmarks.json and reports/benchmarks.md.

    git archive <commit> | tar -x -C /tmp/before && echo <commit> > /tmp/before/COMMIT
    python benchmarks/bench_read_speed.py --tree /tmp/before --json-out /tmp/before.json
    python benchmarks/bench_read_speed.py --before /tmp/before.json   # the report with a before table
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import struct
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
CACHE = Path(os.environ.get("SHARESCAN_BENCH_CACHE", Path.home() / ".cache" / "sharescan-bench" / "read_speed"))
MiB = 1024 * 1024
SHARESCAN = [str(Path(sys.executable).parent / "sharescan")]
_ENV = dict(os.environ)

# Runs the CLI and writes the process's peak RSS (VmHWM, KiB) to the fd RSS_FD names, at exit.
# VmHWM and not getrusage: Linux carries ru_maxrss over from the parent across exec.
_RSS_WRAPPER = (
    "import atexit, os, sys\n"
    "def hwm():\n"
    "    kib = next(int(l.split()[1]) for l in open('/proc/self/status') if l.startswith('VmHWM'))\n"
    "    os.write(int(os.environ['RSS_FD']), str(kib).encode())\n"
    "atexit.register(hwm)\n"
    "from sharescan.cli import main\n"
    "sys.argv = ['sharescan', *sys.argv[1:]]\n"
    "main()\n"
)


# Where one analysis spends its time: a fresh process times its imports,
# then each step the library reports through its progress hooks.
_PHASES = (
    "import json, sys, time\n"
    "start = time.perf_counter()\n"
    "import sharescan.cli, sharescan\n"
    "get = getattr(sharescan.cli.cli, 'get_command', None)\n"
    "get(None, 'analyze') if get is not None else None\n"  # the verb as the CLI loads it (and its settings)
    "import sharescan.cli.analyze\n"
    "paused = getattr(sharescan.cli, 'collector_paused', None)\n"  # the command imports the analysis with the collector paused
    "with paused() if paused is not None else open(__import__('os').devnull):\n"
    "    from sharescan.analysis import Progress\n"
    "phases = {'imports': time.perf_counter() - start}\n"
    "class Timer(Progress):\n"
    "    def __init__(self):\n"
    "        self.t, self.name = time.perf_counter(), 'load'\n"
    "    def mark(self, name):\n"
    "        now = time.perf_counter()\n"
    "        phases[self.name] = phases.get(self.name, 0.0) + now - self.t\n"
    "        self.t, self.name = now, name\n"
    "    def step(self, name):\n"
    "        self.mark('load' if name.startswith('loading') else name.removeprefix('finding ').removesuffix(' tensors') or 'accounting')\n"
    "    def start(self, total):\n"
    "        self.mark('digest (one read of every tensor)')\n"
    "    def stop(self):\n"
    "        self.mark('after digest')\n"
    "timer = Timer()\n"
    "import gc\n"
    "if paused is not None:\n"
    "    gc.disable()\n"  # as the command leaves it in a process that ends with it: no collection after the analysis
    "sharescan.analyze(sys.argv[1], progress=timer)\n"
    "timer.mark('')\n"
    "phases.pop('after digest', None)\n"
    "print(json.dumps(phases))\n"
)


# -- data ----------------------------------------------------------------------


def _write_safetensors(path: Path, items: Iterator[tuple[str, np.ndarray]], specs: list[tuple[str, tuple[int, ...]]]) -> None:
    """float32 tensors streamed to ``path`` in ``specs`` order (the header is written first)."""
    header: dict[str, object] = {"__metadata__": {"format": "pt"}}
    offset = 0
    for name, shape in specs:
        nbytes = int(np.prod(shape)) * 4
        header[name] = {"dtype": "F32", "shape": list(shape), "data_offsets": [offset, offset + nbytes]}
        offset += nbytes
    raw = json.dumps(header, separators=(",", ":")).encode()
    raw += b" " * (-len(raw) % 8)
    tmp = path.with_suffix(".tmp")
    with tmp.open("wb") as f:
        f.write(struct.pack("<Q", len(raw)) + raw)
        for (name, shape), (got, array) in zip(specs, items):
            assert name == got and array.shape == shape and array.dtype == np.float32, name
            f.write(array.tobytes())
    tmp.rename(path)


def llama_file(target_bytes: int) -> Path:
    """A Llama-style float32 safetensors of about ``target_bytes``, with planted relations
    (Llama-2-1B-like widths for 2 GB, half of them for a quick run)."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    hidden, vocab, inner = (2048, 32000, 5504) if target_bytes >= 1_000_000_000 else (1024, 16000, 2752)
    per_layer = 4 * hidden * hidden + 3 * hidden * inner
    layers = max(2, round((target_bytes / 4 - 2 * vocab * hidden) / per_layer))
    out = CACHE / f"llama-{hidden}x{layers}L-v2" / "model.safetensors"
    if out.exists():
        return out
    out.parent.mkdir(parents=True, exist_ok=True)
    config = LlamaConfig(hidden_size=hidden, intermediate_size=inner, num_hidden_layers=layers, num_attention_heads=16, num_key_value_heads=16, vocab_size=vocab, tie_word_embeddings=False)
    with torch.device("meta"):
        model = LlamaForCausalLM(config)
    specs = [(n, tuple(t.shape)) for n, t in model.state_dict().items()]
    rng = np.random.default_rng(0)
    kept: dict[str, np.ndarray] = {}
    kept_scales: list[np.float32] = []
    # Planted: name -> how it is made from an earlier tensor (all within float32 exactly, except near).
    plants = {
        "lm_head.weight": ("model.embed_tokens.weight", lambda w: w.copy()),
        "model.layers.1.self_attn.q_proj.weight": ("model.layers.0.self_attn.q_proj.weight", lambda w: w.copy()),
        "model.layers.1.self_attn.k_proj.weight": ("model.layers.0.self_attn.k_proj.weight", lambda w: np.ascontiguousarray(w.T)),
        "model.layers.1.self_attn.v_proj.weight": ("model.layers.0.self_attn.v_proj.weight", lambda w: -w),
        "model.layers.1.self_attn.o_proj.weight": ("model.layers.0.self_attn.o_proj.weight", lambda w: w + np.float32(1e-4) * rng.standard_normal(w.shape, dtype=np.float32) * np.float32(np.abs(w).mean())),
    }
    sources = {src for src, _ in plants.values()}

    def items() -> Iterator[tuple[str, np.ndarray]]:
        for name, shape in specs:
            if name in plants:
                src, make = plants[name]
                array = make(kept[src])
            elif name.endswith("norm.weight"):
                array = (1 + 0.05 * rng.standard_normal(shape, dtype=np.float32)).astype(np.float32)
            else:
                # Each matrix its own scale, as trained layers have: iid matrices of one
                # shape and one scale all look alike to the permuted-copy screen.
                scale = np.float32(0.02 * (1 + 0.05 * len(kept_scales)))
                kept_scales.append(scale)
                array = scale * rng.standard_normal(shape, dtype=np.float32)
            if name in sources:
                kept[name] = array
            yield name, array

    _write_safetensors(out, items(), specs)
    return out


def _gpt2() -> object:
    import torch
    from transformers import GPT2Config, GPT2LMHeadModel

    torch.manual_seed(0)
    model = GPT2LMHeadModel(GPT2Config())
    # Each matrix its own scale, as trained layers have (random init gives
    # every same-shaped matrix one norm, which no real checkpoint shows).
    with torch.no_grad():
        for k, p in enumerate(p for n, p in model.named_parameters() if p.dim() == 2 and n != "transformer.wte.weight"):
            p.mul_(1 + 0.05 * k)
    return model


def gpt2_files() -> dict[str, Path]:
    """GPT-2 small as 5 safetensors shards, as ONNX with external data, and as pytorch_model.bin."""
    sharded, onnx_dir, bin_dir = CACHE / "gpt2-v2-sharded", CACHE / "gpt2-v2-onnx", CACHE / "gpt2-v2-bin"
    if not (sharded / "model.safetensors.index.json").exists() or not (onnx_dir / "model.onnx").exists() or not (bin_dir / "pytorch_model.bin").exists():
        import torch

        model = _gpt2()
        # 124M float32 parameters, 498 MB: shards of at most 110 MB make 5 files (the 154 MB embedding takes one alone).
        model.save_pretrained(sharded, max_shard_size="110MB", safe_serialization=True)
        bin_dir.mkdir(parents=True, exist_ok=True)
        torch.save(model.state_dict(), bin_dir / "pytorch_model.bin")
        (bin_dir / "config.json").write_text((sharded / "config.json").read_text())
        _save_onnx({n: t.detach().numpy() for n, t in model.state_dict().items() if n != "lm_head.weight"}, onnx_dir)
    return {"sharded": sharded, "onnx": onnx_dir / "model.onnx", "bin": bin_dir / "pytorch_model.bin"}


def _save_onnx(weights: dict[str, np.ndarray], folder: Path) -> None:
    """The weights as initializers of a graph that reads each once (ReduceSum), data in model.onnx.data."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    folder.mkdir(parents=True, exist_ok=True)
    inits, nodes, outputs = [], [], []
    for k, (name, array) in enumerate(weights.items()):
        inits.append(numpy_helper.from_array(np.ascontiguousarray(array), name))
        nodes.append(helper.make_node("ReduceSum", [name], [f"s{k}"], keepdims=0))
        outputs.append(helper.make_tensor_value_info(f"s{k}", TensorProto.FLOAT, []))
    graph = helper.make_graph(nodes, "gpt2_weights", [], outputs, inits)
    proto = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    onnx.save_model(proto, str(folder / "model.onnx"), save_as_external_data=True, all_tensors_to_one_file=True, location="model.onnx.data", size_threshold=1024)


def model_files(path: Path) -> list[Path]:
    """Every file `cat` reads for a model: the file, or a folder's weight files."""
    if path.is_dir():
        return sorted(p for p in path.iterdir() if p.suffix == ".safetensors")
    extra = [path.parent / "model.onnx.data"] if path.suffix == ".onnx" else []
    return [path, *extra]


# -- measuring -----------------------------------------------------------------


def _timed(cmd: list[str]) -> float:
    start = time.perf_counter()
    subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True, env=_ENV)
    return time.perf_counter() - start


def measure(label: str, path: Path, floor: float, runs: int) -> dict:
    files = model_files(path)
    size = sum(f.stat().st_size for f in files)
    cat = ["cat", *map(str, files)]
    analyze = [*SHARESCAN, "analyze", str(path), "--json"]
    exact = [*analyze, "--exact"]
    _timed(cat)
    _timed(analyze)  # warm-up: page cache and Python's bytecode cache
    cat_s, analyze_s, exact_s = [], [], []
    for _ in range(runs):
        cat_s.append(_timed(cat))
        analyze_s.append(_timed(analyze))
        exact_s.append(_timed(exact))
    rss = _rss(["analyze", str(path), "--json"])
    # Python's own start, before `import`, is not in the split: measured with `python -c pass`.
    bare = statistics.median(_timed([sys.executable, "-c", "pass"]) for _ in range(3))
    phases = {"python start (bare interpreter)": bare}
    split = json.loads(subprocess.run([sys.executable, "-c", _PHASES, str(path)], capture_output=True, text=True, check=True, env=_ENV).stdout)
    phases |= split
    largest = max(f.stat().st_size for f in files)
    row = {
        "case": label,
        "path": str(path),
        "files": len(files),
        "bytes": size,
        "largest_file_bytes": largest,
        "cat_s": statistics.median(cat_s),
        "analyze_s": statistics.median(analyze_s),
        "exact_s": statistics.median(exact_s),
        "runs": {"cat_s": cat_s, "analyze_s": analyze_s, "exact_s": exact_s},
        "peak_rss_bytes": rss * 1024,
        "phases_s": phases,
        "floor_ratio": floor,
    }
    row["ratio"] = row["analyze_s"] / row["cat_s"]
    row["exact_ratio"] = row["exact_s"] / row["cat_s"]
    row["rss_fraction_of_largest"] = row["peak_rss_bytes"] / largest
    row["met"] = row["ratio"] <= floor and row["rss_fraction_of_largest"] < 0.25
    print(f"{label}: cat {row['cat_s']:.3f} s, analyze {row['analyze_s']:.3f} s ({row['ratio']:.2f}x; --exact {row['exact_ratio']:.2f}x), peak RSS {rss / 1024:.0f} MiB ({100 * row['rss_fraction_of_largest']:.1f}% of largest file)", flush=True)
    return row


# What any Python process that analyses with numpy pays before it reads a
# byte: the interpreter's start, and numpy's import (OpenBLAS on one thread,
# as `sharescan analyze` runs it). Peak RSS read as in _RSS_WRAPPER.
_NUMPY_ONLY = "import numpy\nprint(next(int(l.split()[1]) for l in open('/proc/self/status') if l.startswith('VmHWM')))\n"
_SHARESCAN_IMPORTS = "import sharescan.cli, sharescan.cli.analyze, sharescan.analysis, sharescan.report.json_report\n" + _NUMPY_ONLY.split("\n", 1)[1]


def reference(runs: int) -> dict:
    """Medians of fresh processes: `python -c pass`, `import numpy`, and sharescan's imports for analyze --json (seconds, peak RSS KiB)."""
    env = {**_ENV, "OPENBLAS_NUM_THREADS": "1"}

    def timed(code: str) -> tuple[float, int]:
        start = time.perf_counter()
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, env=env)
        return time.perf_counter() - start, int(out.stdout.strip() or 0)

    found = {}
    for name, code in (("python_c_pass", "pass"), ("import_numpy", _NUMPY_ONLY), ("sharescan_imports", _SHARESCAN_IMPORTS)):
        runs_of = [timed(code) for _ in range(runs)]
        found[f"{name}_s"] = statistics.median(t for t, _ in runs_of)
        if name != "python_c_pass":
            found[f"{name}_peak_rss_bytes"] = statistics.median(k for _, k in runs_of) * 1024
    return found


def _compile_bytecode(tree: Path) -> None:
    """Compile the measured package's modules once, as ``pip install`` does.

    An installed sharescan starts from compiled bytecode; a checkout run
    with PYTHONDONTWRITEBYTECODE set (or a read-only tree) compiles every
    module again in every fresh process, about 20 ms of the imports that a
    user never pays.
    """
    subprocess.run([sys.executable, "-m", "compileall", "-q", str(tree / "sharescan")], stdout=subprocess.DEVNULL, check=True, env=_ENV)


def _rss(args: list[str]) -> int:
    """Peak RSS (KiB) of a fresh process running ``sharescan *args``."""
    read, write = os.pipe()
    env = {**_ENV, "RSS_FD": str(write)}
    proc = subprocess.Popen([sys.executable, "-c", _RSS_WRAPPER, *args], stdout=subprocess.DEVNULL, pass_fds=(write,), env=env)
    os.close(write)
    proc.wait()
    text = os.read(read, 64)
    os.close(read)
    if proc.returncode != 0 or not text:
        raise SystemExit(f"sharescan {' '.join(args)} failed (exit {proc.returncode})")
    return int(text)


def _commit(tree: Path | None) -> str:
    """The commit measured: the tree's (an export names it in its folder's COMMIT file, if any), else this checkout's HEAD."""
    if tree is not None:
        marker = tree / "COMMIT"
        return marker.read_text().strip() if marker.exists() else str(tree)
    out = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True)
    return out.stdout.strip() or "unknown"


# -- report --------------------------------------------------------------------


def _load_digest(row: dict) -> float:
    return row["phases_s"].get("load", 0.0) + row["phases_s"].get("digest (one read of every tensor)", 0.0)


def markdown(rows: list[dict], meta: dict, before: dict | None) -> str:
    lines = [
        "# sharescan analyze: read speed on every format",
        "",
        f"Generated by `python benchmarks/bench_read_speed.py{' --quick' if meta['quick'] else ''}` (commit {meta.get('commit', '?')}). Machine: {meta['cpus']} CPUs, Python {meta['python']}, {meta['platform']}"
        + (f"; load average {meta['load_average_1min']:.2f} when it started (other work on the machine slows `cat` and the analysis unevenly)." if meta.get("load_average_1min") is not None else "."),
        f"Medians of {meta['runs']} runs, `cat` and `sharescan analyze --json` alternating in fresh processes, page-cached files, the package's bytecode compiled beforehand (as `pip install` does). "
        "Ratio: analyze time / cat time. Peak RSS: VmHWM of the analysing process. MB = 10^6 bytes, MiB = 2^20 bytes.",
        "",
        "| file | size | cat s | analyze s | ratio | --exact ratio | peak RSS | % of largest file | floor | met? |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['case']} | {r['bytes'] / 1e6:,.0f} MB ({r['files']} file{'s' if r['files'] > 1 else ''}) | {r['cat_s']:.3f} | {r['analyze_s']:.3f} | {r['ratio']:.2f}x | {r['exact_ratio']:.2f}x "
            f"| {r['peak_rss_bytes'] / MiB:,.0f} MiB | {100 * r['rss_fraction_of_largest']:.1f}% | {r['floor_ratio']:g}x, RSS < 25% | {'yes' if r['met'] else 'no'} |"
        )
    if before is not None:
        lines += ["", f"Before (the same script with `--tree` on an export of commit {before['commit']}, the same files, measured on the same machine the same hour). "
                  "Detectors changed between the two commits as well; the last column (one run each, from the split below) is the loaders' and the scan's own share.", "",
                  "| file | cat s | analyze s | ratio | --exact ratio | peak RSS | % of largest file | load + digest s: before -> now |", "|---|---|---|---|---|---|---|---|"]
        now = {r["case"]: r for r in rows}
        for r in before["cases"]:
            after = now.get(r["case"])
            split = f"{_load_digest(r):.3f} -> {_load_digest(after):.3f}" if after is not None and "phases_s" in r else ""
            lines.append(f"| {r['case']} | {r['cat_s']:.3f} | {r['analyze_s']:.3f} | {r['ratio']:.2f}x | {r['exact_ratio']:.2f}x | {r['peak_rss_bytes'] / MiB:,.0f} MiB | {100 * r['rss_fraction_of_largest']:.1f}% | {split} |")
    names = list(dict.fromkeys(k for r in rows for k in r["phases_s"]))
    lines += ["", "Where the time goes: one analysis in a fresh process, split by the library's progress steps (seconds; the steps after `digest` are the detectors).", "",
              "| step | " + " | ".join(r["case"] for r in rows) + " |", "|---|" + "---|" * len(rows)]
    for name in names:
        lines.append(f"| {name} | " + " | ".join(f"{r['phases_s'].get(name, 0.0):.3f}" for r in rows) + " |")
    lines.append("| cat (for scale) | " + " | ".join(f"{r['cat_s']:.3f}" for r in rows) + " |")
    lines.append("")
    ref = meta.get("reference")
    if ref:
        lines.append(
            f"What a Python analysis pays before it reads a byte (whole fresh processes, medians): `python -c pass` {ref['python_c_pass_s']:.3f} s; "
            f"`python -c 'import numpy'` {ref['import_numpy_s']:.3f} s and {ref['import_numpy_peak_rss_bytes'] / MiB:,.0f} MiB peak RSS; "
            f"`python -c` importing what `analyze --json` imports {ref['sharescan_imports_s']:.3f} s and {ref['sharescan_imports_peak_rss_bytes'] / MiB:,.0f} MiB. "
            + "; ".join(f"{r['case']}: that process is {ref['sharescan_imports_s'] / r['cat_s']:.1f}x cat (numpy's alone {ref['import_numpy_s'] / r['cat_s']:.1f}x), its RSS {100 * ref['sharescan_imports_peak_rss_bytes'] / r['largest_file_bytes']:.0f}% of the largest file" for r in rows)
            + "."
        )
        lines.append("")
    reading = ("python start (bare interpreter)", "imports", "load", "digest (one read of every tensor)")
    for r in rows:
        total = sum(r["phases_s"].values())
        read = sum(r["phases_s"].get(k, 0.0) for k in reading)
        detect = {k: v for k, v in r["phases_s"].items() if k not in reading}
        top = sorted(detect.items(), key=lambda kv: -kv[1])[:2]
        lines.append(
            f"- {r['case']}: start, imports, load and the one read of every tensor take {read:.2f} s of {total:.2f} s ({read / r['cat_s']:.1f}x cat); "
            f"the detectors take {total - read:.2f} s, most in {top[0][0]} ({top[0][1]:.2f} s) and {top[1][0]} ({top[1][1]:.2f} s)."
        )
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a ~250 MB Llama-style file instead of 2 GB, 3 runs")
    parser.add_argument("--runs", type=int, default=None)
    parser.add_argument("--only", choices=["llama", "sharded", "onnx", "bin"], action="append", help="run only these cases")
    parser.add_argument("--render", type=Path, help="write the report from this JSON (a --json-out run) instead of measuring")
    parser.add_argument("--before", type=Path, help="JSON of a --tree --json-out run, shown as the 'before' table")
    parser.add_argument("--no-write", action="store_true", help="print only; leave reports/ as it is")
    parser.add_argument("--tree", type=Path, help="measure the sharescan in this source tree (e.g. an export of an earlier commit) instead of the installed one")
    parser.add_argument("--json-out", type=Path, help="write the JSON here instead of reports/benchmarks.json (with --tree: a comparison run)")
    args = parser.parse_args()
    if args.tree is not None:
        SHARESCAN[:] = [sys.executable, "-m", "sharescan"]
        _ENV["PYTHONPATH"] = str(args.tree.resolve())
        os.chdir(args.tree)  # `python -m` and `-c` put the working folder first on sys.path
    if args.render is None:
        _compile_bytecode(args.tree or ROOT)
    if args.render is not None:
        measured = json.loads(args.render.read_text(encoding="utf-8"))
        before = json.loads(args.before.read_text(encoding="utf-8")) if args.before is not None else None
        meta = {k: measured[k] for k in ("quick", "runs", "cpus", "python", "platform", "reference", "load_average_1min") if k in measured}
        (ROOT / "reports" / "benchmarks.json").write_text(json.dumps({**measured, "before": before}, indent=2) + "\n", encoding="utf-8")
        (ROOT / "reports" / "benchmarks.md").write_text(markdown(measured["cases"], {**meta, "commit": measured["commit"]}, before), encoding="utf-8")
        return
    runs = args.runs or (3 if args.quick else 5)
    only = set(args.only or ["llama", "sharded", "onnx", "bin"])
    rows = []
    if "llama" in only:
        llama = llama_file(250_000_000 if args.quick else 2_000_000_000)
        rows.append(measure(f"Llama-style fp32 safetensors ({llama.parent.name})", llama, 3.0, runs))
    if only & {"sharded", "onnx", "bin"}:
        gpt2 = gpt2_files()
        if "sharded" in only:
            rows.append(measure("GPT-2 small, 5 safetensors shards (folder)", gpt2["sharded"], 4.0, runs))
        if "onnx" in only:
            rows.append(measure("GPT-2 small, ONNX + external data", gpt2["onnx"], 4.0, runs))
        if "bin" in only:
            rows.append(measure("GPT-2 small, pytorch_model.bin", gpt2["bin"], 6.0, runs))
    meta = {"quick": args.quick, "runs": runs, "cpus": os.cpu_count(), "python": platform.python_version(), "platform": platform.platform(), "load_average_1min": os.getloadavg()[0], "reference": reference(runs)}
    document = json.dumps({"schema_version": 1, "benchmark": "read_speed", **meta, "commit": _commit(args.tree), "cases": rows}, indent=2) + "\n"
    if args.json_out is not None:
        args.json_out.write_text(document, encoding="utf-8")
    if args.no_write or args.json_out is not None:
        return
    before = json.loads(args.before.read_text(encoding="utf-8")) if args.before is not None else None
    if before is not None:
        document = json.dumps({**json.loads(document), "before": before}, indent=2) + "\n"
    (ROOT / "reports" / "benchmarks.json").write_text(document, encoding="utf-8")
    (ROOT / "reports" / "benchmarks.md").write_text(markdown(rows, {**meta, "commit": _commit(args.tree)}, before), encoding="utf-8")


if __name__ == "__main__":
    main()
