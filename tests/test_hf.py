"""Hugging Face models: repo ids read from a local cache built here (never the
network), ``models--org--name`` cache folders, and heads tied by config.json."""

from __future__ import annotations

import hashlib
import json
import os
import socket
from pathlib import Path

import numpy as np
import pytest

from sharescan.errors import InputError
from sharescan.outputs import check_output, input_files
from tests.helpers import run_cli, save_safetensors

COMMIT = "0123456789abcdef0123456789abcdef01234567"
GPT2_CONFIG = {"model_type": "gpt2", "tie_word_embeddings": True}


def _gpt2(seed: int = 0) -> dict[str, np.ndarray]:
    """A tiny GPT-2 as transformers saves GPT2LMHeadModel: lm_head.weight left out (tied)."""
    rng = np.random.default_rng(seed)
    return {
        "transformer.wte.weight": rng.standard_normal((50, 16), dtype=np.float32),
        "transformer.wpe.weight": rng.standard_normal((8, 16), dtype=np.float32),
        "transformer.h.0.attn.c_attn.weight": rng.standard_normal((16, 48), dtype=np.float32),
        "transformer.h.0.attn.c_attn.bias": rng.standard_normal(48, dtype=np.float32),
        "transformer.ln_f.weight": rng.standard_normal(16, dtype=np.float32),
    }


def _add_snapshot(repo: Path, commit: str, files: dict[str, bytes]) -> Path:
    """Files stored as the hub cache stores them: content in blobs/<sha256>, a relative symlink in snapshots/<commit>/."""
    snapshot = repo / "snapshots" / commit
    for name, data in files.items():
        sha = hashlib.sha256(data).hexdigest()
        blob = repo / "blobs" / sha
        blob.parent.mkdir(parents=True, exist_ok=True)
        blob.write_bytes(data)
        link = snapshot / name
        link.parent.mkdir(parents=True, exist_ok=True)
        link.symlink_to(os.path.relpath(blob, link.parent))
    return snapshot


def _cache(root: Path, repo_id: str = "org/name", tensors: dict[str, np.ndarray] | None = None, config: dict | None = None, commit: str = COMMIT, main: bool = True) -> Path:
    """A hub cache under ``root`` holding ``repo_id`` at ``commit`` (refs/main naming it when ``main``)."""
    repo = root / ("models--" + repo_id.replace("/", "--"))
    weights = save_safetensors(root / "weights.tmp", _gpt2() if tensors is None else tensors).read_bytes()
    (root / "weights.tmp").unlink()
    _add_snapshot(repo, commit, {"model.safetensors": weights, "config.json": json.dumps(GPT2_CONFIG if config is None else config).encode()})
    if main:
        (repo / "refs").mkdir(exist_ok=True)
        (repo / "refs" / "main").write_text(commit)
    return repo


@pytest.fixture
def hub(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """HF_HUB_CACHE pointing at an empty cache in tmp_path, and no network: any connection fails the test."""
    cache = tmp_path / "hub"
    cache.mkdir()
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")

    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("network touched")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    return cache


def _analyze_json(*args: str, cwd: Path | None = None) -> dict:
    proc = run_cli("analyze", *args, "--json", **({"cwd": cwd} if cwd else {}))
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


def _aliased_names(report: dict) -> list[set[str]]:
    return [{m["name"] for m in g["members"]} for g in report["groups"] if g["relation"] == "aliased"]


def test_repo_id_reads_the_local_cache_and_reports_the_config_tie(hub: Path) -> None:
    _cache(hub)
    report = _analyze_json("org/name")
    assert _aliased_names(report) == [{"transformer.wte.weight", "lm_head.weight"}]
    model = report["models"][0]
    assert model["path"] == "org/name"
    stored = sum(a.nbytes for a in _gpt2().values())
    # The head adds a name, not bytes: unique bytes are the file's; stored bytes count the tied name too.
    assert model["unique_bytes"] == stored
    assert model["stored_bytes"] == stored + 50 * 16 * 4
    assert any("lm_head.weight is tied to transformer.wte.weight by config.json (tie_word_embeddings)" in w for w in report["warnings"])


def test_tie_warning_is_one_stderr_line(hub: Path) -> None:
    _cache(hub)
    proc = run_cli("analyze", "org/name")
    assert proc.returncode == 0, proc.stderr
    lines = [line for line in proc.stderr.splitlines() if "lm_head.weight" in line]
    assert len(lines) == 1 and lines[0].startswith("warning: ") and "not stored in the checkpoint" in lines[0]


def test_missing_repo_is_one_line_that_says_how_to_download(hub: Path) -> None:
    for text in ("org/absent", "hf://org/absent"):
        proc = run_cli("analyze", text)
        assert proc.returncode == 2
        assert proc.stdout == ""
        lines = proc.stderr.splitlines()
        assert len(lines) == 1 and lines[0].startswith(f"error: {text}: ")
        assert "org/absent is not in the local cache" in lines[0] and str(hub) in lines[0]
        assert "hf download org/absent" in lines[0] and "huggingface-cli download org/absent" in lines[0]
        assert "Traceback" not in proc.stderr


def test_missing_file_path_is_not_mistaken_for_a_repo(hub: Path) -> None:
    proc = run_cli("analyze", "nowhere/model.safetensors")
    assert proc.returncode == 2
    assert proc.stderr.strip() == "error: nowhere/model.safetensors: no such file or folder; check the path"


def test_hf_uri_with_and_without_revision(hub: Path) -> None:
    _cache(hub)
    assert _aliased_names(_analyze_json("hf://org/name")) == [{"transformer.wte.weight", "lm_head.weight"}]
    assert _aliased_names(_analyze_json(f"hf://org/name@{COMMIT}")) == [{"transformer.wte.weight", "lm_head.weight"}]
    assert _aliased_names(_analyze_json("hf://org/name@main")) == [{"transformer.wte.weight", "lm_head.weight"}]
    proc = run_cli("analyze", "hf://org/name@v2")
    assert proc.returncode == 2 and "org/name at revision v2 is not in the local cache" in proc.stderr
    proc = run_cli("analyze", "hf://org/../etc")
    assert proc.returncode == 2 and proc.stderr.startswith("error: hf://org/../etc: not a Hugging Face repo id")


def test_revision_picks_its_snapshot(hub: Path) -> None:
    repo = _cache(hub)
    other = "f" * 40
    weights = save_safetensors(hub / "w.tmp", {"transformer.wte.weight": np.ones((4, 2), np.float32)}).read_bytes()
    _add_snapshot(repo, other, {"model.safetensors": weights})
    assert _analyze_json(f"hf://org/name@{other}")["models"][0]["unique_bytes"] == 32
    assert _analyze_json("org/name")["models"][0]["unique_bytes"] == sum(a.nbytes for a in _gpt2().values())


def test_cache_folder_is_read_as_the_snapshot_refs_main_names(hub: Path) -> None:
    repo = _cache(hub)
    report = _analyze_json(str(repo))
    assert _aliased_names(report) == [{"transformer.wte.weight", "lm_head.weight"}]
    assert report["models"][0]["path"] == str(repo)


def test_cache_folder_without_refs_main_uses_its_only_snapshot_and_refuses_several(hub: Path) -> None:
    repo = _cache(hub, main=False)
    assert _aliased_names(_analyze_json(str(repo))) == [{"transformer.wte.weight", "lm_head.weight"}]
    _add_snapshot(repo, "e" * 40, {"model.safetensors": (repo / "snapshots" / COMMIT / "model.safetensors").read_bytes()})
    proc = run_cli("analyze", str(repo))
    assert proc.returncode == 2
    lines = proc.stderr.splitlines()
    assert len(lines) == 1 and "refs/main names none of its 2 snapshots" in lines[0] and COMMIT in lines[0] and "e" * 40 in lines[0]


def test_local_path_wins_over_a_repo_id(hub: Path, tmp_path: Path) -> None:
    _cache(hub)
    local = tmp_path / "work" / "org" / "name"
    local.mkdir(parents=True)
    save_safetensors(local / "model.safetensors", {"w": np.arange(9, dtype=np.float32).reshape(3, 3)})
    report = _analyze_json("org/name", cwd=tmp_path / "work")
    assert report["models"][0]["unique_bytes"] == 36 and report["groups"] == []


@pytest.mark.parametrize(
    ("config", "tied"),
    [
        ({"model_type": "gpt2", "tie_word_embeddings": True}, True),
        ({"model_type": "gpt2"}, True),  # absent: GPT-2's config ties by default
        ({"model_type": "llama"}, False),  # absent: Llama's config does not tie
        ({"model_type": "gpt2", "tie_word_embeddings": False}, False),
        ({"model_type": "llama", "tie_word_embeddings": True}, True),
    ],
)
def test_head_is_tied_only_as_config_json_says(hub: Path, config: dict, tied: bool) -> None:
    _cache(hub, config=config)
    report = _analyze_json("org/name")
    assert (_aliased_names(report) == [{"transformer.wte.weight", "lm_head.weight"}]) is tied
    assert any("lm_head.weight is tied" in w for w in report["warnings"]) is tied


def test_a_stored_head_is_left_as_the_file_has_it(hub: Path) -> None:
    tensors = {**_gpt2(), "lm_head.weight": np.full((50, 16), 0.5, np.float32)}
    _cache(hub, tensors=tensors)
    report = _analyze_json("org/name")
    assert _aliased_names(report) == [] and not any("tied" in w for w in report["warnings"])


def test_llama_names_tie_embed_tokens_to_lm_head(hub: Path) -> None:
    tensors = {"model.embed_tokens.weight": np.ones((10, 4), np.float32), "model.norm.weight": np.arange(4, dtype=np.float32)}
    _cache(hub, tensors=tensors, config={"model_type": "llama", "tie_word_embeddings": True})
    assert _aliased_names(_analyze_json("org/name")) == [{"model.embed_tokens.weight", "lm_head.weight"}]


def test_unreadable_config_is_a_warning_not_a_refusal(hub: Path, tmp_path: Path) -> None:
    folder = tmp_path / "m"
    folder.mkdir()
    save_safetensors(folder / "model.safetensors", _gpt2())
    (folder / "config.json").write_text("{not json")
    report = _analyze_json(str(folder))
    assert _aliased_names(report) == []
    assert any("corrupt config.json" in w and "tied weights it declares are not shown" in w for w in report["warnings"])


def test_sharded_model_in_the_cache_reads_shards_from_blobs(hub: Path) -> None:
    tensors = _gpt2()
    names = list(tensors)
    parts = {"model-00001-of-00002.safetensors": names[:2], "model-00002-of-00002.safetensors": names[2:]}
    files = {"config.json": json.dumps(GPT2_CONFIG).encode()}
    for shard, part in parts.items():
        files[shard] = save_safetensors(hub / "s.tmp", {n: tensors[n] for n in part}).read_bytes()
    files["model.safetensors.index.json"] = json.dumps({"weight_map": {n: s for s, part in parts.items() for n in part}}).encode()
    repo = hub / "models--org--sharded"
    _add_snapshot(repo, COMMIT, files)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(COMMIT)
    report = _analyze_json("org/sharded")
    assert report["models"][0]["format"] == "safetensors-sharded"
    assert _aliased_names(report) == [{"transformer.wte.weight", "lm_head.weight"}]


def test_input_files_list_the_snapshot_and_its_blobs(hub: Path, tmp_path: Path) -> None:
    repo = _cache(hub)
    link = repo / "snapshots" / COMMIT / "model.safetensors"
    blob = link.resolve()
    assert blob.parent == repo / "blobs"
    for given in ("org/name", "hf://org/name", str(repo)):
        listed = {os.path.realpath(p) for p in input_files([given])}
        assert str(blob) in listed and str((repo / "snapshots" / COMMIT / "config.json").resolve()) in listed
        for target in (link, blob):
            with pytest.raises(InputError, match="which the input reads"):
                check_output(target, [given])
    hard = tmp_path / "hard.safetensors"
    os.link(blob, hard)  # another name for the blob's bytes: caught by inode
    with pytest.raises(InputError, match="which the input reads"):
        check_output(hard, ["org/name"])


def test_report_may_not_overwrite_a_cache_blob(hub: Path) -> None:
    repo = _cache(hub)
    card = _add_snapshot(repo, COMMIT, {"README.md": b"# model card\n"}) / "README.md"
    before = card.resolve().read_bytes()
    for given in ("org/name", str(repo)):
        proc = run_cli("analyze", given, "--report", str(card))
        assert proc.returncode == 2 and "which the input reads" in proc.stderr and len(proc.stderr.splitlines()) == 1
        assert card.is_symlink() and card.resolve().read_bytes() == before


def test_safetensors_imports_neither_torch_nor_huggingface_hub(tmp_path: Path) -> None:
    import subprocess
    import sys

    from tests.conftest import ROOT

    path = save_safetensors(tmp_path / "m.safetensors", _gpt2())
    code = f"import sys\nfrom sharescan.cli import cli\ntry:\n    cli.main(['analyze', {str(path)!r}, '--json'], standalone_mode=False)\nexcept SystemExit:\n    pass\nprint('\\n'.join(sys.modules))\n"
    proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    modules = set(proc.stdout.split())
    assert "sharescan.analysis" in modules
    assert "torch" not in modules and "huggingface_hub" not in modules


def test_shard_linked_into_another_repos_blobs_is_refused(hub: Path) -> None:
    other = _cache(hub, repo_id="org/other")
    outside = (other / "snapshots" / COMMIT / "model.safetensors").resolve()
    tensors = _gpt2()
    files = {"model.safetensors.index.json": json.dumps({"weight_map": {n: "model-00001-of-00001.safetensors" for n in tensors}}).encode()}
    repo = hub / "models--org--sharded"
    snapshot = _add_snapshot(repo, COMMIT, files)
    (snapshot / "model-00001-of-00001.safetensors").symlink_to(outside)
    proc = run_cli("analyze", str(repo))
    assert proc.returncode == 2 and "leaves the model folder" in proc.stderr and len(proc.stderr.splitlines()) == 1
