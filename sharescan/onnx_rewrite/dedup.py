"""``sharescan dedup``: analyse an ONNX model, share what it stores twice, verify, write.

Lossless by default (identical, transposed, negated, scaled; duplicate rows
with ``rows=True``); near-equal tensors only with ``tol``. The result is
written to a temporary folder beside the output, checked with onnx.checker,
run in onnxruntime against the original on the same inputs, and only then
moved into place: an output that fails verification is never written.

A self-contained model is parsed once: the analysis reads its tensors from
that parse, and the rewrite edits it. Verification opens one onnxruntime
session for the original and one for the result (more only when merges
must be bisected). onnxruntime's RAM is measured only when asked
(``measure_ram``, ``--ram``): its four fresh processes cost more than the
rest of a run.
"""

from __future__ import annotations

import logging
import os
import shutil
import sys
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from sharescan import detect
from sharescan.errors import InputError, VerificationError
from sharescan.onnx_rewrite.dedup_result import DedupResult, DroppedMerge, Merge
from sharescan.onnx_rewrite.fold import FoldResult, simplify
from sharescan.onnx_rewrite.graph import list_initializers_as_inputs, overridable, stored_tensors, tensor_nbytes
from sharescan.onnx_rewrite.ram import measure_ram
from sharescan.onnx_rewrite.rename import point_at
from sharescan.onnx_rewrite.strip import strip_debug
from sharescan.onnx_rewrite.verify import Reference, Verdict, check_model, check_result, reference_runs
from sharescan.outputs import check_output

__all__ = ["DedupOptions", "DedupResult", "DroppedMerge", "Merge", "dedup", "onnx_file_bytes"]

logger = logging.getLogger(__name__)

_TWO_GB = 2**31 - 1  # protobuf's limit: larger models must keep their tensors outside


@dataclass(frozen=True)
class DedupOptions:
    tol: float | None = None  # also merge near-equal tensors within this relative distance (lossy)
    rows: bool = False  # store tensors with duplicate rows as unique rows + Gather
    max_error: float = 1e-3  # a lossy result whose outputs move more than this (relative) is not written
    # Measure onnxruntime RAM before and after (``--ram``): four sessions in
    # fresh processes, which cost more than the rest of a run; off unless asked.
    measure_ram: bool = False
    inputs: tuple[tuple[str, tuple[int, ...], str], ...] = ()  # graph input specs for verification
    # .npz files of real inputs for verification (each one sample, or several
    # along a leading axis; see feeds.load_samples); replace synthetic feeds.
    samples: tuple[str, ...] = ()
    # Drop doc strings and exporter metadata (the dynamo exporter's stack
    # traces are about 1-5% of a small model's file); see strip.py. Model
    # metadata, names and types stay.
    strip_debug: bool = False
    # Fold constant subgraphs and fixed shapes where the file gets smaller,
    # drop Identity and dead nodes; specialises to the declared input sizes
    # (see fold.py).
    simplify: bool = False
    # Store each float initializer of at least ``codebook_min_bytes`` as
    # indices of this many bits (1-8) into a k-means codebook, rebuilt by
    # Gather (lossy: verified against max_error; None: off). See sharescan/codebook/.
    codebook: int | None = None
    codebook_min_bytes: int = 1024
    # The least-error uniform grid, written as DequantizeLinear (onnxruntime
    # keeps its indices in memory with any session options), instead of k-means.
    codebook_uniform: bool = False
    # One codebook per group of at most this many rows (axis 0) instead of one per tensor.
    codebook_group_channels: int | None = None

    def __post_init__(self) -> None:
        # Checked here so the Python API refuses what the command line refuses.
        if self.tol is not None and not 0 < self.tol < 1:
            raise InputError(f"--tol {self.tol}: a relative distance must lie strictly between 0 and 1")
        if not self.max_error >= 0:  # NaN too
            raise InputError(f"--max-error {self.max_error}: must be a number >= 0")
        if self.codebook is not None:
            from sharescan.codebook.analysis import check_bits

            check_bits(self.codebook, "--codebook")
        if (self.codebook_uniform or self.codebook_group_channels is not None) and self.codebook is None:
            raise InputError("--uniform and --codebook-group-channels shape the codebook form: pass --codebook BITS too")
        if self.codebook_uniform and self.codebook_group_channels is not None:
            raise InputError("--uniform and --codebook-group-channels contradict each other (a uniform grid is one per tensor); pass one of them")
        if self.codebook_group_channels is not None and self.codebook_group_channels < 1:
            raise InputError(f"--codebook-group-channels {self.codebook_group_channels}: must be 1 or more rows")


def _tensor_bytes(model: Any) -> int:
    # From dims and type: converting each tensor to an array would copy the whole model once more.
    total = 0
    for kind, obj in stored_tensors(model.graph).values():
        t = obj if kind == "initializer" else next((a.t for a in obj.attribute if a.name == "value" and a.HasField("t")), None)
        if t is not None:
            total += tensor_nbytes(t.data_type, t.dims)
    return total


def onnx_file_bytes(path: Path) -> int:
    """The model file plus the external data files it names."""
    import onnx

    total = path.stat().st_size
    model = onnx.load(str(path), load_external_data=False)
    seen = set()
    for t in model.graph.initializer:
        for kv in t.external_data:
            if kv.key == "location" and kv.value not in seen:
                seen.add(kv.value)
                total += (path.parent / kv.value).stat().st_size
    return total


def _constant_to_initializer(graph: Any, node: Any) -> bool:
    """Move a Constant node's tensor into the initializers (so any node may read it)."""
    tensor = next((a.t for a in node.attribute if a.name == "value" and a.HasField("t")), None)
    if tensor is None:
        return False
    tensor.name = node.output[0]
    graph.initializer.append(tensor)
    graph.node.remove(node)
    return True


def _drop(graph: Any, kind: str, obj: Any) -> None:
    if kind == "initializer":
        graph.initializer.remove(obj)
        for value in list(graph.input):  # old exporters also list initializers as inputs
            if value.name == obj.name:
                graph.input.remove(value)
    else:
        graph.node.remove(obj)


def dedup(source: str | os.PathLike[str] | Any, output: str | os.PathLike[str], options: DedupOptions = DedupOptions(), in_place: bool = False, on_step: Callable[[str], None] | None = None) -> DedupResult:
    """Rewrite an ONNX model to store each shared tensor once; verify it; write it to ``output``.

    Args:
        source: an .onnx file (str or ``os.PathLike``), or an ``onnx.ModelProto``
            in memory (saved to a private temporary folder first; the proto is not changed).
        output: where the verified model goes (external data beside it when the source had some).
        options: what to merge and how strictly to verify (the command's flags).
        in_place: allow ``output`` to be the source file itself.
        on_step: called with the name of each step as it starts (a progress
            display; analysing, verifying and the RAM probe can each take seconds).

    Returns:
        The merges written, bytes before and after, and verification's verdict.

    Raises:
        InputError: an unreadable model or a refused output path.
        VerificationError: the rewrite's outputs differ beyond ``max_error``; nothing written.

    Example:
        >>> import sharescan
        >>> r = sharescan.dedup("model.onnx", "model.dedup.onnx")  # doctest: +SKIP
        >>> r.file_bytes_before - r.file_bytes_after  # doctest: +SKIP
    """
    if isinstance(source, (str, os.PathLike)):
        return _dedup(Path(source), Path(output), options, in_place, on_step or _silent)
    from sharescan.sources.memory import describe

    onnx = sys.modules.get("onnx")
    if onnx is None or not isinstance(source, onnx.ModelProto):
        raise InputError(f"{describe(source)}: dedup rewrites ONNX models; pass an .onnx path or an onnx.ModelProto")
    # Never beside the user's files: a folder of its own, removed afterwards.
    with tempfile.TemporaryDirectory(prefix="sharescan-dedup-") as tmp:
        src = Path(tmp) / "model.onnx"
        _save_proto(source, src)
        return replace(_dedup(src, Path(output), options, False, on_step or _silent), input=describe(source))


def _save_proto(proto: Any, path: Path) -> None:
    try:
        path.write_bytes(proto.SerializeToString())
    except ValueError:  # over protobuf's 2 GB: tensors go to a data file, from a copy (saving converts the proto it is given)
        import onnx

        copy = onnx.ModelProto()
        copy.CopyFrom(proto)
        onnx.save_model(copy, str(path), save_as_external_data=True, location=f"{path.name}.data")


def _silent(step: str) -> None:
    pass


def _dedup(src: Path, out: Path, options: DedupOptions, in_place: bool, on_step: Callable[[str], None]) -> DedupResult:
    from sharescan.analysis import AnalysisOptions

    if not src.is_file():
        raise InputError(f"{src}: no such file; check the path")
    if src.suffix.lower() != ".onnx":
        raise InputError(f"{src}: not an .onnx file; dedup rewrites ONNX models (use `sharescan export` for PyTorch)")
    check_output(out, [src], in_place=in_place)

    on_step("loading and analysing")
    model, data_files, result = _read(src, AnalysisOptions(tol=options.tol, row_tol=None, candidates=0))
    on_step("checking")
    check_model(src)
    before = _tensor_bytes(model)
    on_step("running the original in onnxruntime")
    reference = reference_runs(src, model, options.inputs, options.samples)
    work = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    try:
        # Verification holds an onnxruntime session of each model in turn: the
        # rewritten proto need not stay beside them (a third of the peak RSS).
        on_step("rewriting and verifying")
        first = _attempt(model, result, options, frozenset(), work / "all", out, reference, bool(data_files))
        del model
        dropped: list[DroppedMerge] = []
        chosen = first
        if first.failure:
            on_step("finding the merges verification refuses")
            chosen, dropped = _drop_failing(src, result, options, work, out, reference, first, bool(data_files))
        if options.codebook is not None and not any(m.relation == "codebook" for m in chosen.merges):
            why = next((d.reason for d in dropped if d.merge.relation == "codebook"), f"no float initializer of {options.codebook_min_bytes:,} B or more saves bytes")
            raise VerificationError(f"{out}: no tensor can be stored as a {options.codebook}-bit codebook ({why}); nothing written; raise --max-error or the bits")
        warnings: list[str] = []
        ram: dict[str, dict[str, int]] = {}
        if options.measure_ram:
            on_step("measuring onnxruntime RAM")
            try:
                for label, path in (("before", src), ("after", chosen.staged[0])):
                    ram[label] = {mode: measure_ram(path, reference.first, mode == "recommended", work) for mode in ("default", "recommended")}
            except RuntimeError as e:
                ram = {}
                warnings.append(f"onnxruntime RAM not measured: the probe failed ({e})")
        on_step("writing")
        file_before = src.stat().st_size + sum((src.parent / f).stat().st_size for f in data_files)
        file_after = sum(p.stat().st_size for p in chosen.staged)
        for path in chosen.staged[1:]:
            # onnx writes the data file owner-only; readers of the model need it as readable as the model.
            os.chmod(path, chosen.staged[0].stat().st_mode & 0o777)
            os.replace(path, out.parent / path.name)
        os.replace(chosen.staged[0], out)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    settings: dict[str, Any] = {"tol": options.tol, "rows": options.rows, "max_error": options.max_error, "strip_debug": options.strip_debug, "simplify": options.simplify}
    if options.codebook is not None:  # opt-in: the settings of a run without it stay as they were
        settings["codebook"] = options.codebook
        if options.codebook_uniform:
            settings["codebook_uniform"] = True
        if options.codebook_group_channels is not None:
            settings["codebook_group_channels"] = options.codebook_group_channels
    return DedupResult(
        str(src), str(out), file_before, file_after, before, chosen.tensor_bytes, tuple(chosen.merges), chosen.verdict, chosen.lossy, ram, chosen.folded, settings,
        dropped_merges=tuple(dropped), warnings=tuple(warnings),
    )


@dataclass(frozen=True)
class _Attempt:
    """One rewrite with some merges left out, saved and verified."""

    skipped: frozenset[str]  # the merges left out, by the tensor they would drop
    merges: list[Merge]
    staged: list[Path]
    tensor_bytes: int
    folded: FoldResult | None
    verdict: Verdict
    lossy: bool
    failure: str  # why verification fails; "" when it passes


def _attempt(model: Any, result: Any, options: DedupOptions, skip: frozenset[str], folder: Path, out: Path, reference: Reference, external_data: bool) -> _Attempt:
    """Rewrite ``model`` (consumed) leaving out the merges in ``skip``, save it into ``folder``, verify it."""
    merges = _share(model, result, options, skip)
    folded = simplify(model) if options.simplify else None
    if options.strip_debug:
        strip_debug(model)
    list_initializers_as_inputs(model)
    after = _tensor_bytes(model)
    folder.mkdir()
    staged = _save(model, folder / out.name, external=after > _TWO_GB // 2 or external_data)
    del model
    # What verification expects: bit-identical outputs unless a merge's relation is lossy.
    # A lossless relation found within --tol (a near-permuted copy) carries its error: lossy too.
    lossy = any(m.relation == "codebook" or not detect.relation_named(m.relation).lossless or m.rel_error > 0 for m in merges)
    try:
        check_model(staged[0], label=str(out))
    except VerificationError as e:
        return _Attempt(skip, merges, staged, after, folded, Verdict(False, False, float("inf"), float("inf"), ()), lossy, e.message.replace("; nothing written", ""))
    verdict, failure = check_result(staged[0], reference, lossy, options.max_error)
    return _Attempt(skip, merges, staged, after, folded, verdict, lossy, failure)


def _drop_failing(src: Path, result: Any, options: DedupOptions, work: Path, out: Path, reference: Reference, first: _Attempt, external_data: bool) -> tuple[_Attempt, list[DroppedMerge]]:
    """Find the merges verification refuses by bisection; returns the verified rewrite without them.

    A half that verifies is kept whole; a half that fails is split again, so k
    bad merges among n cost about k log2(n) rebuilds. Each rebuild reloads the
    input (the first rewrite consumed it).
    """
    names = [m.dropped for m in first.merges]
    by_name = {m.dropped: m for m in first.merges}
    attempts: dict[frozenset[str], _Attempt] = {frozenset(): first}
    reasons: dict[str, str] = {}
    counter = iter(range(1, 10**9))

    def verify(keep: list[str]) -> _Attempt:
        skip = frozenset(n for n in names if n not in keep)
        if skip not in attempts:
            model, _ = _load(src)
            attempts[skip] = _attempt(model, result, options, skip, work / f"try{next(counter)}", out, reference, external_data)
        return attempts[skip]

    def search(accepted: list[str], candidates: list[str]) -> list[str]:
        if not candidates:
            return accepted
        trial = verify(accepted + candidates)
        if not trial.failure:
            return accepted + candidates
        if len(candidates) == 1:
            reasons[candidates[0]] = trial.failure
            return accepted
        half = len(candidates) // 2
        return search(search(accepted, candidates[:half]), candidates[half:])

    half = len(names) // 2
    kept = search(search([], names[:half]), names[half:]) if len(names) > 1 else []
    if len(names) == 1:
        reasons[names[0]] = first.failure
    final = verify(kept)
    if final.failure:
        hint = "; rerun without --simplify (a folded constant can change which onnxruntime fusions apply)" if options.simplify else ""
        raise VerificationError(f"{out}: verification failed even with no merge: {final.failure}; nothing written{hint}")
    dropped = [DroppedMerge(by_name[n], reasons.get(n, "left out with a failing merge")) for n in names if n not in kept]
    return final, dropped


def _read(src: Path, options: Any) -> tuple[Any, list[str], Any]:
    """The model with its data, the files that held external data, and the model's analysis.

    A self-contained model is parsed once and analysed in memory: its
    tensors are not read from the file a second time. A model with external
    data is analysed from its files first: the analysis' loader vets every
    data path (NUL bytes, links out of the folder, devices, sizes) before onnx
    opens any of them; the data is then added to the same parsed model.
    """
    import onnx

    from sharescan.analysis import analyze

    try:
        model = onnx.load(str(src), load_external_data=False)
    except Exception as e:  # onnx raises several types for an unreadable file
        analyze([str(src)], options)  # the loader's own message names the file and what is wrong, when it has one
        raise InputError(f"{src}: could not load the model ({e.__class__.__name__}); check that the file is complete and valid ONNX") from None
    data_files = _data_files(model)
    if not data_files:
        try:
            return model, [], analyze(model, options)
        except InputError:
            # Refused in memory: the file's own loader refuses it too, naming the file.
            return model, [], analyze([str(src)], options)
    result = analyze([str(src)], options)
    _add_external_data(model, src)
    return model, data_files, result


def _data_files(model: Any) -> list[str]:
    return sorted({kv.value for t in model.graph.initializer for kv in t.external_data if kv.key == "location"})


def _add_external_data(model: Any, src: Path) -> None:
    import onnx

    try:
        onnx.load_external_data_for_model(model, str(src.parent))
    except Exception as e:  # onnx raises several types for unreadable external data
        raise InputError(f"{src}: could not load the model with its external data ({e.__class__.__name__})") from None


def _load(src: Path) -> tuple[Any, list[str]]:
    """The model with its data, and the files that held external data (the analysis vetted the data paths)."""
    import onnx

    try:
        model = onnx.load(str(src), load_external_data=False)
    except Exception as e:  # onnx raises several types for an unreadable file
        raise InputError(f"{src}: could not load the model ({e.__class__.__name__})") from None
    data_files = _data_files(model)
    if data_files:
        _add_external_data(model, src)
    return model, data_files


def _share(model: Any, result: Any, options: DedupOptions, skip: frozenset[str] = frozenset()) -> list[Merge]:
    """Apply the analysis's groups (and, with ``rows``, whole-tensor rewrites) to the main graph; returns the merges.

    ``skip`` names tensors to leave stored (merges verification refused).
    """
    graph = model.graph
    # Initializers a caller may feed (IR 4+, listed as inputs) are defaults, not constants: they stay.
    fed = overridable(model)
    stored = {name: v for name, v in stored_tensors(graph).items() if name not in fed}
    kept_for: dict[str, str] = {}  # copies rebuilt by no node -> the tensor their readers read now
    front: list[Any] = []  # nodes that rebuild dropped members (Transpose, Neg, Mul)
    merges = [m for g in result.groups for m in _share_group(graph, g, stored, skip, kept_for, front)]
    point_at(graph, kept_for)
    rows_front: list[Any] = []  # whole-tensor rewrites (Gather): first, since a rebuild may read their output
    if options.rows:
        merges += _rewrite_tensors(graph, stored, skip, rows_front)
    if options.codebook is not None:
        rewritten = {m.dropped for m in merges}  # a tensor --rows replaced is no longer stored
        merges += _codebook_tensors(model, {n: v for n, v in stored.items() if n not in rewritten}, skip, rows_front, options)
    # Rebuild nodes read only initializers: placing them first keeps the graph sorted.
    for node in reversed(rows_front + front):
        graph.node.insert(0, node)
    return merges


def _share_group(graph: Any, g: Any, stored: dict[str, Any], skip: frozenset[str], kept_for: dict[str, str], front: list[Any]) -> list[Merge]:
    """Drop the group's other members, each rebuilt as its relation says; updates ``stored``, ``kept_for`` and ``front``."""
    relation = detect.relation_named(g.relation)
    if not relation.drops_members:
        return []
    keep = g.members[0].name
    merges = []
    for m in g.members[1:]:
        if keep not in stored or m.name not in stored or m.name in skip:
            continue  # subgraph tensors and aliases stay as they are
        kind, obj = stored[keep]
        if kind == "constant" and not _constant_to_initializer(graph, obj):
            continue
        stored[keep] = ("initializer", graph.initializer[-1]) if kind == "constant" else stored[keep]
        drop_kind, drop_obj = stored.pop(m.name)
        transform = relation.member_transform(m)
        onnx_dtype = stored[keep][1].data_type
        if not relation.supports(transform, onnx_dtype):
            stored[m.name] = (drop_kind, drop_obj)
            continue  # e.g. onnxruntime has no Neg/Mul kernel for this type on CPU
        _drop(graph, drop_kind, drop_obj)
        rebuild = relation.rebuild(graph, keep, m.name, transform, onnx_dtype)
        if rebuild.nodes:
            front.extend(rebuild.nodes)
        else:
            kept_for[m.name] = keep
        err = (0.0, 0.0) if relation.lossless and g.rel_error == 0 else (g.max_abs_error, g.rel_error)
        merges.append(Merge(g.relation, keep, m.name, rebuild.saved or g.bytes_each, rebuild.how, *err))
    return merges


def _rewrite_tensors(graph: Any, stored: dict[str, Any], skip: frozenset[str], front: list[Any]) -> list[Merge]:
    """Each stored initializer rewritten on its own by the first relation that can (unique rows + Gather)."""
    merges = []
    for name, (kind, obj) in list(stored.items()):
        if kind != "initializer" or name in skip:
            continue
        for relation in detect.RELATIONS:
            rewrite = relation.rewrite_tensor(graph, obj)
            if rewrite is not None:
                _drop(graph, kind, obj)
                front.extend(rewrite.nodes)
                merges.append(Merge(relation.name, "", name, rewrite.saved, rewrite.how))
                break
    return merges


def _codebook_tensors(model: Any, stored: dict[str, Any], skip: frozenset[str], front: list[Any], options: DedupOptions) -> list[Merge]:
    """Each float initializer still stored, of at least ``codebook_min_bytes``, as codebook indices + Gather."""
    from sharescan.codebook.forms import codebook_rewrite
    from sharescan.codebook.onnx_form import default_opset

    assert options.codebook is not None
    graph = model.graph
    opset = default_opset(model)
    merges = []
    for name, (kind, obj) in list(stored.items()):
        if kind != "initializer" or name in skip or tensor_nbytes(obj.data_type, obj.dims) < options.codebook_min_bytes:
            continue
        rewrite = codebook_rewrite(graph, obj, options.codebook, opset, uniform=options.codebook_uniform, group_channels=options.codebook_group_channels)
        if rewrite is not None:
            _drop(graph, kind, obj)
            stored.pop(name)
            front.extend(rewrite.nodes)
            merges.append(Merge("codebook", "", name, rewrite.saved, rewrite.how, rewrite.max_abs_error, rewrite.rel_error))
    return merges


def _save(model: Any, staged: Path, external: bool) -> list[Path]:
    """Write the model (and its data file) into the work folder; returns the model path, then the data file."""
    import onnx

    if not external:
        onnx.save_model(model, str(staged))
        return [staged]
    data_name = f"{staged.name}.data"
    # onnx refuses a data location that exists relative to the current folder: save from inside the work folder.
    here = os.getcwd()
    os.chdir(staged.parent)
    try:
        onnx.save_model(model, staged.name, save_as_external_data=True, all_tensors_to_one_file=True, location=data_name, size_threshold=1024)
    finally:
        os.chdir(here)
    # Tensors under the size threshold stay inline: a small model may need no data file at all.
    return [staged] + [p for p in (staged.parent / data_name,) if p.exists()]
