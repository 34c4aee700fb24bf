"""What one model's digest task hands back: the model's table and its digests, no tensor bytes.

A record carries everything the cross-model search needs to rebuild the
model's lazy parameter table (names, shapes, dtypes, storage keys) and the
digest of each storage, so the search runs from records alone and reads a
tensor only to confirm a candidate. Records are plain frozen dataclasses of
numbers, strings and small arrays: they pickle for a Dask worker and map
onto the store's rows.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # a rescan of an unchanged zoo reads records' stamps only: numpy stays unimported
    from sharescan.digest import Digest

__all__ = ["FileStamp", "TensorRecord", "ModelRecord", "STATUS_OK", "STATUS_SKIPPED"]

STATUS_OK = "ok"
STATUS_SKIPPED = "skipped"

# (path, size, mtime_ns) of one file a model reads: unchanged stamps mean an
# unchanged model, decided by stat alone, without opening the file.
FileStamp = tuple[str, int, int]


@dataclass(frozen=True)
class TensorRecord:
    name: str
    shape: tuple[int, ...]
    dtype: str
    storage: str
    storage_nbytes: int | None
    buffer: str | None
    span: tuple[int, int] | None
    digest: Digest | None  # only the first tensor of each storage (a unit) is digested
    # Where its bytes lie, contiguous and in C order: (index of the file in
    # the model's stamps, byte offset). The join reads it from there without
    # reopening the model. None: read through the model's loader.
    at: tuple[int, int] | None = None


@dataclass(frozen=True)
class ModelRecord:
    path: str  # as listed (the label reports use)
    stamps: tuple[FileStamp, ...]  # every file the model was read from, the path itself first
    status: str  # STATUS_OK or STATUS_SKIPPED
    reason: str = ""  # why a skipped model could not be read (one line)
    format: str = ""
    file_bytes: int = 0
    tensors: tuple[TensorRecord, ...] = ()
    files: tuple[str, ...] = ()
    reused: tuple[tuple[str, int], ...] = ()
    notes: tuple[str, ...] = ()

    @property
    def ok(self) -> bool:
        return self.status == STATUS_OK
