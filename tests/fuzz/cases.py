"""Every fuzz case, listed without touching disk. Seeds are fixed: the list,
and the bytes each case builds, are the same on every run."""

from __future__ import annotations

import random

from tests.fuzz.builders import INDEX_MUTATIONS, ONNX_EXT, ONNX_EXT_GRAPH, ONNX_MODEL, ONNX_RAW, PT2_CONFIG, ST_LENGTHS, ST_MUTATIONS
from tests.fuzz.paths import PATH_TRICKS
from tests.fuzz.pickles import CODE_PAYLOADS, STRUCT_PAYLOADS, TENSOR_VIEWS
from tests.fuzz.plan import Case

__all__ = ["all_cases", "CLASSES"]

CLASSES = ("truncation", "header_mutation", "protobuf_mutation", "archive_mutation", "hostile_pickle", "path_tricks")

# format -> commands that read it
TRUNCATED_FORMATS = {
    "pt_zip": ("analyze",),
    "pt_checkpoint": ("analyze",),
    "pt_legacy": ("analyze",),
    "safetensors": ("analyze",),
    "onnx": ("analyze", "dedup"),
    "onnx_dynamo": ("analyze",),
    "pt2": ("analyze",),
    "torchscript": ("analyze",),
    "onnx_ext_data": ("analyze", "dedup"),
    "onnx_ext_model": ("analyze",),
    "hf_shard": ("analyze",),
    "hf_index": ("analyze",),
    "bin_shard": ("analyze",),
}
SIMPLIFY = ["--simplify", "--rows", "--strip-debug"]
FIXED_OFFSETS = ("abs:0", "abs:1", "abs:8", "abs:16", "abs:64", "frac:0.25", "frac:0.5", "frac:0.75", "end:-16", "end:-1")

PICKLE_SLOTS = ("legacy_magic", "legacy_sys_info", "legacy_object", "zip_data_pkl", "ts_data_pkl", "ts_constants_pkl", "pt2_weight", "pt2_constant", "pt2_sample_inputs", "bin_shard")
EXPORT_SLOTS = ("legacy_object", "zip_data_pkl", "ts_data_pkl", "ts_constants_pkl", "pt2_weight", "pt2_sample_inputs")
SHARD_HEADER_MUTATIONS = ("dtype_list", "shape_huge", "offsets_past_end", "offsets_negative", "entry_no_offsets", "header_deep_lists", "header_not_utf8", "length_huge")
# run as a real `python -m sharescan` too: code that could escape, and reads that could block forever
SUBPROCESS_PICKLES = (("os_system", "zip_data_pkl", "analyze"), ("os_system", "legacy_object", "analyze"), ("subprocess", "ts_data_pkl", "analyze"), ("exec", "pt2_sample_inputs", "analyze"), ("os_system", "zip_data_pkl", "export"), ("eval", "bin_shard", "analyze"))
SUBPROCESS_TRICKS = ("analyze_fifo_onnx", "analyze_fifo_safetensors", "dedup_fifo", "dedup_fifo_data_file", "analyze_fifo_in_folder", "out_is_input")


def _truncation() -> list[Case]:
    cases = []
    for i, (fmt, commands) in enumerate(TRUNCATED_FORMATS.items()):
        rng = random.Random(1000 + i)
        offsets = list(FIXED_OFFSETS) + [f"frac:{rng.random():.4f}" for _ in range(2)]
        for cmd in commands:
            chosen = offsets if cmd == "analyze" else offsets[::2]
            cases += [Case(f"truncation/{fmt}/{cmd}/{at}", "truncation", "truncate", {"fmt": fmt, "at": at, "cmd": cmd}) for at in chosen]
    return cases


def _headers() -> list[Case]:
    cases = [Case(f"header_mutation/file/{m}", "header_mutation", "st_header", {"mut": m, "target": "file"}) for m in [*ST_MUTATIONS, *ST_LENGTHS]]
    cases += [Case(f"header_mutation/shard/{m}", "header_mutation", "st_header", {"mut": m, "target": "shard"}) for m in SHARD_HEADER_MUTATIONS]
    cases += [Case(f"header_mutation/index/{m}", "header_mutation", "hf_index", {"mut": m}) for m in INDEX_MUTATIONS]
    for cmd in ("analyze", "export"):
        cases += [Case(f"header_mutation/pt2_config/{m}/{cmd}", "header_mutation", "pt2_config", {"mut": m, "cmd": cmd}) for m in PT2_CONFIG]
    cases += [Case(f"header_mutation/flip/mlp.safetensors/seed{s}", "header_mutation", "byte_flip", {"fixture": "mlp.safetensors", "seed": s, "flips": 1 + s % 4, "region": 2000}) for s in range(20)]
    cases += [Case(f"header_mutation/many_tensors/{n}", "header_mutation", "st_many", {"n": n}) for n in (5_000, 30_000)]
    return cases


def _protobuf() -> list[Case]:
    cases = []
    for base, seeds in (("mlp.onnx", range(30)), ("cnn.onnx", range(30, 40))):
        for seed in seeds:
            flips = (1, 3, 8)[seed % 3]
            cmd = "dedup" if seed % 2 else "analyze"
            cases.append(Case(f"protobuf_mutation/flip/{base}/seed{seed}-x{flips}/{cmd}", "protobuf_mutation", "onnx_flip", {"base": base, "seed": seed, "flips": flips, "cmd": cmd}))
    for cmd in ("analyze", "dedup"):
        cases += [Case(f"protobuf_mutation/model/{v}/{cmd}", "protobuf_mutation", "onnx_model", {"variant": v, "cmd": cmd}) for v in ONNX_MODEL]
    # every rewrite step on damaged graphs: folding evaluates constants, --rows reshapes tensors
    cases += [Case(f"protobuf_mutation/model/{v}/dedup-simplify-rows", "protobuf_mutation", "onnx_model", {"variant": v, "cmd": "dedup", "extra": SIMPLIFY}) for v in ONNX_MODEL]
    cases += [Case(f"protobuf_mutation/raw/{v}/dedup-simplify-rows", "protobuf_mutation", "onnx_raw", {"variant": v, "cmd": "dedup", "extra": SIMPLIFY}) for v in ONNX_RAW]
    for fixture in ("mlp.pt", "mlp.pt2", "mlp_script.pt"):
        cases += [Case(f"archive_mutation/flip/{fixture}/seed{s}", "archive_mutation", "byte_flip", {"fixture": fixture, "seed": s, "flips": 1 + s % 3}) for s in range(15)]
    for cmd in ("analyze", "dedup"):
        cases += [Case(f"protobuf_mutation/raw/{v}/{cmd}", "protobuf_mutation", "onnx_raw", {"variant": v, "cmd": cmd}) for v in ONNX_RAW]
        cases += [Case(f"protobuf_mutation/external/{v}/{cmd}", "protobuf_mutation", "onnx_ext", {"variant": v, "cmd": cmd}) for v in ONNX_EXT]
        cases += [Case(f"protobuf_mutation/external_graph/{v}/{cmd}", "protobuf_mutation", "onnx_ext_graph", {"variant": v, "cmd": cmd}) for v in ONNX_EXT_GRAPH]
    return cases


def _pickles() -> list[Case]:
    cases = []
    for payload in (*CODE_PAYLOADS, *STRUCT_PAYLOADS):
        cases += [Case(f"hostile_pickle/analyze/{slot}/{payload}", "hostile_pickle", "hostile", {"payload": payload, "slot": slot, "cmd": "analyze"}) for slot in PICKLE_SLOTS]
    for payload in CODE_PAYLOADS:
        cases += [Case(f"hostile_pickle/export/{slot}/{payload}", "hostile_pickle", "hostile", {"payload": payload, "slot": slot, "cmd": "export"}) for slot in EXPORT_SLOTS]
        cases.append(Case(f"hostile_pickle/tie/zip_data_pkl/{payload}", "hostile_pickle", "hostile", {"payload": payload, "slot": "zip_data_pkl", "cmd": "tie"}))
    cases += [Case(f"hostile_pickle/tensor_view/{v}", "hostile_pickle", "tensor_view", {"view": v}) for v in TENSOR_VIEWS]
    for payload, slot, cmd in SUBPROCESS_PICKLES:
        cases.append(Case(f"hostile_pickle/subprocess/{cmd}/{slot}/{payload}", "hostile_pickle", "hostile", {"payload": payload, "slot": slot, "cmd": cmd}, mode="subprocess"))
    return cases


def _paths() -> list[Case]:
    cases = [Case(f"path_tricks/{t}", "path_tricks", "path_trick", {"trick": t}) for t in PATH_TRICKS]
    cases += [Case(f"path_tricks/subprocess/{t}", "path_tricks", "path_trick", {"trick": t}, mode="subprocess") for t in SUBPROCESS_TRICKS]
    return cases


def all_cases() -> list[Case]:
    cases = _truncation() + _headers() + _protobuf() + _pickles() + _paths()
    ids = [c.id for c in cases]
    assert len(ids) == len(set(ids)), "case ids repeat"
    return cases
