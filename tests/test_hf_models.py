"""transformers models given as a folder, a cache folder or a repo id: tie and export build
them with transformers (no user code), feed inputs by name and use the logits."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import safetensors.torch
import torch
import transformers  # the dev extra installs it; users install sharescan[hf]

from tests.helpers import run_cli
from tests.test_hf import COMMIT, hub  # noqa: F401  (hub: HF_HUB_CACHE in tmp_path, HF_HUB_OFFLINE=1, any connection fails)


@pytest.fixture(scope="module")
def tiny_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny GPT-2 (2 blocks, 32 wide) as save_pretrained writes it, built with a fixed seed."""
    torch.manual_seed(0)
    config = transformers.GPT2Config(n_layer=2, n_embd=32, n_head=2, vocab_size=64, n_positions=32, bos_token_id=0, eos_token_id=0)
    folder = tmp_path_factory.mktemp("tiny") / "tiny-gpt2"
    transformers.GPT2LMHeadModel(config).save_pretrained(str(folder))
    return folder


@pytest.fixture
def offline(hub: Path, tiny_folder: Path) -> Path:  # noqa: F811  (the fixture imported above)
    """The no-network cache of test_hf holding org/tiny (models--org--tiny/snapshots/<commit>, refs/main)."""
    snapshot = hub / "models--org--tiny" / "snapshots" / COMMIT
    shutil.copytree(tiny_folder, snapshot)
    (hub / "models--org--tiny" / "refs").mkdir()
    (hub / "models--org--tiny" / "refs" / "main").write_text(COMMIT)
    return hub


def _calib(path: Path, samples: int = 20, length: int = 16) -> Path:
    rng = np.random.default_rng(0)
    mask = np.ones((samples, length), dtype=np.int64)
    mask[::2, -4:] = 0  # right padding on half the rows: the mask must reach attention_mask, not a cache
    np.savez(path, input_ids=rng.integers(0, 64, (samples, length)).astype(np.int64), attention_mask=mask)
    return path


def test_analyze_repo_id_reports_lm_head_tied_to_wte(offline: Path) -> None:
    proc = run_cli("analyze", "org/tiny", "--json")
    assert proc.returncode == 0, proc.stderr
    groups = json.loads(proc.stdout)["groups"]
    names = [{m["name"] for m in g["members"]} for g in groups]
    assert any({"lm_head.weight", "transformer.wte.weight"} <= n for n in names), names


def test_tie_folder_distils_by_name_from_npz_and_saves_bytes(offline: Path, tiny_folder: Path, tmp_path: Path) -> None:
    calib = _calib(tmp_path / "calib.npz")
    out = tmp_path / "tied.safetensors"
    proc = run_cli("tie", str(tiny_folder), "--inputs", str(calib), "--groups", "A:transformer.h.1.* = A:transformer.h.0.*",
                   "--epochs", "2", "--finetune-shared", "1", "--max-drop", "100", "-o", str(out), "--json")
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout)
    assert out.is_file()
    assert result["bytes_after"] < result["bytes_before"]


def test_tie_repo_id_split_writes_a_folder_from_pretrained_reads(offline: Path, tmp_path: Path) -> None:
    calib = _calib(tmp_path / "calib.npz")
    out = tmp_path / "tied"
    proc = run_cli("tie", "org/tiny", "--inputs", str(calib), "--groups", "A:transformer.h.1.* = A:transformer.h.0.*",
                   "--epochs", "1", "--finetune-shared", "0", "--max-drop", "100", "--split", "-o", str(out))
    assert proc.returncode == 0, proc.stderr
    assert sorted(p.name for p in (out / "A").iterdir()) == ["config.json", "generation_config.json", "model.safetensors"]
    model = transformers.AutoModelForCausalLM.from_pretrained(str(out / "A"), local_files_only=True)
    state = safetensors.torch.load_file(str(out / "A" / "model.safetensors"))
    # Block 1 now holds block 0's weights: the tie survived, and from_pretrained read them as written.
    assert torch.equal(state["transformer.h.1.mlp.c_fc.weight"], state["transformer.h.0.mlp.c_fc.weight"])
    assert torch.equal(model.transformer.h[1].mlp.c_fc.weight, state["transformer.h.0.mlp.c_fc.weight"])


def test_export_folder_by_name_is_verified(offline: Path, tiny_folder: Path, tmp_path: Path) -> None:
    out = tmp_path / "m.onnx"
    proc = run_cli("export", str(tiny_folder), "-o", str(out), "--input", "input_ids:1x16:int64", "--no-ram", "--json")
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout)
    assert out.is_file()
    assert result["torch_vs_onnxruntime"]["max_abs_error"] < 1e-4


def test_export_cache_folder_feeds_attention_mask_by_name(offline: Path, tmp_path: Path) -> None:
    calib = _calib(tmp_path / "sample.npz", samples=1)
    out = tmp_path / "m.onnx"
    proc = run_cli("export", str(offline / "models--org--tiny"), "-o", str(out), "--inputs", str(calib), "--no-ram", "--json")
    assert proc.returncode == 0, proc.stderr
    import onnx

    assert {i.name for i in onnx.load(str(out), load_external_data=False).graph.input} == {"input_ids", "attention_mask"}
    assert json.loads(proc.stdout)["torch_vs_onnxruntime"]["max_abs_error"] < 1e-4


def test_remote_code_config_is_refused_without_trust_code(offline: Path, tiny_folder: Path, tmp_path: Path) -> None:
    folder = tmp_path / "remote"
    shutil.copytree(tiny_folder, folder)
    config = json.loads((folder / "config.json").read_text())
    config["auto_map"] = {"AutoModelForCausalLM": "modeling_evil.EvilModel"}
    (folder / "config.json").write_text(json.dumps(config))
    proc = run_cli("export", str(folder), "-o", str(tmp_path / "m.onnx"), "--input", "input_ids:1x16:int64")
    assert proc.returncode == 2
    assert proc.stderr.startswith("error: ") and "--trust-code" in proc.stderr and "Traceback" not in proc.stderr
    assert not (tmp_path / "m.onnx").exists()


def test_missing_transformers_names_the_extra(offline: Path, tiny_folder: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import sys

    monkeypatch.setitem(sys.modules, "transformers", None)  # import transformers now raises ImportError
    proc = run_cli("export", str(tiny_folder), "-o", str(tmp_path / "m.onnx"), "--input", "input_ids:1x16:int64")
    assert proc.returncode == 2
    assert "pip install 'sharescan[hf]'" in proc.stderr and len(proc.stderr.strip().splitlines()) == 1


def test_npz_keys_neither_inputs_nor_model_keys_are_refused_in_one_line(offline: Path, tiny_folder: Path, tmp_path: Path) -> None:
    calib = tmp_path / "bad.npz"
    np.savez(calib, tokens=np.zeros((4, 8), dtype=np.int64), mask=np.ones((4, 8), dtype=np.int64))
    proc = run_cli("tie", str(tiny_folder), "--inputs", str(calib), "--groups", "A:transformer.h.1.* = A:transformer.h.0.*", "-o", str(tmp_path / "t.safetensors"))
    assert proc.returncode == 2
    assert proc.stderr.startswith("error: ") and "input_ids" in proc.stderr and len(proc.stderr.strip().splitlines()) == 1

