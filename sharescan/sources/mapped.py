"""Memory-mapped tensor reads shared by the safetensors and ONNX loaders.

Each read maps just the tensor's pages and returns a plain ndarray over them;
the mapping goes away with the last reference to the array, so scanning a
model larger than RAM keeps only the tensors in use resident.

Small tensors are views into one mapping of their whole file instead
(``FileWindow``).
"""

from __future__ import annotations

import mmap
import os
import threading
from collections.abc import Callable
from pathlib import Path

import numpy as np

from sharescan.errors import InputError

__all__ = ["mapped_reader", "FileWindow"]

_PAGE = mmap.ALLOCATIONGRANULARITY
_POPULATE = getattr(mmap, "MAP_POPULATE", 0)  # Linux only
# Tensors up to this size are views into one mapping of the whole file.
_SHARED_BYTES = 64 * 1024


def mapped_reader(path: Path, offset: int, storage: str, shape: tuple[int, ...]) -> Callable[[], np.ndarray]:
    """A function that maps ``shape`` elements of ``storage`` dtype at ``offset`` of ``path``."""
    count = 1
    for d in shape:
        count *= d
    nbytes = count * np.dtype(storage).itemsize

    def read() -> np.ndarray:
        if nbytes == 0:
            return np.zeros(shape, dtype=storage)
        start = offset - offset % _PAGE
        fd = os.open(path, os.O_RDONLY)
        try:
            # Pre-faulting the whole range in one call is far cheaper than a
            # page fault per 4 KiB when the tensor is then read through.
            region = mmap.mmap(fd, offset - start + nbytes, flags=mmap.MAP_SHARED | _POPULATE, prot=mmap.PROT_READ, offset=start)
        finally:
            os.close(fd)  # the mapping keeps the file open
        return np.frombuffer(region, dtype=storage, count=count, offset=offset - start).reshape(shape)

    return read


class FileWindow:
    """Readers for the tensors of one file; small tensors share one mapping.

    The whole file is mapped once, on the first small read, and small
    tensors are views into it: a mapping per tensor costs an open, an mmap,
    a close, a page fault and an munmap, which for a file of a million
    16-byte tensors is most of the run. Only the pages of small tensors are
    touched through it; large tensors keep a mapping of their own, released
    with the array.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self._map: mmap.mmap | None = None
        self._lock = threading.Lock()

    def _whole(self) -> mmap.mmap:
        if self._map is None:
            with self._lock:
                if self._map is None:
                    fd = os.open(self.path, os.O_RDONLY)
                    try:
                        self._map = mmap.mmap(fd, 0, flags=mmap.MAP_SHARED, prot=mmap.PROT_READ)
                    finally:
                        os.close(fd)
        return self._map

    def reader(self, offset: int, storage: str, shape: tuple[int, ...], itemsize: int) -> Callable[[], np.ndarray]:
        """A function that maps ``shape`` elements of ``storage`` dtype (``itemsize`` bytes each) at ``offset``."""
        count = 1
        for d in shape:
            count *= d
        if count * itemsize > _SHARED_BYTES or count == 0:
            return mapped_reader(self.path, offset, storage, shape)

        def read() -> np.ndarray:
            whole = self._whole()
            if offset + count * itemsize > len(whole):  # the file shrank after it was checked
                raise InputError(f"{self.path}: the file changed while it was read (it ends before byte {offset + count * itemsize}); analyse it again")
            return np.frombuffer(whole, dtype=storage, count=count, offset=offset).reshape(shape)

        return read
