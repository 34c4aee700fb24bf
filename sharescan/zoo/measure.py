"""The join's candidate pairs measured on the cluster's workers (a ``PairMeasure``).

The near search hands its candidate pairs over in two batches (crowd
members against their leaders, then what the search finds); on a zoo of
fine-tunes those exact distances are most of the join. A batch is cut into
runs of pairs in the order given (a crowd's pairs share its leader) and each
run is measured by a worker, which reopens the models it needs and keeps
them open for the join's next runs. Each distance is the same computation
on the same bytes as in one process, so the groups do not depend on where
pairs were measured.

A batch that costs less here than on the workers (the estimate below), and
any batch when no cluster runs, is measured here. A run a worker fails to
return (the worker died) is measured here too; a model that changed since
it was digested is said as it is in one process.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from sharescan.detect.common import Distance, Pair, measure_pairs
from sharescan.errors import InputError
from sharescan.sources import LoadOptions
from sharescan.table import TensorEntry
from sharescan.zoo.cluster import InProcess, Runner
from sharescan.zoo.reopen import ModelRef, ReadCounter, Reopener

__all__ = ["PairRun", "measure_run", "forget_join", "SpreadMeasure"]

logger = logging.getLogger(__name__)

# Whether a batch goes to the workers is a matter of cost: here it takes
# about 3 ns an element compared (1,001 models' 71,075 pairs, 7e8 elements:
# 1.9 s); on W workers W times less, plus, on each worker, ~1 ms for each
# model its pairs lie in (pairs of fine-tunes touch most models: the model's
# places shipped, its files checked, its tensors read afresh, where here they
# are cached) and a round trip. On the zoo benchmark's 1,000 models the
# workers lose, small tensors (4.8 s against 2.6 s here) or 4.3 MiB models
# (3.3 s against 2.6 s); with larger tensors the elements dominate and they win.
_SECONDS_PER_ELEMENT = 3e-9
_SECONDS_PER_MODEL = 1e-3
_SECONDS_PER_BATCH = 0.25
# A cluster is started for the join alone (a scan whose digests all came
# from the store has none running) only when a batch would take this long
# here: starting one costs about a second.
_START_SECONDS = 10.0
_RUNS_PER_WORKER = 4  # runs of pairs a worker gets per batch: an even finish


@dataclass(frozen=True)
class PairRun:
    """A run of pairs for one worker: where each tensor lies, and the pairs."""

    join: str  # the join it belongs to: a worker keeps its open models for the join's later runs
    options: LoadOptions
    models: dict[int, ModelRef]  # every model the run's tensors lie in
    tensors: dict[int, tuple[int, int, str, tuple[int, ...]]]  # entry -> (model, position in the model, dtype, shape)
    pairs: tuple[Pair, ...]


_worker_join: tuple[str, Reopener] | None = None  # the join this worker process measures for


def forget_join() -> None:
    """Runs on each worker when a join ends: its open models and cached tensors are let go."""
    global _worker_join
    _worker_join = None


def measure_run(run: PairRun) -> tuple[np.ndarray, int, int, int]:
    """Runs on a worker: each pair's (max_abs, diff_norm, norm_a, norm_b, zero_signs), and the reads it took (tensors, of them cached, models opened)."""
    global _worker_join
    if _worker_join is None or _worker_join[0] != run.join:
        _worker_join = (run.join, Reopener(run.options))
    reopener = _worker_join[1]
    reopener.models.update(run.models)
    before = (reopener.counter.tensors, reopener.counter.cached, reopener.counter.models_opened)
    # The run's tensors as entries read through the worker's open models: the
    # same measurement as in one process (its models' loaders are not mapped
    # readers, so nothing is streamed here that would be read whole there),
    # on one thread (each of the worker's cores runs a task).
    entries = {i: TensorEntry(k, "", shape, dtype, "", reopener.reader(k, position)) for i, (k, position, dtype, shape) in run.tensors.items()}
    out = np.array([(d.max_abs, d.diff_norm, d.norm_a, d.norm_b, d.zero_signs) for d in measure_pairs(entries, run.pairs, threads=1)]).reshape(-1, 5)
    c = reopener.counter
    return out, c.tensors - before[0], c.cached - before[1], c.models_opened - before[2]


class SpreadMeasure:
    """A ``PairMeasure`` that sends large batches to the runner's workers.

    ``runner()`` gives the runner, starting it if ``start`` is true and none
    runs yet (None: measure here); ``where[i]`` is entry i's (model,
    position); ``models`` where each model lies.
    """

    def __init__(
        self,
        runner: Callable[[bool], Runner | None],
        where: Sequence[tuple[int, int]],
        models: Mapping[int, ModelRef],
        options: LoadOptions,
        counter: ReadCounter,
    ) -> None:
        self.runner = runner
        self.where = where
        self.models = models
        self.options = options
        self.counter = counter
        self.join = uuid.uuid4().hex
        self.used: Runner | None = None  # the runner runs were sent to

    def close(self) -> None:
        """Let the workers go of the models they opened for this join (a cluster outlives the scan)."""
        if self.used is not None:
            try:
                self.used.everywhere(forget_join)
            except Exception as e:  # a worker gone takes its memory with it
                logger.info("could not reach every worker to end the join (%s)", e.__class__.__name__)
            self.used = None

    def __call__(self, entries: Sequence[TensorEntry], pairs: Sequence[Pair]) -> list[Distance]:
        started = time.perf_counter()
        try:
            return self._measure(entries, pairs)
        finally:
            self.counter.pairs += len(pairs)
            self.counter.measure_seconds += time.perf_counter() - started

    def _measure(self, entries: Sequence[TensorEntry], pairs: Sequence[Pair]) -> list[Distance]:
        here = sum(entries[b].numel for _, b, _ in pairs) * _SECONDS_PER_ELEMENT
        runner = self.runner(here >= _START_SECONDS)
        if runner is None or isinstance(runner, InProcess) or runner.workers < 2:
            return measure_pairs(entries, pairs)
        models = len({self.where[i][0] for a, b, _ in pairs for i in (a, b)})
        if here / runner.workers + models * _SECONDS_PER_MODEL + _SECONDS_PER_BATCH >= here:
            return measure_pairs(entries, pairs)
        runs = self._runs(entries, pairs, max(1, runner.workers) * _RUNS_PER_WORKER)
        self.used = runner
        try:
            answers = runner.map_ordered(measure_run, runs)
        except InputError:
            raise
        except Exception as e:  # a worker lost: what it measured is measured again here
            logger.info("measuring %d pairs on the cluster failed (%s); measuring them here", len(pairs), e.__class__.__name__)
            return measure_pairs(entries, pairs)
        self.counter.pairs_on_workers += len(pairs)
        out: list[Distance] = []
        for rows, tensors, cached, opened in answers:
            self.counter.tensors += tensors
            self.counter.cached += cached
            self.counter.models_opened += opened
            out.extend(Distance(float(r[0]), float(r[1]), float(r[2]), float(r[3]), int(r[4])) for r in rows)
        return out

    def _runs(self, entries: Sequence[TensorEntry], pairs: Sequence[Pair], count: int) -> list[PairRun]:
        size = -(-len(pairs) // count)
        runs = []
        for start in range(0, len(pairs), size):
            chunk = tuple(pairs[start : start + size])
            used = {i for a, b, _ in chunk for i in (a, b)}
            tensors = {i: (*self.where[i], entries[i].dtype, entries[i].shape) for i in used}
            models = {k: self.models[k] for k, _, _, _ in tensors.values()}
            runs.append(PairRun(self.join, self.options, models, tensors, chunk))
        return runs
