"""Where a command may write: never over anything it reads.

Every command that writes runs :func:`check_output` on each file it will
create before doing any work. An input is more than the path the user typed:
an ONNX model's external-data files, a sharded model's shards and index, every
file of a model folder, the snapshot a Hugging Face repo id or cache folder
stands for (its files are symlinks into the cache's blobs). Paths are compared resolved (symlinks, ``..``) and by
inode (hard links), so no spelling of a path lets an output replace the bytes
of an input. An ONNX output also writes ``<name>.data`` beside it when its
tensors go to external data; that file is checked too.
"""

from __future__ import annotations

import contextlib
import json
import os
import stat
import tempfile
from collections.abc import Iterator, Sequence
from pathlib import Path

from sharescan.errors import InputError

__all__ = ["check_output", "input_files", "companion_files", "atomic_path"]

# A model folder is listed to this depth: an HF snapshot keeps its files at the top.
_FOLDER_DEPTH = 2


def _key(path: Path) -> tuple[int, int] | None:
    try:
        st = os.stat(path)
    except (OSError, ValueError):
        return None
    return (st.st_dev, st.st_ino)


def _onnx_data_files(path: Path) -> list[Path]:
    """The external-data files an ONNX model names (main graph and subgraphs), read without its tensor bytes."""
    try:
        import onnx

        from sharescan.sources.onnx_layout import read_layout

        layout = read_layout(path)
        model = onnx.load_model_from_string(layout[0]) if layout is not None else onnx.load(str(path), load_external_data=False)
    except Exception:  # an unreadable model is refused by its loader, with its own message
        return []
    found: set[str] = set()
    graphs = [model.graph]
    while graphs:
        graph = graphs.pop()
        tensors = list(graph.initializer) + [a.t for n in graph.node for a in n.attribute if a.HasField("t")]
        for t in tensors:
            found.update(kv.value for kv in t.external_data if kv.key == "location")
        for n in graph.node:
            for a in n.attribute:
                if a.HasField("g"):
                    graphs.append(a.g)
                graphs.extend(a.graphs)
    return [path.parent / f for f in sorted(found) if f and "\x00" not in f]


def _index_shards(path: Path) -> list[Path]:
    try:
        weight_map = json.loads(path.read_text(encoding="utf-8"))["weight_map"]
        names = weight_map.values() if isinstance(weight_map, dict) else []
        return [path.parent / n for n in names if isinstance(n, str) and n and "\x00" not in n]
    except Exception:  # a malformed index is refused by its loader, with its own message
        return []


def input_files(inputs: Sequence[str | Path]) -> list[Path]:
    """Every file the commands read for these inputs: models, external data, shards, folder contents."""
    from sharescan.sources.hf import find_snapshot

    out: list[Path] = []
    for p in inputs:
        path = Path(p)
        out.append(path)
        try:
            # A repo id or a cache folder reads a snapshot: its files link into the cache's blobs/.
            snapshot = find_snapshot(str(p))
            folders = [f for f in (path, snapshot) if f is not None and f.is_dir()]
            for folder in folders:
                for depth in range(_FOLDER_DEPTH):
                    out.extend(q for q in folder.glob("/".join(["*"] * (depth + 1))) if q.is_file())
            if folders:
                continue
            if path.name.endswith(".index.json"):
                out.extend(_index_shards(path))
            elif path.suffix.lower() == ".onnx" and path.is_file():
                out.extend(_onnx_data_files(path))
        except OSError:
            continue
    return out


def companion_files(out: Path) -> list[Path]:
    """Files written beside an output: an ONNX model's external data."""
    return [out.parent / f"{out.name}.data"] if out.suffix.lower() == ".onnx" else []


def check_output(out: Path, inputs: Sequence[str | Path], option: str = "-o", in_place: bool | None = None) -> None:
    """Refuse an output that would overwrite any file an input reads, or that lies in a folder that cannot be written.

    ``in_place``: None where replacing an input is never allowed; else whether
    the user allowed it (the message then names ``--in-place``). In place, the
    model file and its own external data may be replaced, after verification.
    """
    if "\x00" in str(out):
        raise InputError(f"{str(out)!r}: a path may not hold a NUL byte; choose another {option}")
    read = input_files(inputs)
    by_path = {os.path.realpath(p): p for p in read}
    by_inode = {k: p for p in read if (k := _key(p)) is not None}
    hint = ", or pass --in-place to replace the input after verification" if in_place is not None else ""
    for target in [out, *companion_files(out)]:
        clash = by_path.get(os.path.realpath(target)) or by_inode.get(_key(target) or (-1, -1))
        if clash is None:
            continue
        if in_place and os.path.realpath(out) in {os.path.realpath(p) for p in inputs}:
            continue
        what = "is one of the input models" if target == out and Path(clash) in map(Path, inputs) else f"would overwrite {clash}, which the input reads"
        shown = out if target == out else f"{out} (its external data {target.name})"
        raise InputError(f"{shown}: {what}; choose another {option}{hint if target == out else ''}")
    parent = out.parent if str(out.parent) else Path(".")
    if not parent.is_dir() or not os.access(parent, os.W_OK):
        raise InputError(f"{out}: folder {parent} does not exist or is not writable; choose another {option}")
    for target in [out, *companion_files(out)]:
        try:
            st = os.lstat(target)
        except OSError:
            continue
        if stat.S_ISDIR(st.st_mode):
            raise InputError(f"{target}: is a folder; choose another {option}")
        if not stat.S_ISLNK(st.st_mode) and not os.access(target, os.W_OK):
            # An immutable or read-only file: renaming over it would fail after all the work.
            raise InputError(f"{target}: exists and cannot be replaced (read-only or immutable); remove it or choose another {option}")


@contextlib.contextmanager
def atomic_path(out: Path) -> Iterator[Path]:
    """A temporary path beside ``out``, renamed over it when the block succeeds, removed when it fails.

    The file gets the permissions a plain ``open()`` would give (mkstemp makes
    it owner-only): an output is an ordinary file.
    """
    fd, tmp = tempfile.mkstemp(prefix=f".{out.name}.", dir=out.parent if str(out.parent) else ".")
    os.close(fd)
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o666 & ~umask)
    try:
        yield Path(tmp)
        try:
            os.replace(tmp, out)
        except OSError as e:
            raise InputError(f"{out}: could not be written ({e.strerror}); check the folder's permissions or choose another path") from None
    finally:
        Path(tmp).unlink(missing_ok=True)
