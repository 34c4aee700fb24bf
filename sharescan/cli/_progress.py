"""Progress bars on stderr, shown only when stderr is a terminal (never in a pipe or a log)."""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Callable, Iterator
from typing import Any

__all__ = ["scan_progress", "zoo_progress", "epoch_bar", "step_status"]


def scan_progress() -> Any:
    """An ``analysis.Progress``: a bar of bytes scanned, or silent hooks off a terminal."""
    from sharescan.analysis import Progress

    if not sys.stderr.isatty():
        return Progress()

    class Bar(Progress):
        """A spinner naming the step, and a bar of bytes during the scan."""

        def __init__(self) -> None:
            from rich.console import Console

            self.console = Console(stderr=True)
            self.status: Any = None

        def step(self, name: str) -> None:
            if self.status is not None:
                self.status.stop()
                self.status = None
            if name:
                self.status = self.console.status(name)
                self.status.start()

        def start(self, total_bytes: int) -> None:
            from rich.progress import BarColumn, DownloadColumn, Progress as RichProgress, TimeRemainingColumn

            self.step("")
            self.bar = RichProgress("scanning", BarColumn(), DownloadColumn(binary_units=True), TimeRemainingColumn(), console=self.console, transient=True)
            self.task = self.bar.add_task("scan", total=total_bytes)
            self.bar.start()

        def advance(self, nbytes: int) -> None:
            self.bar.advance(self.task, nbytes)

        def stop(self) -> None:
            self.bar.stop()

    return Bar()


def zoo_progress() -> Any:
    """A ``ZooProgress``: a bar of models digested and a spinner for the search, on a terminal only."""
    from sharescan.zoo import ZooProgress

    if not sys.stderr.isatty():
        return ZooProgress()

    class Bar(ZooProgress):
        def __init__(self) -> None:
            from rich.console import Console

            self.console = Console(stderr=True)
            self.live: Any = None

        def digesting(self, total: int) -> None:
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeRemainingColumn

            self.done()
            self.bar = Progress("digesting", BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(), console=self.console, transient=True)
            self.task = self.bar.add_task("digest", total=total)
            self.live = self.bar
            self.bar.start()

        def digested(self, label: str, record: Any) -> None:
            self.bar.advance(self.task)

        def joining(self, models: int) -> None:
            self.done()
            self.live = self.console.status(f"finding what {models} models share")
            self.live.start()

        def done(self) -> None:
            if self.live is not None:
                self.live.stop()
                self.live = None

    return Bar()


@contextlib.contextmanager
def epoch_bar(epochs: int) -> Iterator[Callable[[int, float, float], None] | None]:
    """A bar per fine-tuning epoch; yields tie's ``on_epoch`` hook, or None off a terminal."""
    if not sys.stderr.isatty():
        yield None
        return
    from rich.console import Console
    from rich.progress import BarColumn, Progress as RichProgress, TextColumn

    bar = RichProgress(TextColumn("epoch {task.completed}/{task.total}"), BarColumn(), TextColumn("{task.description}"), console=Console(stderr=True), transient=True)
    job = bar.add_task("", total=epochs)

    def update(epoch: int, lam: float, gap: float) -> None:
        bar.update(job, completed=epoch + 1, description=f"lambda {lam:g}, largest gap {gap:.2e}")

    with bar:
        yield update


@contextlib.contextmanager
def step_status(command: str) -> Iterator[Callable[[str], None] | None]:
    """A spinner naming the step under way (dedup, export); yields the ``on_step`` hook, or None off a terminal."""
    if not sys.stderr.isatty():
        yield None
        return
    from rich.console import Console

    with Console(stderr=True).status(f"{command}: starting") as status:

        def update(step: str) -> None:
            status.update(f"{command}: {step}")

        yield update
