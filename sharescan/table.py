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
    # Entries of one model with the same storage key are the same bytes in the
    # file (tied weights, safetensors' dropped names, ONNX Identity aliases).
    storage: str
    # Returns the tensor as a C-contiguous numpy array of the dtype's storage
    # type, memory-mapped where the format allows. Not compared or hashed.
    read: Callable[[], np.ndarray] = field(compare=False, hash=False, repr=False)
    # Bytes the file holds for the whole storage, when it is more than this
    # tensor (a PyTorch view saves its entire storage). None: just nbytes.
    storage_nbytes: int | None = None

    @property
    def numel(self) -> int:
        return math.prod(self.shape)

    @property
    def stored_nbytes(self) -> int:
        return self.nbytes if self.storage_nbytes is None else self.storage_nbytes

    @property
    def nbytes(self) -> int:
        from sharescan.dtypes import DTYPES

        return self.numel * DTYPES[self.dtype].itemsize


@dataclass(frozen=True)
class LoadedModel:
    path: str  # as the user gave it
    format: str  # "safetensors", "pytorch", "torchscript", "torch.export", "onnx", ...
    tensors: tuple[TensorEntry, ...]
    file_bytes: int  # bytes on disk of every file the model was read from
    # ONNX: initializers read by more than one node (already shared in the graph).
    reused: tuple[tuple[str, int], ...] = ()
    files: tuple[str, ...] = ()  # every file read: the model, shards, external data
