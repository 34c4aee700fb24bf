"""Hugging Face models: repo ids read from the local cache, cache folders, and
heads that ``config.json`` ties to the input embedding.

A repo id (``org/name``, ``hf://org/name@revision``) is resolved in the local
Hugging Face cache only, through ``huggingface_hub`` with
``local_files_only=True``: nothing is downloaded and the network is never
touched. ``huggingface_hub`` is imported only when a repo id is given.

A cache folder (``models--org--name``) analyses as the snapshot ``refs/main``
points at, else its only snapshot.

transformers saves a checkpoint without its output head when
``tie_word_embeddings`` makes the head the input embedding (the head is
rebuilt from the embedding when the model loads). :func:`with_tied_head`
puts the head back as an alias of the embedding's storage, so the report
shows the tie that the model has at run time, and says that it did so.
"""

from __future__ import annotations

import logging
import os
import re
from dataclasses import dataclass
from pathlib import Path

from sharescan.errors import InputError
from sharescan.sources.files import regular_file, strict_json
from sharescan.table import LoadedModel, TensorEntry

__all__ = ["RepoRef", "repo_ref", "resolve_repo", "hub_cache_dir", "is_cache_folder", "cache_folder_snapshot", "find_snapshot", "with_tied_head", "TIED_HEADS", "TIED_BY_DEFAULT"]

logger = logging.getLogger(__name__)

PREFIX = "hf://"

# A repo id as the Hub allows it: letters, digits, '-', '_', '.'; at most 96 characters.
_NAME = r"[A-Za-z0-9][A-Za-z0-9._-]{0,95}"
_REPO_ID = re.compile(rf"(?:{_NAME}/)?{_NAME}")
# A bare ``dir/file.ext`` that does not exist is a mistyped path, not a repo id.
_FILE_SUFFIXES = (".safetensors", ".onnx", ".pt", ".pth", ".bin", ".ckpt", ".pt2", ".pkl", ".json", ".data")
# A revision (branch, tag or commit) names a file under refs/ or snapshots/: no path tricks.
_REVISION = re.compile(r"[A-Za-z0-9._-]{1,255}")

# Input embedding -> output head, as transformers' get_output_embeddings()
# names them in the checkpoint of each family's *ForCausalLM / *ForMaskedLM.
TIED_HEADS: dict[str, str] = {
    "transformer.wte.weight": "lm_head.weight",  # GPT-2, GPT-J, GPT-Neo, CodeGen
    "model.embed_tokens.weight": "lm_head.weight",  # Llama, Mistral, Qwen2, Gemma, Phi-3
    "model.decoder.embed_tokens.weight": "lm_head.weight",  # OPT
    "transformer.word_embeddings.weight": "lm_head.weight",  # BLOOM
    "model.shared.weight": "lm_head.weight",  # BART, mBART
    "shared.weight": "lm_head.weight",  # T5
    "gpt_neox.embed_in.weight": "embed_out.weight",  # GPT-NeoX, Pythia
    "bert.embeddings.word_embeddings.weight": "cls.predictions.decoder.weight",  # BERT
}

# model_types whose transformers config ties the head when config.json says
# nothing (their config class keeps PretrainedConfig's default of True, or
# sets True itself). Every other type is tied only by an explicit true: many
# (Llama, Mistral, Qwen2, GPT-NeoX) default to False.
TIED_BY_DEFAULT = frozenset({"gpt2", "bloom", "gemma", "gemma2"})

# config.json is a few KB; a larger one is not a model config.
_MAX_CONFIG = 10 * 1024 * 1024


@dataclass(frozen=True)
class RepoRef:
    repo_id: str  # "org/name" (or a legacy bare "name" after hf://)
    revision: str | None  # branch, tag or commit; None: main


def repo_ref(text: str) -> RepoRef | None:
    """The repo id ``text`` names, or None when it reads as a file path.

    Callers ask only for text that is not an existing path: a local path
    always wins. ``hf://`` marks a repo id; bare text must be ``org/name``
    with no model-file suffix. A malformed ``hf://`` id is refused.
    """
    explicit = text.startswith(PREFIX)
    body = text[len(PREFIX):] if explicit else text
    repo_id, at, revision = body.partition("@")
    well_formed = _REPO_ID.fullmatch(repo_id) is not None and "--" not in repo_id and ".." not in repo_id
    if not explicit and (not well_formed or "/" not in repo_id or repo_id.lower().endswith(_FILE_SUFFIXES)):
        return None
    if not well_formed or (at and _REVISION.fullmatch(revision) is None) or revision in (".", ".."):
        raise InputError(f"{text}: not a Hugging Face repo id; write hf://org/name or hf://org/name@revision")
    return RepoRef(repo_id, revision if at else None)


def hub_cache_dir() -> Path:
    """The Hugging Face cache, read from the environment now (huggingface_hub reads it once, at import)."""
    env = os.environ
    for var in ("HF_HUB_CACHE", "HUGGINGFACE_HUB_CACHE"):
        if env.get(var):
            return Path(env[var]).expanduser()
    if env.get("HF_HOME"):
        return Path(env["HF_HOME"]).expanduser() / "hub"
    from huggingface_hub import constants

    return Path(constants.HF_HUB_CACHE)


def resolve_repo(ref: RepoRef, shown: str) -> Path:
    """The snapshot folder of ``ref`` in the local cache; InputError when it is not there."""
    try:
        from huggingface_hub import snapshot_download
    except ImportError:
        raise InputError(f"{shown}: reading a Hugging Face repo id needs huggingface_hub; pip install 'huggingface_hub>=0.23', or pass the model's folder") from None
    cache = hub_cache_dir()
    try:
        # local_files_only: the cache is read, nothing is asked of the network.
        folder = snapshot_download(ref.repo_id, revision=ref.revision, cache_dir=str(cache), local_files_only=True)
    except Exception as e:  # LocalEntryNotFoundError, IncompleteSnapshotError, an unreadable cache (repo_ref already checked the id)
        where = "no such file or folder, and " if not shown.startswith(PREFIX) else ""
        at = f" at revision {ref.revision}" if ref.revision else ""
        logger.debug("snapshot_download(%s): %r", ref.repo_id, e)
        raise InputError(
            f"{shown}: {where}Hugging Face model {ref.repo_id}{at} is not in the local cache ({cache}); sharescan never downloads: "
            f"fetch it where there is network with `hf download {ref.repo_id}` (`huggingface-cli download {ref.repo_id}` before huggingface_hub 1.0), or set HF_HUB_CACHE to the cache that holds it"
        ) from None
    return Path(str(folder))


def is_cache_folder(path: Path) -> bool:
    """A repo's folder in the Hugging Face cache: ``models--org--name`` holding ``snapshots/``."""
    return path.name.startswith("models--") and (path / "snapshots").is_dir()


def cache_folder_snapshot(path: Path) -> Path:
    """The snapshot a cache folder stands for: the one refs/main names, else the only one."""
    snapshots = path / "snapshots"
    ref = path / "refs" / "main"
    if ref.is_file():
        regular_file(ref)
        with ref.open("rb") as f:
            commit = f.read(256).decode("utf-8", "replace").strip()
        if _REVISION.fullmatch(commit) and commit not in (".", "..") and (snapshots / commit).is_dir():
            return snapshots / commit
    found = sorted(p.name for p in snapshots.iterdir() if p.is_dir())
    if len(found) == 1:
        return snapshots / found[0]
    if not found:
        raise InputError(f"{path}: cache folder holds no snapshot; download the model again")
    shown = ", ".join(found[:5]) + (f" and {len(found) - 5} more" if len(found) > 5 else "")
    raise InputError(f"{path}: refs/main names none of its {len(found)} snapshots ({shown}); pass one of them: {snapshots}/<commit>")


def find_snapshot(text: str) -> Path | None:
    """The snapshot folder an input reads, if it is a repo id or a cache folder; None otherwise or when it cannot be resolved."""
    path = Path(text)
    try:
        if path.exists():
            return cache_folder_snapshot(path) if path.is_dir() and is_cache_folder(path) else None
        ref = repo_ref(text)
        return resolve_repo(ref, text) if ref is not None else None
    except (InputError, OSError, ValueError):
        return None  # the loader refuses it, with its own message


def with_tied_head(loaded: LoadedModel, folder: Path) -> LoadedModel:
    """``loaded`` with the output head that ``folder/config.json`` ties to the embedding, when the checkpoint lacks it.

    The head is an alias of the embedding's storage (same storage key): unique
    bytes do not change; stored bytes count it, as for any tied name.
    """
    config, problem = _read_config(folder / "config.json")
    if problem is not None:
        return LoadedModel(loaded.path, loaded.format, loaded.tensors, loaded.file_bytes, loaded.reused, loaded.files, (*loaded.notes, problem))
    if config is None:
        return loaded
    tie = config.get("tie_word_embeddings")
    model_type = config.get("model_type")
    if tie is True:
        why = "config.json (tie_word_embeddings)"
    elif tie is None and model_type in TIED_BY_DEFAULT:
        why = f"config.json (model_type {model_type}: tie_word_embeddings defaults to true)"
    else:
        return loaded
    by_name = {e.name: e for e in loaded.tensors}
    added: list[TensorEntry] = []
    notes: list[str] = []
    for embedding, head in TIED_HEADS.items():
        src = by_name.get(embedding)
        if src is None or head in by_name:
            continue
        added.append(TensorEntry(src.model, head, src.shape, src.dtype, src.storage, src.read, src.storage_nbytes, src.buffer, src.span))
        notes.append(f"{loaded.path}: {head} is tied to {embedding} by {why}; not stored in the checkpoint, shown as an alias of it")
        by_name[head] = added[-1]
    if not added:
        return loaded
    return LoadedModel(loaded.path, loaded.format, loaded.tensors + tuple(added), loaded.file_bytes, loaded.reused, loaded.files, loaded.notes + tuple(notes))


def _read_config(path: Path) -> tuple[dict | None, str | None]:
    """The config as a dict (None: none there), and why it could not be read."""
    if not path.is_file():
        return None, None
    advice = "tied weights it declares are not shown"
    try:
        size = regular_file(path).st_size
        if size > _MAX_CONFIG:
            return None, f"{path}: {size:,} bytes, too large for a model config; {advice}"
        config = strict_json(path.read_bytes(), str(path), "config.json", advice)
    except InputError as e:
        # The weights are still read; only the ties the config declares are unknown.
        return None, str(e)
    except OSError as e:
        return None, f"{path}: cannot be read ({e.__class__.__name__}); {advice}"
    if not isinstance(config, dict):
        return None, f"{path}: not a JSON object; {advice}"
    return config, None
