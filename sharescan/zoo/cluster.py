"""Where digest tasks run: a Dask cluster (remote, or local on this machine) or this process.

Dask is imported here only, when the zoo command asks for a cluster, so
``sharescan --help`` and every other command never import it. Results come
back in the order tasks finish, so the caller can commit each one at once.
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Callable, Iterator, Sequence
from typing import Any, Protocol, TypeVar

from sharescan.errors import InputError

__all__ = ["Runner", "InProcess", "open_runner", "NO_SCHEDULER", "DEFAULT_CONNECT_TIMEOUT"]

logger = logging.getLogger(__name__)

NO_SCHEDULER = "none"  # --scheduler none: every task in this process, one after another
DEFAULT_CONNECT_TIMEOUT = 5.0  # seconds to reach a remote scheduler before giving up
_MAX_BATCH = 32  # models digested by one Dask task at most

T = TypeVar("T")
R = TypeVar("R")


class Runner(Protocol):
    threads_per_task: int  # digest threads a task may use

    @property
    def workers(self) -> int:
        """Worker processes the tasks are spread over."""
        ...

    def map_ordered(self, fn: Callable[[T], R], items: Sequence[T]) -> list[R]:
        """``fn(item)`` for every item, in the items' order; a task's exception is raised here."""
        ...

    def everywhere(self, fn: Callable[[], object]) -> None:
        """``fn()`` once in every worker process (to let go of what tasks kept there)."""
        ...

    def map_unordered(self, fn: Callable[[T], R], items: Sequence[T], on_error: Callable[[T, BaseException], R]) -> Iterator[R]:
        """``fn(item)`` for every item, yielded as each finishes; a task that fails without returning yields ``on_error``."""
        ...


class InProcess:
    """Tasks run here, in order (``--scheduler none``): what tests and small zoos use."""

    threads_per_task = 2
    workers = 1

    def map_ordered(self, fn: Callable[[T], R], items: Sequence[T]) -> list[R]:
        return [fn(item) for item in items]

    def everywhere(self, fn: Callable[[], object]) -> None:
        fn()

    def map_unordered(self, fn: Callable[[T], R], items: Sequence[T], on_error: Callable[[T, BaseException], R]) -> Iterator[R]:
        for item in items:
            yield fn(item)


class _Dask:
    """Tasks submitted to a dask.distributed client, collected as they complete."""

    threads_per_task = 1  # one task per worker thread already fills the cores

    def __init__(self, client: Any) -> None:
        self.client = client

    @property
    def workers(self) -> int:
        return max(1, len(self.client.scheduler_info().get("workers", {})))

    def map_ordered(self, fn: Callable[[T], R], items: Sequence[T]) -> list[R]:
        futures = [self.client.submit(fn, item, pure=False) for item in items]
        try:
            return list(self.client.gather(futures))
        finally:
            self.client.cancel(futures)

    def everywhere(self, fn: Callable[[], object]) -> None:
        self.client.run(fn)

    def map_unordered(self, fn: Callable[[T], R], items: Sequence[T], on_error: Callable[[T, BaseException], R]) -> Iterator[R]:
        from distributed import as_completed

        # Tasks of several models each: one task a model cost the scheduler
        # and this client more than the digests (1,000 small models: 8.8 s on
        # 2 workers against 3.3 s in one process). About 16 tasks a worker
        # keep the load even.
        size = max(1, min(_MAX_BATCH, len(items) // (16 * self.workers)))
        batches = [list(items[k : k + size]) for k in range(0, len(items), size)]
        futures = {self.client.submit(_run_batch, fn, batch, pure=False): batch for batch in batches}
        retried = as_completed(futures)
        try:
            for future in retried:
                batch = futures.pop(future)
                if future.status == "error":  # a worker died in this batch (killed for memory, a crash in a parser)
                    if len(batch) == 1:
                        yield on_error(batch[0], future.exception())
                    else:  # one model at a time, so the one that kills a worker is the only one lost
                        for item in batch:
                            single = self.client.submit(_run_batch, fn, [item], pure=False)
                            futures[single] = [item]
                            retried.add(single)
                else:
                    yield from future.result()
                future.release()
        finally:
            if futures:  # interrupted: what is not finished is dropped; the store keeps what is
                self.client.cancel(list(futures))


def _run_batch(fn: Callable[[T], R], batch: list[T]) -> list[R]:
    return [fn(item) for item in batch]


@contextlib.contextmanager
def open_runner(scheduler: str | None, workers: int | None, connect_timeout: float = DEFAULT_CONNECT_TIMEOUT) -> Iterator[Runner]:
    """A runner for ``--scheduler``: None starts a LocalCluster of ``workers`` processes (default: the cores), "none" runs in process.

    Raises:
        InputError: dask is not installed, or the scheduler cannot be reached within ``connect_timeout``.
    """
    if scheduler is not None and scheduler.lower() == NO_SCHEDULER:
        yield InProcess()
        return
    try:
        import distributed  # noqa: F401
    except ImportError:
        raise InputError("zoo on a Dask cluster needs dask.distributed: pip install 'sharescan[zoo]' (or pass --scheduler none to scan in this process)") from None
    # dask.distributed logs its own troubles (a late heartbeat under load, a
    # worker restarted) with tracebacks; what matters reaches the scan as a
    # failed task, said in one line. Its loggers stay quiet unless -vv.
    quiet = not logger.isEnabledFor(logging.DEBUG)
    stack = contextlib.ExitStack()
    if quiet:
        stack.enter_context(_quiet_logger("distributed"))
    with stack:
        yield from _open_dask(scheduler, workers, connect_timeout, logging.CRITICAL if quiet else logging.WARNING)


@contextlib.contextmanager
def _quiet_logger(name: str) -> Iterator[None]:
    log = logging.getLogger(name)
    level = log.level
    log.setLevel(logging.CRITICAL)
    try:
        yield
    finally:
        log.setLevel(level)


def _open_dask(scheduler: str | None, workers: int | None, connect_timeout: float, worker_log_level: int) -> Iterator[Runner]:
    from distributed import Client, LocalCluster

    if scheduler is None:
        n = workers or os.cpu_count() or 1
        logger.info("starting a local Dask cluster of %d worker process(es)", n)
        # ":0": the dashboard on a free port, never a clash with a cluster already on 8787.
        with LocalCluster(n_workers=n, threads_per_worker=1, processes=True, dashboard_address=":0", silence_logs=worker_log_level) as cluster, Client(cluster) as client:
            yield _Dask(client)
        return
    try:
        client = Client(scheduler, timeout=f"{connect_timeout}s")
    except (OSError, TimeoutError, ValueError) as e:
        reason = " ".join(str(e).split()) or e.__class__.__name__
        raise InputError(f"--scheduler {scheduler}: cannot reach the Dask scheduler within {connect_timeout:g} s ({reason}); check the address and that the scheduler runs, or pass --scheduler none") from None
    with client:
        yield _Dask(client)
