"""The lazy parameter table every loader produces and every detector reads."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

__all__ = ["TensorEntry", "LoadedModel"]


@dataclass(frozen=True)
class TensorEntry:
    """One named tensor of one model; its bytes are read only on demand."""

    model: int  # index of the model in the analysis (order given by the user)
    name: str  # name in the file (state-dict key, initializer name, ...)
    shape: tuple[int, ...]
    dtype: str  # canonical name from sharescan.dtypes
    # Entries of one model with the same storage key are the same tensor in the
    # file (tied weights, safetensors' dropped names, ONNX Identity aliases):
    # the same bytes read the same way. Different views of one buffer (a slice,
    # a transpose) have different keys and the same ``buffer``.
    storage: str
    # Returns the tensor as a C-contiguous numpy array of the dtype's storage
    # type, memory-mapped where the format allows. Not compared or hashed.
    read: Callable[[], np.ndarray] = field(compare=False, hash=False, repr=False)
    # Bytes the file holds for the whole buffer, when it is more than this
    # tensor (a PyTorch view saves its entire storage). None: just nbytes.
    storage_nbytes: int | None = None
    # The buffer in the file this tensor is a view of (a PyTorch storage);
    # None: its own, named by ``storage``. Unique bytes count a buffer once.
    buffer: str | None = None
    # Bytes [start, end) of the buffer the view's elements lie in (gaps
    # included for a strided view). None: the whole of its own buffer.
    span: tuple[int, int] | None = None

    # Computed once, in __post_init__: detectors and the byte accounting ask
    # millions of times on models of many small tensors (a third of the time
    # at 10^6 tensors as properties; functools.cached_property takes a lock).
    numel: int = field(init=False, compare=False, repr=False)
    nbytes: int = field(init=False, compare=False, repr=False)

    def __post_init__(self) -> None:
        from sharescan.dtypes import DTYPES

        numel = math.prod(self.shape)
        object.__setattr__(self, "numel", numel)
        object.__setattr__(self, "nbytes", numel * DTYPES[self.dtype].itemsize)

    @property
    def stored_nbytes(self) -> int:
        return self.nbytes if self.storage_nbytes is None else self.storage_nbytes

    @property
    def buffer_key(self) -> str:
        return self.storage if self.buffer is None else self.buffer

    @property
    def byte_span(self) -> tuple[int, int]:
        return (0, self.stored_nbytes) if self.span is None else self.span



@dataclass(frozen=True)
class LoadedModel:
    path: str  # as the user gave it
    format: str  # "safetensors", "pytorch", "torchscript", "torch.export", "onnx", ...
    tensors: tuple[TensorEntry, ...]
    file_bytes: int  # bytes on disk of every file the model was read from
    # ONNX: initializers read by more than one node (already shared in the graph).
    reused: tuple[tuple[str, int], ...] = ()
    files: tuple[str, ...] = ()  # every file read: the model, shards, external data
    notes: tuple[str, ...] = ()  # what the loader inferred and the file does not say (a tied head); warnings
