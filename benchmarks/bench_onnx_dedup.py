"""Deduplicated ONNX exports of real architectures: sharescan against the tools users have.

    pip install -r benchmarks/requirements.txt
    python benchmarks/bench_onnx_dedup.py

Builds GPT-2 (tied embedding), ALBERT (one layer shared by all) and BART
(embeddings shared by encoder, decoder and head) from configs, exports each
with the TorchScript exporter (constant folding on and off) and the dynamo
exporter, and runs sharescan dedup, onnxoptimizer's
eliminate_duplicate_initializer, onnxslim and onnx-ir's
DeduplicateInitializersPass on each export. For every output: bytes on disk
divided by the checkpoint's unique parameter bytes, onnxruntime RAM (default
and sharescan's recommended session options) and the tool's time. Writes
reports/onnx_dedup.md and reports/onnx_dedup.json.
"""

from __future__ import annotations

import json
import statistics
import sys
import tempfile
import time
import warnings
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BEST = "sharescan --strip-debug --simplify"
# TorchScript exporter: constant folding on, off, and on with batch and
# sequence left dynamic (how optimum exports); then the dynamo exporter.
EXPORTERS = ("folded", "unfolded", "folded, dynamic axes", "dynamo")
# RSS readings of one configuration spread by a few hundred KB: removals that
# small (position-table rows) need the median of several fresh processes.
RAM_REPEATS = 5


def architectures():
    import torch
    from transformers import AlbertConfig, AlbertModel, BartConfig, BartForConditionalGeneration, GPT2Config, GPT2LMHeadModel

    torch.manual_seed(0)
    ids = torch.randint(0, 1000, (1, 16))
    yield "gpt2", GPT2LMHeadModel(GPT2Config(n_layer=4, n_embd=256, n_head=4, vocab_size=16000, n_positions=128, use_cache=False)), (ids,), ["input_ids"]
    albert = AlbertConfig(vocab_size=16000, embedding_size=128, hidden_size=256, num_hidden_layers=6, num_attention_heads=4, intermediate_size=1024)
    yield "albert", AlbertModel(albert), (ids,), ["input_ids"]
    bart = BartConfig(vocab_size=16000, d_model=256, encoder_layers=2, decoder_layers=2, encoder_attention_heads=4, decoder_attention_heads=4, encoder_ffn_dim=512, decoder_ffn_dim=512, max_position_embeddings=128, use_cache=False)
    yield "bart", BartForConditionalGeneration(bart), (ids, ids), ["input_ids", "decoder_input_ids"]


def unique_checkpoint_bytes(model) -> int:
    seen, total = set(), 0
    for t in model.state_dict().values():
        key = (t.untyped_storage().data_ptr(), t.storage_offset(), tuple(t.shape))
        if key not in seen:
            seen.add(key)
            total += t.numel() * t.element_size()
    return total


def run_tools(raw: Path, work: Path, specs: tuple) -> dict[str, tuple[Path, float]]:
    import onnx
    import onnx_ir as ir
    import onnxoptimizer
    import onnxslim
    from onnx_ir.passes.common import DeduplicateInitializersPass

    from sharescan.onnx_rewrite.dedup import DedupOptions, dedup

    out: dict[str, tuple[Path, float]] = {}
    for label, file, strip, simplify in (("sharescan", "sharescan.onnx", False, False), ("sharescan --strip-debug", "sharescan_strip.onnx", True, False), (BEST, "sharescan_simplify.onnx", True, True)):
        start = time.perf_counter()
        dedup(str(raw), str(work / file), DedupOptions(measure_ram=False, inputs=specs, strip_debug=strip, simplify=simplify))
        out[label] = (work / file, time.perf_counter() - start)
    start = time.perf_counter()
    onnx.save(onnxoptimizer.optimize(onnx.load(str(raw)), ["eliminate_duplicate_initializer"]), str(work / "onnxoptimizer.onnx"))
    out["onnxoptimizer"] = (work / "onnxoptimizer.onnx", time.perf_counter() - start)
    start = time.perf_counter()
    onnx.save(onnxslim.slim(onnx.load(str(raw))), str(work / "onnxslim.onnx"))
    out["onnxslim"] = (work / "onnxslim.onnx", time.perf_counter() - start)
    start = time.perf_counter()
    model = ir.load(str(raw))
    DeduplicateInitializersPass()(model)
    ir.save(model, str(work / "onnx_ir.onnx"))
    out["onnx-ir"] = (work / "onnx_ir.onnx", time.perf_counter() - start)
    return out


def main() -> None:
    import onnx
    import torch

    from sharescan.onnx_rewrite.dedup import onnx_file_bytes
    from sharescan.onnx_rewrite.ram import measure_ram
    from sharescan.onnx_rewrite.verify import sample_inputs

    warnings.simplefilter("ignore")
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        work_root = Path(tmp)
        for name, model, args, input_names in architectures():
            model.eval()
            unique = unique_checkpoint_bytes(model)
            for exporter in EXPORTERS:
                work = work_root / f"{name}_{exporter}".replace(", ", "_").replace(" ", "_")
                work.mkdir()
                raw = work / "export.onnx"
                with torch.no_grad():
                    try:
                        if exporter == "dynamo":
                            torch.onnx.export(model, args, str(raw), input_names=input_names, dynamo=True, opset_version=18)
                        else:
                            axes = {n: {0: "batch", 1: "sequence"} for n in input_names} if "dynamic" in exporter else None
                            torch.onnx.export(model, args, str(raw), input_names=input_names, dynamo=False, opset_version=17, do_constant_folding=exporter != "unfolded", dynamic_axes=axes)
                    except Exception as e:  # record the exporter's failure, go on
                        rows.append({"model": name, "exporter": exporter, "error": f"{e.__class__.__name__}: {str(e)[:120]}"})
                        continue
                # Every run (verification, RAM) at the exported sizes, dynamic axes included.
                specs = tuple((n, tuple(a.shape), "int64") for n, a in zip(input_names, args))
                feeds = sample_inputs(onnx.load(str(raw), load_external_data=False), {n: (shape, dtype) for n, shape, dtype in specs})
                results = {"export": (raw, 0.0), **run_tools(raw, work, specs)}
                row = {"model": name, "exporter": exporter, "checkpoint_unique_bytes": unique, "tools": {}}
                for tool, (path, seconds) in results.items():
                    # A tool may drop or rename graph inputs: feed what its output declares.
                    declared = {i.name for i in onnx.load(str(path), load_external_data=False).graph.input}
                    tool_feeds = {k: v for k, v in feeds.items() if k in declared}
                    ram = {}
                    for mode in ("default", "recommended"):
                        try:
                            ram[mode] = int(statistics.median(measure_ram(path, tool_feeds, mode == "recommended", work) for _ in range(RAM_REPEATS)))
                        except RuntimeError as e:
                            ram[mode] = None
                            row.setdefault("ram_errors", {})[tool] = str(e)[:160]
                    size = onnx_file_bytes(path)
                    row["tools"][tool] = {
                        "bytes": size,
                        "ratio": size / unique,
                        "seconds": seconds,
                        "ram_default": ram["default"],
                        "ram_recommended": ram["recommended"],
                    }
                rows.append(row)
                print(name, exporter, {t: round(v["ratio"], 3) for t, v in row["tools"].items()}, flush=True)
    (ROOT / "reports").mkdir(exist_ok=True)
    (ROOT / "reports/onnx_dedup.json").write_text(json.dumps(rows, indent=1) + "\n")
    (ROOT / "reports/onnx_dedup.md").write_text(render(rows))
    print(render(rows))


def render(rows: list[dict], sharescan_tool: str = BEST) -> str:
    mib = 1024 * 1024
    tools = ["export", "sharescan", "sharescan --strip-debug", BEST, "onnxoptimizer", "onnxslim", "onnx-ir"]
    lines = [
        "# Deduplicated ONNX exports: sharescan and the anchors",
        "",
        "Generated by `python benchmarks/bench_onnx_dedup.py` (architectures from transformers 4.46 configs, random weights).",
        "Each cell: output bytes / checkpoint unique parameter bytes; RAM = onnxruntime RSS growth for session creation + one run (median of 5 fresh processes),",
        "default options / sharescan's recommended options (`session.disable_prepacking=1`, ConstantFolding disabled), MiB.",
        "",
        "| model | exporter | checkpoint unique | " + " | ".join(tools) + " |",
        "|---|---|---|" + "---|" * len(tools),
    ]
    checks = []
    for r in rows:
        if "error" in r:
            lines.append(f"| {r['model']} | {r['exporter']} | export failed: {r['error']} |" + " |" * len(tools))
            continue
        def ram(x: int | None) -> str:
            return "n/a" if x is None else f"{x / mib:.1f}"

        cells = []
        for t in tools:
            v = r["tools"][t]
            cells.append(f"{v['ratio']:.4f}<br>RAM {ram(v['ram_default'])} / {ram(v['ram_recommended'])}<br>{v['seconds']:.2f} s")
        lines.append(f"| {r['model']} | {r['exporter']} | {r['checkpoint_unique_bytes'] / mib:.2f} MiB | " + " | ".join(cells) + " |")
        s, e = r["tools"][sharescan_tool], r["tools"]["export"]
        removed = e["bytes"] - s["bytes"]
        if None in (s["ram_recommended"], e["ram_recommended"], s["ram_default"], e["ram_default"]):
            checks.append(f"| {r['model']} | {r['exporter']} | {s['ratio']:.4f} | {removed / mib:.2f} MiB | RAM not measured: {r.get('ram_errors')} | | |")
            continue
        saved_rec = e["ram_recommended"] - s["ram_recommended"]
        saved_def = e["ram_default"] - s["ram_default"]
        smallest_anchor = min(r["tools"][t]["bytes"] for t in ("onnxoptimizer", "onnxslim", "onnx-ir"))
        checks.append(
            f"| {r['model']} | {r['exporter']} | {s['ratio']:.4f} ({'yes' if s['ratio'] <= 1.01 else '**no**'}) | "
            f"{removed / mib:.2f} MiB | {saved_rec / mib:.2f} MiB = {saved_rec / removed:.0%} ({'yes' if removed <= 0 or saved_rec >= 0.9 * removed else '**no**'}) | "
            f"{saved_def / mib:.2f} MiB | {'yes' if s['bytes'] <= smallest_anchor else '**no**'} |"
            if removed > 0
            else f"| {r['model']} | {r['exporter']} | {s['ratio']:.4f} ({'yes' if s['ratio'] <= 1.01 else '**no**'}) | 0 | nothing removed | - | {'yes' if s['bytes'] <= smallest_anchor else '**no**'} |"
        )
    lines += [
        "",
        "## Floors",
        "",
        f"Checked on `{sharescan_tool}`: `--strip-debug` drops the dynamo exporter's stack traces and provenance (onnxoptimizer drops them too); "
        "`--simplify` folds what the file fixes, as onnxslim does (with fixed input sizes, the position ids and the rows of the position table they read), "
        "but only where the file shrinks, so shared weights are never copied back.",
        "",
        "| model | exporter | sharescan bytes / unique (<= 1.01) | removed from file | RAM saved, recommended options (>= 90% of removed) | RAM saved, default options | not larger than any anchor |",
        "|---|---|---|---|---|---|---|",
        *checks,
        "",
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT))
    main()
