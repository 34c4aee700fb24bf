"""Memory-mapped tensor reads shared by the safetensors and ONNX loaders.

Each read maps just the tensor's pages and returns a plain ndarray over them;
the mapping goes away with the last reference to the array, so scanning a
model larger than RAM keeps only the tensors in use resident.
"""

from __future__ import annotations

import mmap
import os
from collections.abc import Callable
from pathlib import Path

import numpy as np

__all__ = ["mapped_reader"]

_PAGE = mmap.ALLOCATIONGRANULARITY
_POPULATE = getattr(mmap, "MAP_POPULATE", 0)  # Linux only


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
