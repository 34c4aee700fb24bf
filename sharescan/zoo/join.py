"""Cross-model groups from stored digests: the analysis, run over records instead of files.

The records of every readable model become one lazy parameter table, their
digests the digests the detectors search; ``detect.RELATIONS`` then run
exactly as ``sharescan.analyze`` runs them. Each detector joins digests
(hash buckets, transposed grids, sign-flipped grids, cells of projected
samples), never all pairs, and reads a tensor only to confirm a candidate:
that read reopens the one model it lies in (a few recently opened models are
kept), so the zoo's tensors are never all in memory. Same entries, same
digests, same detectors: the same groups and byte accounting as
``sharescan.analyze`` over the same models.
"""

from __future__ import annotations

import logging
import threading
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace

import numpy as np

from sharescan import detect
from sharescan.analysis import _collector_paused, _warnings
from sharescan.detect.aliased import find_aliased
from sharescan.detect.relation import Scope
from sharescan.digest import Digest
from sharescan.errors import InputError
from sharescan.groups import Group
from sharescan.plan import account
from sharescan.result import AnalysisResult, Settings
from sharescan.sources import LoadOptions, load_model
from sharescan.table import LoadedModel, TensorEntry
from sharescan.zoo.records import ModelRecord

__all__ = ["JoinSettings", "join_records", "ReadCounter"]

logger = logging.getLogger(__name__)

# Models kept open for confirming reads. An open model is its parsed header
# or graph and one lazy reader per tensor (tensor bytes stay in the file), so
# many fit; detectors confirm across models in their own order, and reopening
# a model per read cost more than the reads (27,634 reopenings for 28,453
# reads over 400 models with 4 kept open). Bounded by tensors held, and by
# file bytes: a loader may map a whole file, whose touched pages then count
# in the process's memory while the model stays open.
_OPEN_MODELS = 1024
_OPEN_TENSORS = 200_000
_OPEN_FILE_BYTES = 256 << 20
# Tensors kept after a confirming read. In a zoo of fine-tunes every copy of a
# layer is near every other, so the near search confirms each tensor against
# several crowd leaders: 188k reads of 8k tensors over 1,000 models, 4 s of a
# 17 s join, spent reopening and copying the same bytes.
_CACHED_BYTES = 128 << 20


@dataclass(frozen=True)
class JoinSettings:
    tol: float | None
    row_tol: float | None
    key: str | None = None
    trust_pickle: bool = False


class ReadCounter:
    """Tensors the join read to confirm candidates, and models it reopened for them."""

    def __init__(self) -> None:
        self.tensors = 0
        self.cached = 0  # of which answered from memory
        self.models_opened = 0


class _Reopener:
    """Reads tensor ``position`` of model ``k`` by reopening that model; the last few stay open."""

    def __init__(self, records: Sequence[ModelRecord], labels: Sequence[str], options: LoadOptions, counter: ReadCounter) -> None:
        self.records = records
        self.labels = labels
        self.options = options
        self.counter = counter
        self.open: OrderedDict[int, LoadedModel] = OrderedDict()
        self.open_tensors = 0
        self.open_bytes = 0
        self.lock = threading.Lock()  # detectors may confirm from several threads
        self.cached: OrderedDict[tuple[int, int], np.ndarray] = OrderedDict()
        self.cached_bytes = 0

    def reader(self, k: int, position: int) -> Callable[[], np.ndarray]:
        return lambda: self.read(k, position)

    def read(self, k: int, position: int) -> np.ndarray:
        with self.lock:
            self.counter.tensors += 1
            hit = self.cached.get((k, position))
            if hit is not None:
                self.cached.move_to_end((k, position))
                self.counter.cached += 1
                return hit
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
        array = model.tensors[position].read()
        if array.nbytes <= _CACHED_BYTES // 8:
            array = array.view()
            array.flags.writeable = False  # shared by every later read: no reader may change it
            with self.lock:
                if (k, position) not in self.cached:
                    self.cached[k, position] = array
                    self.cached_bytes += array.nbytes
                while self.cached_bytes > _CACHED_BYTES:
                    _, old = self.cached.popitem(last=False)
                    self.cached_bytes -= old.nbytes
        return array

    def _load(self, k: int) -> LoadedModel:
        record = self.records[k]
        self.counter.models_opened += 1
        loaded = load_model(record.path, k, self.options)
        names = [t.name for t in loaded.tensors]
        if names != [t.name for t in record.tensors]:
            raise InputError(f"{self.labels[k]}: changed while the zoo was scanned (its tensors differ from its digests); scan again")
        return loaded


def join_records(records: Sequence[ModelRecord], labels: Sequence[str], settings: JoinSettings, counter: ReadCounter | None = None) -> AnalysisResult:
    """The analysis of the records' models together (``records`` readable, ``labels`` name them in reports)."""
    counter = counter or ReadCounter()
    reopener = _Reopener(records, labels, LoadOptions(key=settings.key, trust_pickle=settings.trust_pickle), counter)
    models: list[LoadedModel] = []
    entries: list[TensorEntry] = []
    digests: dict[int, Digest] = {}
    for k, (record, label) in enumerate(zip(records, labels)):
        own: list[TensorEntry] = []
        for position, t in enumerate(record.tensors):
            if t.digest is not None:
                digests[len(entries)] = t.digest
            entry = TensorEntry(k, t.name, t.shape, t.dtype, t.storage, reopener.reader(k, position), t.storage_nbytes, t.buffer, t.span)
            entries.append(entry)
            own.append(entry)
        models.append(LoadedModel(label, record.format, tuple(own), record.file_bytes, record.reused, record.files, record.notes))
    with _collector_paused(), np.errstate(all="ignore"):
        found = _detect(entries, digests, settings)
    warnings = _warnings(models, entries, digests)
    return account(models, entries, found, digests, Settings(settings.tol, settings.row_tol), (), warnings)


def _detect(entries: list[TensorEntry], digests: dict[int, Digest], settings: JoinSettings) -> list[Group]:
    """``sharescan.analysis._detect`` from given digests (candidates for tying are not listed)."""
    aliases, units = find_aliased(entries)
    missing = [entries[i].name for i in units if i not in digests]
    if missing:  # a record always digests its units; a store edited by hand may not
        raise InputError(f"the digest store lacks digests for {len(missing)} tensor(s) (e.g. {missing[0]}); delete the store and scan again")
    scope = Scope(entries, units, digests, settings.tol, settings.row_tol, aliases)
    found: list[Group] = []
    for relation in detect.RELATIONS:
        logger.info("finding %s tensors", relation.name)
        new = relation.detect(scope)
        found.extend(new)
        if relation.claims:
            taken = {i for g in new for i in g.members[1:]}
            scope = replace(scope, units=[i for i in scope.units if i not in taken])
    return found
