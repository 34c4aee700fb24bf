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
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from sharescan.errors import InputError

__all__ = ["mapped_reader", "MappedRead", "FileRange", "file_range", "located", "range_reader", "FileWindow", "pread_exactly", "changed_while_read", "file_blocks"]

_PAGE = mmap.ALLOCATIONGRANULARITY
_POPULATE = getattr(mmap, "MAP_POPULATE", 0)  # Linux only
# Tensors up to this size are read through the file's window (FileWindow).
_SHARED_BYTES = 4096
# A window with up to this many small tensors reads each with pread (an
# open, a read and a close: about 3 us, 12 ms for all of them); more share
# one mapping of the file.
_PREAD_SMALL = 4096


@dataclass(frozen=True)
class FileRange:
    """Where a tensor's bytes lie, contiguous and in C order, in a file.

    A reader that carries one lets a scan stream the bytes through a small
    buffer (``os.preadv``) instead of mapping the whole tensor: the pages of
    a memory-mapped tensor count towards the process's resident memory until
    it is unmapped, a reused buffer does not grow.
    """

    path: Path
    offset: int  # first byte of the tensor in the file
    nbytes: int


def pread_exactly(fd: int, into: memoryview, offset: int, where: FileRange) -> None:
    """Fill ``into`` from byte ``offset`` of the open file ``fd`` (``where`` names it in the error).

    Raises:
        InputError: the file ends before (it changed since it was opened).
    """
    if os.preadv(fd, [into], offset) != len(into):
        raise changed_while_read(where.path, where.offset + where.nbytes)


def file_blocks(where: FileRange, block: int, span: tuple[int, int] | None = None) -> Iterator[np.ndarray]:
    """The range's bytes (or those of ``span`` within it) as uint8 arrays of ``block`` bytes (the last shorter).

    Read with ``preadv`` into one buffer: a pass over a large tensor leaves
    nothing resident, where its mapped pages would count until unmapped. A
    block is valid until the next one is produced.
    """
    first, end = span if span is not None else (0, where.nbytes)
    buf = np.empty(max(0, min(block, end - first)), dtype=np.uint8)
    whole = memoryview(buf.data)
    fd = os.open(where.path, os.O_RDONLY)
    try:
        for start in range(first, end, block):
            n = min(block, end - start)
            pread_exactly(fd, whole[:n], where.offset + start, where)
            yield buf[:n]
    finally:
        os.close(fd)


def changed_while_read(path: Path, end: int) -> InputError:
    """The error for a file that ends before byte ``end`` it had when it was opened or checked."""
    return InputError(f"{path}: the file changed while it was read (it ends before byte {end}); analyse it again")


class _RangeRead:
    """A reader of ``shape`` elements of ``storage`` dtype lying contiguous at ``offset`` of ``path``."""

    __slots__ = ("file_range", "storage", "shape", "count")

    def __init__(self, path: Path, offset: int, storage: str, shape: tuple[int, ...]) -> None:
        count = 1
        for d in shape:
            count *= d
        self.storage = storage
        self.shape = shape
        self.count = count
        self.file_range = FileRange(path, offset, count * np.dtype(storage).itemsize)


class MappedRead(_RangeRead):
    """Reads ``shape`` elements of ``storage`` dtype at ``offset`` of ``path``, memory-mapped.

    Called, it maps just the tensor's pages and returns a plain ndarray over
    them; the mapping goes away with the last reference to the array.
    """

    __slots__ = ()

    def __call__(self, populate: bool = True) -> np.ndarray:
        """The tensor; ``populate=False`` maps its pages only as they are touched (for sparse reads)."""
        path, offset, nbytes = self.file_range.path, self.file_range.offset, self.file_range.nbytes
        if nbytes == 0:
            return np.zeros(self.shape, dtype=self.storage)
        start = offset - offset % _PAGE
        fd = os.open(path, os.O_RDONLY)
        try:
            # Pre-faulting the whole range in one call is far cheaper than a
            # page fault per 4 KiB when the tensor is then read through.
            flags = mmap.MAP_SHARED | (_POPULATE if populate else 0)
            region = mmap.mmap(fd, offset - start + nbytes, flags=flags, prot=mmap.PROT_READ, offset=start)
        except ValueError:  # mmap refuses a range past the end: the file shrank since it was opened or checked
            raise changed_while_read(path, offset + nbytes) from None
        finally:
            os.close(fd)  # the mapping keeps the file open
        return np.frombuffer(region, dtype=self.storage, count=self.count, offset=offset - start).reshape(self.shape)


def mapped_reader(path: Path, offset: int, storage: str, shape: tuple[int, ...]) -> MappedRead:
    """A function that maps ``shape`` elements of ``storage`` dtype at ``offset`` of ``path``."""
    return MappedRead(path, offset, storage, shape)


def file_range(read: Callable[..., np.ndarray]) -> FileRange | None:
    """Where the tensor a reader returns lies in its file, for a reader that maps it (worth streaming); None otherwise."""
    return read.file_range if isinstance(read, MappedRead) else None


def located(read: Callable[..., np.ndarray]) -> tuple[FileRange, str] | None:
    """Where the tensor a reader returns lies, and its storage dtype, for any reader of one contiguous range of a file.

    A zoo's join reads such a tensor again from these alone (``range_reader``),
    without reopening its model.
    """
    if isinstance(read, _RangeRead):
        return read.file_range, read.storage
    return None


def range_reader(path: Path, offset: int, storage: str, shape: tuple[int, ...], window: FileWindow | None = None) -> Callable[[], np.ndarray]:
    """A reader of ``shape`` elements of ``storage`` dtype at ``offset`` of ``path``: mapped, or, when small, read
    with pread (or through ``window``'s mapping of the whole file, see ``FileWindow``)."""
    small = _SmallRead(path, offset, storage, shape, window)
    if small.file_range.nbytes > _SHARED_BYTES or small.count == 0:
        return mapped_reader(path, offset, storage, shape)
    if window is not None:
        window._small += 1
    return small


class _SmallRead(_RangeRead):
    """Reads a small tensor with one pread, or as a view into its window's mapping of the whole file."""

    __slots__ = ("window",)

    def __init__(self, path: Path, offset: int, storage: str, shape: tuple[int, ...], window: FileWindow | None) -> None:
        super().__init__(path, offset, storage, shape)
        self.window = window

    def __call__(self) -> np.ndarray:
        path, offset, nbytes = self.file_range.path, self.file_range.offset, self.file_range.nbytes
        if self.window is None or self.window._small <= _PREAD_SMALL:
            fd = os.open(path, os.O_RDONLY)
            try:
                data = os.pread(fd, nbytes, offset)
            finally:
                os.close(fd)
            if len(data) < nbytes:
                raise changed_while_read(path, offset + nbytes)
            return np.frombuffer(data, dtype=self.storage, count=self.count).reshape(self.shape)
        whole = self.window._whole()
        if offset + nbytes > len(whole):  # the file shrank after it was checked
            raise changed_while_read(path, offset + nbytes)
        return np.frombuffer(whole, dtype=self.storage, count=self.count, offset=offset).reshape(self.shape)


class FileWindow:
    """Readers for the tensors of one file; small tensors share one mapping.

    A file of many small tensors is mapped once, on the first small read,
    and small tensors are views into it: a mapping per tensor costs an open,
    an mmap, a close, a page fault and an munmap, which for a file of a
    million 16-byte tensors is most of the run. A file of few small tensors
    (norms and biases between large matrices) reads each with one ``pread``
    instead: a fault in a mapping maps the whole page-cache folio around the
    tensor (up to 2 MiB of its large neighbours), and those pages stay
    resident with the mapping (53 MiB for GPT-2's 98 biases). Large tensors
    keep a mapping of their own, released with the array.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self._map: mmap.mmap | None = None
        self._lock = threading.Lock()
        self._small = 0  # small tensors given a reader: decides mapping or pread

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

    def reader(self, offset: int, storage: str, shape: tuple[int, ...]) -> Callable[[], np.ndarray]:
        """A function that reads ``shape`` elements of ``storage`` dtype at ``offset``."""
        return range_reader(self.path, offset, storage, shape, self)
