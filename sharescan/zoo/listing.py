"""Which models a zoo holds: a folder walked for model files and folders, or a manifest of paths.

Deciding what is a model uses names and ``stat`` only (a ``.bin`` beside an
ONNX file is peeked at: it may be that model's external data), so listing an
unchanged zoo again reads no model file.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path

from sharescan.errors import InputError

__all__ = ["ZooListing", "list_zoo", "default_store_path", "MODEL_SUFFIXES", "STORE_SUFFIX"]

logger = logging.getLogger(__name__)

# Files read as one model each (sharescan.sources decides the format).
MODEL_SUFFIXES = (".safetensors", ".onnx", ".pt", ".pth", ".bin", ".ckpt", ".pt2")
# A folder holding one of these is one Hugging Face model: its files are not listed on their own.
_FOLDER_MARKERS = ("model.safetensors.index.json", "pytorch_model.bin.index.json")
_FOLDER_WEIGHTS = ("model.safetensors", "pytorch_model.bin")
STORE_SUFFIX = ".sharescan.sqlite"
_TORCH_MAGIC = (b"PK\x03\x04", b"\x80")  # a zip checkpoint, or a pickle protocol marker


@dataclass(frozen=True)
class ZooListing:
    paths: tuple[str, ...]  # the models, as reports name them, in a stable order
    default_store: Path  # beside the folder, or in the manifest's folder


def default_store_path(target: Path) -> Path:
    """``ROOT.sharescan.sqlite`` beside a folder; ``<manifest stem>.sharescan.sqlite`` beside a manifest."""
    resolved = target.resolve()
    if resolved.is_dir():
        return resolved.parent / f"{resolved.name or 'zoo'}{STORE_SUFFIX}"
    return resolved.parent / f"{resolved.stem}{STORE_SUFFIX}"


def list_zoo(target: str) -> ZooListing:
    """The models of a folder (walked) or a manifest (one path per line, ``#`` comments).

    Raises:
        InputError: the target is missing, is a model file itself, or lists no model.
    """
    path = Path(target)
    if not path.exists():
        raise InputError(f"{target}: no such folder or manifest; pass a folder of models or a text file listing model paths")
    if path.is_dir():
        paths = _walk(path)
        where = "under this folder"
    else:
        if path.suffix.lower() in MODEL_SUFFIXES:
            raise InputError(f"{target}: is a model file; zoo takes a folder of models or a manifest listing them (for single models use 'sharescan analyze')")
        paths = _read_manifest(path)
        where = "in this manifest"
    if not paths:
        raise InputError(f"{target}: no model found {where}; sharescan reads {', '.join(MODEL_SUFFIXES)} files and Hugging Face folders")
    return ZooListing(tuple(paths), default_store_path(path))


def is_model_folder(folder: Path, names: set[str]) -> bool:
    if any(m in names for m in _FOLDER_MARKERS):
        return True
    return "config.json" in names and any(w in names for w in _FOLDER_WEIGHTS)


def _walk(root: Path) -> list[str]:
    """Model files and folders under ``root``; a file reached twice (a symlink) is listed once, or its copies would look shared."""
    found: list[str] = []
    for folder, dirs, files in os.walk(root):
        here = Path(folder)
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        names = set(files)
        if here != root and is_model_folder(here, names):
            found.append(str(here))
            dirs[:] = []  # its shards and configs belong to it
            continue
        with_onnx = any(n.lower().endswith(".onnx") for n in names)
        for name in sorted(files):
            if name.startswith(".") or not name.lower().endswith(MODEL_SUFFIXES):
                continue
            if name.lower().endswith(".bin") and with_onnx and not _looks_like_torch(here / name):
                continue  # an ONNX model's external data, read with that model
            found.append(str(here / name))
    chosen: dict[str, str] = {}  # real path -> the path listed: the file's own path where it is reached that way
    for path in sorted(found):
        key = os.path.realpath(path)
        if key not in chosen or os.path.abspath(path) == key:
            if key in chosen:
                logger.info("%s is %s again; scanned once", chosen[key], path)
            chosen[key] = path
        else:
            logger.info("%s is %s again; scanned once", path, chosen[key])
    return sorted(chosen.values())


def _looks_like_torch(path: Path) -> bool:
    try:
        with path.open("rb") as f:
            head = f.read(4)
    except OSError:
        return True  # listed, so that the scan reports why it cannot be read
    return head.startswith(_TORCH_MAGIC)


def _read_manifest(manifest: Path) -> list[str]:
    try:
        text = manifest.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise InputError(f"{manifest}: not a text manifest (one model path per line); pass a folder or a text file") from None
    except OSError as e:
        raise InputError(f"{manifest}: cannot be read ({e.strerror}); check the path and its permissions") from None
    base = manifest.parent
    out: list[str] = []
    seen: set[str] = set()
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        entry = Path(line)
        shown = str(entry if entry.is_absolute() else base / entry)
        key = os.path.realpath(shown)
        if key in seen:
            logger.warning("%s:%d: %s is listed twice; scanned once", manifest, number, line)
            continue
        seen.add(key)
        out.append(shown)
    return out
