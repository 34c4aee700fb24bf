"""One model's digest task: load it, digest each storage once, hand back a record.

Runs wherever the scheduler puts it (a Dask worker process, or the calling
process with ``--scheduler none``). It never raises for a bad model: a model
that cannot be read comes back as a skipped record with its reason, so one
broken file never stops the scan.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from sharescan.errors import SharescanError, one_line
from sharescan.zoo.records import STATUS_OK, STATUS_SKIPPED, FileStamp, ModelRecord, TensorRecord

if TYPE_CHECKING:
    from sharescan.table import TensorEntry

__all__ = ["DigestOptions", "digest_model", "stamps_of", "current_stamps"]

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class DigestOptions:
    key: str | None = None  # dotted path into nested PyTorch checkpoints
    trust_pickle: bool = False  # let PyTorch files unpickle arbitrary objects (runs code)
    threads: int = 2  # digest threads inside the task (1 when a cluster runs one task per core)


def stamps_of(paths: Iterable[str]) -> tuple[FileStamp, ...]:
    """(path, size, mtime_ns) of each path, in order, once each; a missing one stamps as (path, -1, -1)."""
    out: list[FileStamp] = []
    seen: set[str] = set()
    for p in paths:
        if p in seen:
            continue
        seen.add(p)
        try:
            st = os.stat(p)
            out.append((p, st.st_size, st.st_mtime_ns))
        except (OSError, ValueError):
            out.append((p, -1, -1))
    return tuple(out)


def current_stamps(record: ModelRecord) -> tuple[FileStamp, ...]:
    """The stamps the record's files have now (stat only): equal to ``record.stamps`` when nothing changed."""
    return stamps_of(p for p, _, _ in record.stamps)


def _unreadable_stamps(path: str) -> tuple[FileStamp, ...]:
    """A skipped model's stamps: the path, and for a folder its files (a fixed config.json is noticed)."""
    files = [path]
    if os.path.isdir(path):
        try:
            files += sorted(os.path.join(path, n) for n in os.listdir(path))
        except OSError:
            pass
    return stamps_of(files)


def digest_model(path: str, options: DigestOptions = DigestOptions()) -> ModelRecord:
    """Load ``path`` and digest every storage once; never raises for an unreadable model."""
    import numpy as np  # here: the scan imports this module for stamps_of, and a rescan needs no numpy

    try:
        with np.errstate(all="ignore"):
            return _digest(path, options)
    except SharescanError as e:
        return ModelRecord(path, _unreadable_stamps(path), STATUS_SKIPPED, _without_path(e.message, path))
    except MemoryError:
        return ModelRecord(path, _unreadable_stamps(path), STATUS_SKIPPED, "out of memory while reading it")
    except Exception as e:  # a corrupt file can fail deep inside a parser: reported, the scan goes on
        text = one_line(e, 1000)
        return ModelRecord(path, _unreadable_stamps(path), STATUS_SKIPPED, f"cannot be read ({e.__class__.__name__}{': ' + text if text else ''})")


def _locations(entries: Sequence[TensorEntry], stamps: tuple[FileStamp, ...]) -> list[tuple[int, int] | None]:
    """Each tensor's (stamp index, offset) where its reader reads one range of a stamped file, all of its bytes in the storage dtype its record implies; else None."""
    from sharescan.dtypes import DTYPES
    from sharescan.sources.mapped import located

    index: dict[str, int] = {}
    for i, (p, _, _) in enumerate(stamps):
        index.setdefault(os.path.realpath(p), i)
    real: dict[str, str] = {}
    out: list[tuple[int, int] | None] = []
    for e in entries:
        where = located(e.read)
        place = None
        if where is not None and where[1] == DTYPES[e.dtype].storage and where[0].nbytes == e.nbytes:
            path = str(where[0].path)
            if path not in real:
                real[path] = os.path.realpath(path)
            k = index.get(real[path])
            place = None if k is None else (k, where[0].offset)
        out.append(place)
    return out


def _without_path(message: str, path: str) -> str:
    """The reason alone: reports put the model's name before it already."""
    prefix = f"{path}: "
    return message[len(prefix):] if message.startswith(prefix) else message


def _digest(path: str, options: DigestOptions) -> ModelRecord:
    from sharescan.detect.aliased import find_aliased
    from sharescan.digest import compute_digests
    from sharescan.sources import LoadOptions, load_model

    loaded = load_model(path, 0, LoadOptions(key=options.key, trust_pickle=options.trust_pickle))
    if not loaded.tensors:
        hint = "check the file, or --key for a nested checkpoint" if loaded.format.startswith("pytorch") else "check that the file holds the model's weights"
        return ModelRecord(path, _unreadable_stamps(path), STATUS_SKIPPED, f"no tensors found in this {loaded.format} model; {hint}")
    # The same units and digests analyze computes for this model.
    _, units = find_aliased(loaded.tensors)
    digests = compute_digests(loaded.tensors, units, workers=options.threads)
    stamps = stamps_of([path, *loaded.files])
    at = _locations(loaded.tensors, stamps)
    tensors = tuple(
        TensorRecord(e.name, e.shape, e.dtype, e.storage, e.storage_nbytes, e.buffer, e.span, digests.get(i), at[i])
        for i, e in enumerate(loaded.tensors)
    )
    return ModelRecord(path, stamps, STATUS_OK, "", loaded.format, loaded.file_bytes, tensors, loaded.files, loaded.reused, loaded.notes)
