"""Cross-model groups from stored digests: the analysis, run over records instead of files.

The records of every readable model become one lazy parameter table, their
digests the digests the detectors search; ``detect.RELATIONS`` then run
exactly as ``sharescan.analyze`` runs them. Each detector joins digests
(hash buckets, transposed grids, sign-flipped grids, cells of projected
samples), never all pairs, and reads a tensor only to confirm a candidate:
from the range of its file its record names, or else by reopening the one
model it lies in (``reopen``), so the zoo's tensors are never all in memory. The near search's exact
distances, most of a zoo's join, go to the cluster's workers where that is
cheaper than here (``measure``). Same entries, same digests, same detectors, same distances:
the same groups and byte accounting as ``sharescan.analyze`` over the same
models.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace

import numpy as np

from sharescan import detect
from sharescan.analysis import _collector_paused, _warnings
from sharescan.detect.aliased import find_aliased
from sharescan.detect.relation import Scope
from sharescan.digest import Digest
from sharescan.dtypes import DTYPES
from sharescan.errors import InputError
from sharescan.groups import Group
from sharescan.plan import account
from sharescan.result import AnalysisResult, Settings
from sharescan.sources import LoadOptions
from sharescan.table import LoadedModel, TensorEntry
from sharescan.zoo.cluster import Runner
from sharescan.zoo.measure import SpreadMeasure
from sharescan.zoo.records import ModelRecord
from sharescan.zoo.reopen import ModelRef, ReadCounter, Reopener

__all__ = ["JoinSettings", "join_records", "ReadCounter"]

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class JoinSettings:
    tol: float | None
    row_tol: float | None
    key: str | None = None
    trust_pickle: bool = False


def join_records(
    records: Sequence[ModelRecord],
    labels: Sequence[str],
    settings: JoinSettings,
    counter: ReadCounter | None = None,
    runner: Callable[[bool], Runner | None] | None = None,
) -> AnalysisResult:
    """The analysis of the records' models together (``records`` readable, ``labels`` name them in reports).

    ``runner(start)`` gives the cluster to measure large batches of candidate
    pairs on (starting one if ``start`` and none runs), or None: all here.
    """
    counter = counter or ReadCounter()
    options = LoadOptions(key=settings.key, trust_pickle=settings.trust_pickle)
    refs = {k: _ref(r, label) for k, (r, label) in enumerate(zip(records, labels))}
    reopener = Reopener(options, refs, counter)
    models: list[LoadedModel] = []
    entries: list[TensorEntry] = []
    where: list[tuple[int, int]] = []
    digests: dict[int, Digest] = {}
    for k, (record, label) in enumerate(zip(records, labels)):
        own: list[TensorEntry] = []
        for position, t in enumerate(record.tensors):
            if t.digest is not None:
                digests[len(entries)] = t.digest
            entry = TensorEntry(k, t.name, t.shape, t.dtype, t.storage, reopener.reader(k, position), t.storage_nbytes, t.buffer, t.span)
            entries.append(entry)
            where.append((k, position))
            own.append(entry)
        models.append(LoadedModel(label, record.format, tuple(own), record.file_bytes, record.reused, record.files, record.notes))
    measure = SpreadMeasure(runner or (lambda start: None), where, refs, options, counter)
    try:
        with _collector_paused(), np.errstate(all="ignore"):
            found = _detect(entries, digests, settings, measure)
    finally:
        measure.close()
    warnings = _warnings(models, entries, digests)
    return account(models, entries, found, digests, Settings(settings.tol, settings.row_tol), (), warnings)


def _ref(record: ModelRecord, label: str) -> ModelRef:
    """Where the record's model and each of its tensors lie."""
    places = tuple(None if t.at is None else (t.at[0], t.at[1], DTYPES[t.dtype].storage, t.shape) for t in record.tensors)
    return ModelRef(record.path, label, tuple(t.name for t in record.tensors), record.stamps, places)


def _detect(entries: list[TensorEntry], digests: dict[int, Digest], settings: JoinSettings, measure: SpreadMeasure) -> list[Group]:
    """``sharescan.analysis._detect`` from given digests (candidates for tying are not listed)."""
    aliases, units = find_aliased(entries)
    missing = [entries[i].name for i in units if i not in digests]
    if missing:  # a record always digests its units; a store edited by hand may not
        raise InputError(f"the digest store lacks digests for {len(missing)} tensor(s) (e.g. {missing[0]}); delete the store and scan again")
    scope = Scope(entries, units, digests, settings.tol, settings.row_tol, aliases, measure)
    found: list[Group] = []
    for relation in detect.RELATIONS:
        logger.info("finding %s tensors", relation.name)
        new = relation.detect(scope)
        found.extend(new)
        if relation.claims:
            taken = {i for g in new for i in g.members[1:]}
            scope = replace(scope, units=[i for i in scope.units if i not in taken])
    return found
