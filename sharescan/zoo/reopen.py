"""Reading one tensor of a scanned model again: where its record says it lies, or by reopening its model.

The join confirms candidates by reading tensors (a zoo's tensors are never
all in memory). A tensor whose bytes lie as one range of a file (every
tensor of the usual safetensors, ONNX and ``.pt`` files) is read from
there, once the file's size and modification time are seen unchanged;
any other is read through its model's loader, the model reopened from its
path. Used by the client for the detectors' reads, and by each worker
measuring pairs for it, which keeps its open models from one batch of pairs
to the next.
"""

from __future__ import annotations

import os
import threading
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from sharescan.detect.common import ArrayCache
from sharescan.errors import InputError
from sharescan.sources import LoadOptions, load_model
from sharescan.sources.mapped import range_reader
from sharescan.table import LoadedModel
from sharescan.zoo.records import FileStamp

__all__ = ["ModelRef", "ReadCounter", "Reopener"]

# Models kept open for confirming reads of tensors without a recorded place. An open model is its parsed header
# or graph and one lazy reader per tensor (tensor bytes stay in the file), so
# many fit; detectors confirm across models in their own order, and reopening
# a model per read cost more than the reads (27,634 reopenings for 28,453
# reads over 400 models with 4 kept open). Bounded by tensors held, and by
# file bytes: a loader may map a whole file, whose touched pages then count
# in the process's memory while the model stays open. At 256 MiB the 1,000
# models of the zoo benchmark (326 MiB of files) were reopened 1,896 times
# by the detectors' sweeps, 0.35 s of the join; at 512 MiB once each, with
# the same peak memory (their loaders map tensors, not whole files).
_OPEN_MODELS = 1024
_OPEN_TENSORS = 200_000
_OPEN_FILE_BYTES = 512 << 20
# Tensors kept after a confirming read. In a zoo of fine-tunes every copy of a
# layer is near every other, so the near search confirms each tensor against
# several crowd leaders: 188k reads of 8k tensors over 1,000 models, 4 s of a
# 17 s join, spent reopening and copying the same bytes.
_CACHED_BYTES = 128 << 20


# Where a tensor lies: (index of its file in the model's stamps, byte
# offset, storage dtype, shape).
Place = tuple[int, int, str, tuple[int, ...]]


@dataclass(frozen=True)
class ModelRef:
    """Where model ``k`` of a join lies, and the tensors its record lists (to notice a file changed since)."""

    path: str
    label: str  # as reports name it
    names: tuple[str, ...]
    stamps: tuple[FileStamp, ...] = ()  # its files as they were digested
    places: tuple[Place | None, ...] = ()  # per tensor: where it lies; None: read through the loader


class ReadCounter:
    """Tensors read to confirm candidates, models reopened for them, and the pairs measured."""

    def __init__(self) -> None:
        self.tensors = 0
        self.cached = 0  # of which answered from memory
        self.models_opened = 0
        self.pairs = 0  # candidate pairs whose exact distance was measured
        self.pairs_on_workers = 0  # of which measured on the cluster's workers
        self.measure_seconds = 0.0  # wall time of those measurements


class Reopener:
    """Reads tensor ``position`` of model ``k`` by reopening that model; many stay open, recent tensors stay in memory."""

    def __init__(self, options: LoadOptions, models: Mapping[int, ModelRef] = {}, counter: ReadCounter | None = None) -> None:
        self.options = options
        self.models = dict(models)
        self.counter = counter or ReadCounter()
        self.open: OrderedDict[int, LoadedModel] = OrderedDict()
        self.open_tensors = 0
        self.open_bytes = 0
        self.lock = threading.Lock()  # detectors may confirm from several threads
        self.cache = ArrayCache(_CACHED_BYTES)
        self.unchanged: set[tuple[int, int]] = set()  # (model, file) seen as digested

    def reader(self, k: int, position: int) -> Callable[[], np.ndarray]:
        return lambda: self.read(k, position)

    def read(self, k: int, position: int) -> np.ndarray:
        hit = self.cache.get((k, position))
        with self.lock:
            self.counter.tensors += 1
            if hit is not None:
                self.counter.cached += 1
        if hit is not None:
            return hit
        ref = self.models[k]
        place = ref.places[position] if position < len(ref.places) else None
        if place is not None:
            array = self._read_at(k, ref, place)
        else:
            array = self._read_loaded(k, position)
        if array.nbytes <= _CACHED_BYTES // 8:
            array = array.view()
            array.flags.writeable = False  # shared by every later read: no reader may change it
            self.cache.keep((k, position), array)
        return array

    def _read_at(self, k: int, ref: ModelRef, place: Place) -> np.ndarray:
        """The tensor read from its recorded place, its file first checked unchanged (once per join)."""
        index, offset, storage, shape = place
        path, size, mtime_ns = ref.stamps[index]
        with self.lock:
            seen = (k, index) in self.unchanged
        if not seen:
            try:
                st = os.stat(path)
                now = (st.st_size, st.st_mtime_ns)
            except OSError:
                now = (-1, -1)
            if now != (size, mtime_ns):
                raise InputError(f"{ref.label}: changed while the zoo was scanned ({path} is not as it was digested); scan again")
            with self.lock:
                self.unchanged.add((k, index))
        try:
            return range_reader(Path(path), offset, storage, shape)()
        except FileNotFoundError:  # removed after the check
            raise InputError(f"{ref.label}: changed while the zoo was scanned ({path} is gone); scan again") from None

    def _read_loaded(self, k: int, position: int) -> np.ndarray:
        """The tensor read through its model's loader, the model reopened unless it is still open."""
        with self.lock:
            model = self.open.get(k)
            if model is None:
                model = self._load(k)
                self.open[k] = model
                self.open_tensors += len(model.tensors)
                self.open_bytes += model.file_bytes
                while len(self.open) > 1 and (len(self.open) > _OPEN_MODELS or self.open_tensors > _OPEN_TENSORS or self.open_bytes > _OPEN_FILE_BYTES):
                    _, dropped = self.open.popitem(last=False)
                    self.open_tensors -= len(dropped.tensors)
                    self.open_bytes -= dropped.file_bytes
            else:
                self.open.move_to_end(k)
        return model.tensors[position].read()

    def _load(self, k: int) -> LoadedModel:
        ref = self.models[k]
        self.counter.models_opened += 1
        loaded = load_model(ref.path, k, self.options)
        if tuple(t.name for t in loaded.tensors) != ref.names:
            raise InputError(f"{ref.label}: changed while the zoo was scanned (its tensors differ from its digests); scan again")
        return loaded
