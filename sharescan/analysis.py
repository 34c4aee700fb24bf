"""The library entry point: load -> digest -> detect -> account."""

from __future__ import annotations

import contextlib
import gc
import logging
import os
from collections import Counter
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any, Union

import numpy as np

from sharescan import detect
from sharescan.detect.aliased import find_aliased
from sharescan.detect.candidates import find_candidates
from sharescan.detect.relation import Scope
from sharescan.digest import Digest, compute_digests
from sharescan.errors import InputError
from sharescan.groups import Candidate, Group
from sharescan.plan import account
from sharescan.result import DEFAULT_TOL, AnalysisResult, Settings
from sharescan.sources import LoadOptions, load_model
from sharescan.sources.memory import describe, is_path, load_object
from sharescan.table import LoadedModel, TensorEntry

__all__ = ["AnalysisOptions", "analyze", "Progress", "Source", "DEFAULT_TOL"]

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class AnalysisOptions:
    """The options of ``sharescan analyze``, checked as the command line checks them.

    Example:
        >>> sharescan.analyze("model.safetensors", sharescan.AnalysisOptions(tol=None))  # doctest: +SKIP
    """

    key: str | None = None  # dotted path into nested PyTorch checkpoints
    trust_pickle: bool = False  # let PyTorch files unpickle arbitrary objects (runs code)
    tol: float | None = DEFAULT_TOL  # near-equal tensors; None: exact relations only
    row_tol: float | None = DEFAULT_TOL  # near-equal rows; None: identical rows only
    candidates: int = 5  # pairs not merged to list as tying candidates (best first)

    def __post_init__(self) -> None:
        # Checked here so the Python API refuses what the command line refuses.
        for flag, value in (("--tol", self.tol), ("--row-tol", self.row_tol)):
            if value is not None and not 0 < value < 1:
                raise InputError(f"{flag} {value}: a relative distance must lie strictly between 0 and 1 (e.g. 2e-3)")
        if self.candidates < 0:
            raise InputError(f"--candidates {self.candidates}: must be 0 or more")


class Progress:
    """Hooks for a progress display; the default does nothing."""

    def step(self, name: str) -> None: ...  # a step that is not a scan starts: loading a model, finding a relation
    def start(self, total_bytes: int) -> None: ...  # the scan (one read of every tensor) starts
    def advance(self, nbytes: int) -> None: ...
    def stop(self) -> None: ...


# What analyze() takes: a path (str or PathLike; a folder or a Hugging Face
# repo id too), an nn.Module, a state dict or an onnx.ModelProto, or a list
# of these to analyse together.
Source = Union[str, "os.PathLike[str]", Any]


def analyze(sources: Source | Sequence[Source], options: AnalysisOptions = AnalysisOptions(), progress: Progress | None = None) -> AnalysisResult:
    """Analyse one or more models together: every relation within and across them.

    Args:
        sources: one model or a list of models. A model is a path (str or
            ``os.PathLike``: .safetensors, .onnx, .pt/.pth/.bin, .pt2, a
            Hugging Face folder or cached repo id) or an object in memory: an
            ``nn.Module`` (its ``state_dict()``; tied parameters stay
            aliased), a state dict (mapping name -> tensor or ndarray) or an
            ``onnx.ModelProto`` (its initializers and Constants).
        options: thresholds and loading options (the command's flags).
        progress: hooks for a progress display.

    Returns:
        The result every report renders: groups, byte totals, candidates.

    Raises:
        InputError: a missing, unreadable or refused model, or a bad option.

    Example:
        >>> import sharescan
        >>> result = sharescan.analyze("model.onnx")  # doctest: +SKIP
        >>> result.totals.reclaimable_bytes  # doctest: +SKIP
        >>> sharescan.analyze(["a.safetensors", "b.safetensors"])  # doctest: +SKIP
        >>> sharescan.analyze(torch_model)  # doctest: +SKIP
    """
    items = _as_list(sources)
    if not items:
        raise InputError("no model given; pass one or more model paths")
    labels = [os.fspath(x) if is_path(x) else describe(x) for x in items]
    repeated = Counter(label for x, label in zip(items, labels) if not is_path(x))
    # Several objects of one kind: numbered by their position in the list.
    labels = [f"{label[:-1]} #{k + 1}>" if repeated[label] > 1 else label for k, label in enumerate(labels)]
    seen: dict[object, str] = {}
    for source, label in zip(items, labels):
        key = os.path.realpath(label) if is_path(source) else id(source)
        if key in seen:
            raise InputError(f"{label}: given twice (also as {seen[key]}); pass each model once")
        seen[key] = label
    with _collector_paused():
        return _analyze(items, labels, options, progress)


def _as_list(sources: Source | Sequence[Source]) -> list[Source]:
    # A str is a Sequence too: one path, never a list of one-letter paths.
    if is_path(sources) or isinstance(sources, Mapping) or not isinstance(sources, (list, tuple)):
        return [sources]
    return list(sources)


@contextlib.contextmanager
def _collector_paused() -> Iterator[None]:
    """The cyclic garbage collector off while tables are built and searched.

    A million tensors make millions of long-lived objects (header records,
    entries, digests); each collection walks them all again: loading such a
    file took 13.5 s with the collector on, 4.9 s with it off. The analysis
    makes no cycles worth collecting before it ends.
    """
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


def _analyze(sources: Sequence[Source], labels: Sequence[str], options: AnalysisOptions, progress: Progress | None) -> AnalysisResult:
    load_options = LoadOptions(key=options.key, trust_pickle=options.trust_pickle)
    progress = progress or Progress()
    models: list[LoadedModel] = []
    for k, (source, path) in enumerate(zip(sources, labels)):
        progress.step(f"loading {path}")
        loaded = load_model(path, k, load_options) if is_path(source) else load_object(source, k, path)
        if not loaded.tensors:
            hint = "check the file, or --key for a nested checkpoint" if loaded.format.startswith("pytorch") else "check that the file holds the model's weights"
            raise InputError(f"{path}: no tensors found in this {loaded.format} model; {hint}")
        models.append(loaded)
    entries: list[TensorEntry] = [e for m in models for e in m.tensors]
    # Huge or tiny values are handled where they matter; numpy need not warn on stderr.
    with np.errstate(all="ignore"):
        digests, found, candidates = _detect(entries, options, progress)
    warnings = _warnings(models, entries, digests)
    return account(models, entries, found, digests, Settings(options.tol, options.row_tol), candidates, warnings)


def _detect(entries: list[TensorEntry], options: AnalysisOptions, progress: Progress) -> tuple[dict[int, Digest], list[Group], list[Candidate]]:
    # The units (one entry per storage) are what every relation searches; the
    # storages several entries share are the "aliased" relation's groups.
    aliases, units = find_aliased(entries)
    progress.start(sum(entries[i].nbytes for i in units))
    try:
        digests = compute_digests(entries, units, progress.advance)
    finally:
        progress.stop()
    scope = Scope(entries, units, digests, options.tol, options.row_tol, aliases)
    found: list[Group] = []
    for relation in detect.RELATIONS:
        progress.step(f"finding {relation.name} tensors")
        new = relation.detect(scope)
        found.extend(new)
        if relation.claims:
            taken = {i for g in new for i in g.members[1:]}
            scope = replace(scope, units=[i for i in scope.units if i not in taken])
    # Only tensors still stored after sharing: a pair with a rebuilt copy says nothing new.
    progress.step("ranking candidates for tying")
    candidates = find_candidates(entries, scope.units, digests, found, options.candidates)
    progress.step("")
    return digests, found, candidates


def _warnings(models: Sequence[LoadedModel], entries: Sequence[TensorEntry], digests: Mapping[int, Digest]) -> list[str]:
    out = [note for m in models for note in m.notes]
    nan_by_model: dict[int, list[str]] = {}
    for i, d in digests.items():
        if d.has_nan:
            nan_by_model.setdefault(entries[i].model, []).append(entries[i].name)
    for k, m in enumerate(models):
        bad = nan_by_model.get(k)
        if bad:
            shown = ", ".join(bad[:5]) + (f" and {len(bad) - 5} more" if len(bad) > 5 else "")
            out.append(f"{m.path}: {len(bad)} tensor(s) hold NaN ({shown}); they are compared as bytes only, never merged by value")
    return out
