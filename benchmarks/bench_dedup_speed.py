"""How long `sharescan dedup` takes against the ONNX tools users already have.

    pip install -r benchmarks/requirements.txt
    python benchmarks/bench_dedup_speed.py

Builds three exports of 40-110 MB from transformers configs with random
weights (GPT-2 and BERT with tied embeddings, BART with its embedding shared
by encoder, decoder and head), exported by the TorchScript exporter with
constant folding, which writes each tied copy again (the duplicates dedup
removes). The exports are cached under ~/.cache/sharescan-bench.

Each tool runs in a fresh process (imports included, as a user runs it), 3
times; the median wall time and the bytes each writes are reported:
`sharescan dedup` (verification on, RAM probe off: the default), onnxslim,
onnxoptimizer's eliminate_duplicate_initializer and onnx-ir's
DeduplicateInitializersPass (each if installed). The floor: sharescan within
2x onnxslim's time on every export. Writes reports/dedup_speed.md and .json.

    git archive <commit> | tar -x -C /tmp/before
    python benchmarks/bench_dedup_speed.py --before /tmp/before --label <commit>   # also sharescan at <commit>
    python benchmarks/bench_dedup_speed.py --profile   # cProfile of dedup on the largest export

With ``--before``, the sharescan of that tree runs the same command (as its
users ran it: its own defaults) from its own folder.
"""

from __future__ import annotations

import importlib.util
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CACHE = Path.home() / ".cache" / "sharescan-bench"
RUNS = 3
FLOOR = 2.0  # sharescan's time at most this many times onnxslim's

# What each tool runs, as a Python program given (input, output).
TOOLS = {
    "sharescan dedup": None,  # the command line itself
    "onnxslim": "import onnx, onnxslim, sys; onnx.save(onnxslim.slim(onnx.load(sys.argv[1])), sys.argv[2])",
    "onnxoptimizer": "import onnx, onnxoptimizer, sys; onnx.save(onnxoptimizer.optimize(onnx.load(sys.argv[1]), ['eliminate_duplicate_initializer']), sys.argv[2])",
    "onnx-ir": (
        "import onnx_ir as ir, sys; from onnx_ir.passes.common import DeduplicateInitializersPass; "
        "m = ir.load(sys.argv[1]); DeduplicateInitializersPass()(m); ir.save(m, sys.argv[2])"
    ),
}
MODULES = {"onnxslim": "onnxslim", "onnxoptimizer": "onnxoptimizer", "onnx-ir": "onnx_ir"}


def _exports() -> list[tuple[str, Path]]:
    """(name, path) of each export, built once and cached."""
    CACHE.mkdir(parents=True, exist_ok=True)
    out = []
    for name in ("gpt2", "bert", "bart"):
        path = CACHE / f"{name}_tied_folded.onnx"
        if not path.exists():
            _export(name, path)
        out.append((name, path))
    return out


def _export(name: str, path: Path) -> None:
    import torch
    from transformers import BartConfig, BartForConditionalGeneration, BertConfig, BertForMaskedLM, GPT2Config, GPT2LMHeadModel

    warnings.simplefilter("ignore")
    torch.manual_seed(0)
    ids = torch.randint(0, 1000, (1, 16))
    mask = torch.ones(1, 16, dtype=torch.int64)
    if name == "gpt2":
        config = GPT2Config(n_layer=4, n_embd=384, n_head=6, vocab_size=16000, n_positions=128, use_cache=False)
        model_class, args, names = GPT2LMHeadModel, (ids, None, mask), ["input_ids", "attention_mask"]
    elif name == "bert":
        config = BertConfig(vocab_size=20000, hidden_size=384, num_hidden_layers=4, num_attention_heads=6, intermediate_size=1536, max_position_embeddings=128)
        model_class, args, names = BertForMaskedLM, (ids, mask), ["input_ids", "attention_mask"]
    else:
        config = BartConfig(vocab_size=16000, d_model=384, encoder_layers=3, decoder_layers=3, encoder_attention_heads=6, decoder_attention_heads=6, encoder_ffn_dim=1536, decoder_ffn_dim=1536, max_position_embeddings=128, use_cache=False)
        model_class, args, names = BartForConditionalGeneration, (ids, mask, ids), ["input_ids", "attention_mask", "decoder_input_ids"]
    # The eager attention traces without the masking helpers the TorchScript exporter cannot convert.
    config._attn_implementation = "eager"
    model = model_class(config).eval()
    tmp = path.with_suffix(".tmp.onnx")
    with torch.no_grad():
        torch.onnx.export(model, args, str(tmp), input_names=names, dynamo=False, opset_version=17, do_constant_folding=True)
    tmp.replace(path)


def _time(argv: list[str], tree: Path = ROOT) -> tuple[float, float]:
    """Wall and CPU seconds (user + system, of the child) of one run in a fresh process."""
    env = dict(os.environ, PYTHONPATH=str(tree))
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    proc = subprocess.run(argv, capture_output=True, text=True, cwd=tree, env=env)
    seconds = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(argv[:4])}: exit {proc.returncode}: {proc.stderr.strip()[-300:]}")
    return seconds, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def _command(tool: str, src: Path, out: Path) -> list[str]:
    if tool.startswith("sharescan dedup"):
        return [sys.executable, "-m", "sharescan", "dedup", str(src), "-o", str(out), "--json"]
    program = TOOLS[tool]
    assert program is not None
    return [sys.executable, "-c", program, str(src), str(out)]


def _written(out: Path) -> int:
    from sharescan.onnx_rewrite.dedup import onnx_file_bytes

    return onnx_file_bytes(out)


def measure(before: tuple[Path, str] | None = None) -> list[dict]:
    tools: list[tuple[str, Path]] = [(t, ROOT) for t in TOOLS if t not in MODULES or importlib.util.find_spec(MODULES[t]) is not None]
    if before is not None:
        tools.insert(0, (f"sharescan dedup at {before[1]}", before[0]))
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for name, src in _exports():
            row: dict = {"model": name, "input_bytes": src.stat().st_size, "tools": {}}
            for tool, tree in tools:
                out = Path(tmp) / f"{name}_{tool.replace(' ', '_')}.onnx"
                walls, cpus = [], []
                try:
                    for _ in range(RUNS):
                        out.unlink(missing_ok=True)
                        wall, cpu = _time(_command(tool, src, out), tree)
                        walls.append(wall)
                        cpus.append(cpu)
                except RuntimeError as e:
                    row["tools"][tool] = {"error": str(e)}
                    continue
                row["tools"][tool] = {"median_seconds": statistics.median(walls), "seconds": walls, "median_cpu_seconds": statistics.median(cpus), "output_bytes": _written(out)}
            print(json.dumps(row), flush=True)
            rows.append(row)
    return rows


def render(rows: list[dict]) -> str:
    mb = 1e6
    tools = list(dict.fromkeys(t for r in rows for t in r["tools"]))
    lines = [
        "# sharescan dedup: time against onnxslim, onnxoptimizer and onnx-ir",
        "",
        f"Generated by `python benchmarks/bench_dedup_speed.py`: transformers configs, random weights, TorchScript export with constant folding "
        f"(tied copies written again). Each tool in a fresh process (imports included), median of {RUNS} runs: wall seconds, CPU seconds "
        "(user + system; steadier on a shared machine), bytes written in MB (10^6).",
        "`sharescan dedup MODEL -o OUT --json`: analysis, rewrite, onnx.checker and onnxruntime verification of every output (on by default); "
        "the RAM probe is off unless `--ram` is given. A `sharescan dedup at <commit>` column runs that commit's sharescan with its own defaults.",
        "",
        "| model | input | " + " | ".join(tools) + " | sharescan / onnxslim, wall (floor <= 2) |",
        "|---|---|" + "---|" * len(tools) + "---|",
    ]
    for r in rows:
        cells = []
        for t in tools:
            v = r["tools"].get(t)
            if v is None:
                cells.append("not installed")
            elif "error" in v:
                cells.append(f"failed: {v['error'][:80]}")
            else:
                cells.append(f"{v['median_seconds']:.2f} s wall<br>{v['median_cpu_seconds']:.2f} s CPU<br>{v['output_bytes'] / mb:.1f} MB")
        s, slim = r["tools"].get("sharescan dedup", {}), r["tools"].get("onnxslim", {})
        ratio = s["median_seconds"] / slim["median_seconds"] if "median_seconds" in s and "median_seconds" in slim else None
        verdict = "n/a" if ratio is None else f"{ratio:.2f} ({'yes' if ratio <= FLOOR else '**no**'})"
        lines.append(f"| {r['model']} | {r['input_bytes'] / mb:.1f} MB | " + " | ".join(cells) + f" | {verdict} |")
    return "\n".join(lines) + "\n"


def profile() -> None:
    import cProfile
    import pstats

    from sharescan.onnx_rewrite.dedup import dedup

    name, src = max(_exports(), key=lambda e: e[1].stat().st_size)
    with tempfile.TemporaryDirectory() as tmp:
        dedup(str(src), str(Path(tmp) / "warm.onnx"))  # imports and page cache out of the figure
        profiler = cProfile.Profile()
        profiler.enable()
        dedup(str(src), str(Path(tmp) / "out.onnx"))
        profiler.disable()
    print(f"cProfile of sharescan.dedup on {name} ({src.stat().st_size / 1e6:.1f} MB):")
    pstats.Stats(profiler).sort_stats("cumulative").print_stats(30)


def main() -> None:
    if "--profile" in sys.argv[1:]:
        profile()
        return
    before = (Path(sys.argv[sys.argv.index("--before") + 1]), sys.argv[sys.argv.index("--label") + 1] if "--label" in sys.argv else "before") if "--before" in sys.argv else None
    rows = measure(before)
    (ROOT / "reports").mkdir(exist_ok=True)
    (ROOT / "reports/dedup_speed.json").write_text(json.dumps({"schema_version": 1, "runs": RUNS, "floor": FLOOR, "models": rows}, indent=1) + "\n")
    (ROOT / "reports/dedup_speed.md").write_text(render(rows))
    print(render(rows))


if __name__ == "__main__":
    main()
