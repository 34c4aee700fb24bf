"""The zoo scan: list, digest what the store lacks (in parallel), join, summarise.

1. List the models (``listing``) and stat the files each stored record was
   read from: a model whose stamps are unchanged is not opened.
2. Digest the others as tasks on the runner (a Dask cluster, or this
   process); each record is committed to the store as its task finishes, so
   an interrupted scan resumes where it stopped.
3. If no model changed and the store holds the analysis for these stamps
   and settings, that is the answer: nothing is read.
4. Otherwise join every readable model's stored digests (``join``): the
   detectors of ``sharescan analyze`` over records, reading only the
   tensors a candidate needs; then ``summary`` adds families and totals.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import json
import logging
import os
import time
from dataclasses import dataclass
from pathlib import Path

from sharescan import __version__
from sharescan.errors import InputError, one_line
from sharescan.result import DEFAULT_TOL
from sharescan.zoo.cluster import DEFAULT_CONNECT_TIMEOUT, NO_SCHEDULER, Runner, open_runner
from sharescan.zoo.listing import list_zoo
from sharescan.zoo.records import STATUS_SKIPPED, ModelRecord
from sharescan.zoo.result import ZooResult, ZooTiming
from sharescan.zoo.store import DigestStore
from sharescan.zoo.task import DigestOptions, digest_model, stamps_of

__all__ = ["ZooOptions", "ZooProgress", "scan_zoo"]

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class ZooOptions:
    """The options of ``sharescan zoo``."""

    tol: float | None = DEFAULT_TOL  # near-equal tensors; None: exact relations only
    row_tol: float | None = DEFAULT_TOL  # near-equal rows; None: identical rows only
    key: str | None = None  # dotted path into nested PyTorch checkpoints
    trust_pickle: bool = False  # let PyTorch files unpickle arbitrary objects (runs code)
    scheduler: str | None = None  # a dask.distributed address; None: a LocalCluster here; "none": this process
    workers: int | None = None  # LocalCluster worker processes (None: the cores)
    connect_timeout: float = DEFAULT_CONNECT_TIMEOUT  # seconds to reach --scheduler
    store: Path | None = None  # the digest store (None: beside the folder or manifest)

    def __post_init__(self) -> None:
        for flag, value in (("--tol", self.tol), ("--row-tol", self.row_tol)):
            if value is not None and not 0 < value < 1:
                raise InputError(f"{flag} {value}: a relative distance must lie strictly between 0 and 1 (e.g. 2e-3)")
        if self.workers is not None and self.workers < 1:
            raise InputError(f"--workers {self.workers}: must be 1 or more")
        if self.workers is not None and self.scheduler is not None:
            raise InputError(f"--workers sizes the local cluster, and --scheduler {self.scheduler} uses none: drop --workers or --scheduler")
        if not self.connect_timeout > 0:
            raise InputError(f"--connect-timeout {self.connect_timeout}: must be more than 0 seconds")


class ZooProgress:
    """Hooks for a progress display; the default does nothing."""

    def digesting(self, total: int) -> None: ...  # this many models are to be digested
    def digested(self, label: str, record: ModelRecord) -> None: ...  # one is committed to the store
    def joining(self, models: int) -> None: ...  # the cross-model search over this many readable models starts
    def done(self) -> None: ...


def scan_zoo(target: str, options: ZooOptions = ZooOptions(), progress: ZooProgress | None = None) -> ZooResult:
    """Scan every model under ``target`` (a folder or a manifest) and find what they share.

    Raises:
        InputError: no model listed, an unusable store, an unreachable scheduler or a bad option.
    """
    started = time.perf_counter()
    progress = progress or ZooProgress()
    try:
        return _scan(target, options, progress, started)
    finally:
        progress.done()


def _scan(target: str, options: ZooOptions, progress: ZooProgress, started: float) -> ZooResult:
    listing = list_zoo(target)
    store_path = options.store or listing.default_store
    if not store_path.parent.is_dir():
        raise InputError(f"--store {store_path}: its folder does not exist; create it or choose another path")
    labels = list(listing.paths)
    paths = [os.path.abspath(p) for p in labels]
    label_of = dict(zip(paths, labels))
    digest_key = json.dumps({"key": options.key, "trust_pickle": options.trust_pickle})
    with contextlib.ExitStack() as stack:
        # A remote scheduler is reached first, so that an unreachable one is
        # said at once; a LocalCluster starts only when a model needs
        # digesting, or when the join has pairs enough to repay starting one.
        runners = stack.enter_context(_Runners(options))
        if _remote(options.scheduler):
            runners.get(True)
        store = stack.enter_context(DigestStore(store_path))
        forgotten = store.forget_missing(paths)
        if forgotten:
            logger.info("%s: dropped the digests of %d model(s) no longer on disk", store_path, forgotten)
        stored = store.stamps(digest_key)
        fresh = {p for p in paths if p in stored and stamps_of(s[0] for s in stored[p]) == stored[p]}
        todo = [p for p in paths if p not in fresh]
        if not todo:
            cached = _cached_result(store, _result_key(options, labels, [stored[p] for p in paths]))
            if cached is not None:
                result = cached
                for m in result.models:
                    if m.status == STATUS_SKIPPED:
                        logger.warning("%s: %s; skipped", m.path, m.reason)
                return result.with_timing(ZooTiming(time.perf_counter() - started, 0, len(paths), result_from_store=True))
        digested: dict[str, ModelRecord] = {}
        if todo:
            progress.digesting(len(todo))
            runner = runners.get(True)
            assert runner is not None
            digested = _digest_missing(runner, todo, options, store, digest_key, label_of, progress)
            # The local workers' memory is given back for the join; the
            # search starts them again only for pairs that repay it.
            runners.release_local()
        # The records digested now are at hand; only the others are read back from the store.
        records = {**digested, **{r.path: r for r in store.records(p for p in paths if p not in digested)}}
        listed = [(label_of[p], records[p]) for p in paths]
        for p, (label, record) in zip(paths, listed):
            if p in fresh and not record.ok:  # told again on every scan, read or not
                logger.warning("%s: %s; skipped", label, record.reason)
        ok = [(label, r) for label, r in listed if r.ok]
        # The search's modules (numpy, the detectors) are imported only now:
        # a rescan answered from the store above does without them.
        from sharescan.zoo.join import JoinSettings, ReadCounter, join_records
        from sharescan.zoo.summary import summarise

        counter = ReadCounter()
        progress.joining(len(ok))
        joined = time.perf_counter()
        join = JoinSettings(options.tol, options.row_tol, options.key, options.trust_pickle)
        analysis = join_records([r for _, r in ok], [label for label, _ in ok], join, counter, runners.get) if ok else None
        result = summarise(listed, analysis, options.tol, options.row_tol)
        store.put_result(_result_key(options, labels, [r.stamps for _, r in listed]), result.to_dict())
    now = time.perf_counter()
    timing = ZooTiming(
        now - started, len(todo), len(fresh), False, counter.tensors - counter.cached, counter.models_opened, joined - started, now - joined, counter.pairs, counter.measure_seconds, counter.pairs_on_workers
    )
    return result.with_timing(timing)


class _Runners:
    """The scan's runner, opened on first need; a context manager that closes it."""

    def __init__(self, options: ZooOptions) -> None:
        self.options = options
        self.stack = contextlib.ExitStack()
        self.runner: Runner | None = None

    def __enter__(self) -> _Runners:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stack.close()

    def get(self, start: bool) -> Runner | None:
        """The runner; if none runs yet, a new one when ``start``, else None."""
        if self.runner is None and start:
            self.runner = self.stack.enter_context(open_runner(self.options.scheduler, self.options.workers, self.options.connect_timeout))
        return self.runner

    def release_local(self) -> None:
        """Close a LocalCluster started here (a remote cluster stays reached)."""
        if self.runner is not None and not _remote(self.options.scheduler):
            self.stack.close()
            self.runner = None


def _remote(scheduler: str | None) -> bool:
    return scheduler is not None and scheduler.lower() != NO_SCHEDULER


def _digest_missing(runner: Runner, todo: list[str], options: ZooOptions, store: DigestStore, digest_key: str, label_of: dict[str, str], progress: ZooProgress) -> dict[str, ModelRecord]:
    """Digest the models of ``todo`` on the runner, each record stored as it arrives; the records by path."""
    task = functools.partial(digest_model, options=DigestOptions(options.key, options.trust_pickle, runner.threads_per_task))
    records: dict[str, ModelRecord] = {}
    for record in runner.map_unordered(task, todo, _failed_task):
        store.put(record, digest_key)  # committed within a quarter of a second: an interrupted scan resumes after it
        records[record.path] = record
        label = label_of[record.path]
        if not record.ok:
            logger.warning("%s: %s; skipped", label, record.reason)
        else:
            logger.info("%s: digested (%d tensors)", label, len(record.tensors))
        progress.digested(label, record)
    return records


def _failed_task(path: str, error: BaseException) -> ModelRecord:
    """A task that never returned (its worker died): the model is skipped with the cause, and retried next scan."""
    reason = one_line(error, 1000) or error.__class__.__name__
    return ModelRecord(path, ((path, -2, -2),), STATUS_SKIPPED, f"its digest task failed ({reason})")


def _cached_result(store: DigestStore, key: str) -> ZooResult | None:
    """The stored analysis for this key; None when there is none, or it was kept in an older form (then it is searched again)."""
    body = store.result(key)
    if body is None:
        return None
    try:
        return ZooResult.from_dict(body)
    except (KeyError, TypeError, ValueError, AttributeError):
        logger.info("%s: the stored analysis is in an older form; searching again", store.path)
        return None


# Bump when ZooResult.to_dict() changes shape: analyses kept in older forms are then not looked up.
_RESULT_FORM = 2


def _result_key(options: ZooOptions, labels: list[str], stamps: list[tuple[tuple[str, int, int], ...]]) -> str:
    """The analysis is a function of these: the version, the settings, and every model's label and file stamps."""
    body = json.dumps([__version__, _RESULT_FORM, options.tol, options.row_tol, options.key, options.trust_pickle, labels, stamps])
    return hashlib.sha256(body.encode()).hexdigest()
