"""The zoo's near pairs measured on cluster workers: the same groups as in one process, a lost worker measured again here, a changed model said."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import sharescan.zoo.measure as measure
from sharescan.detect.common import measure_pairs
from sharescan.errors import InputError
from sharescan.sources import LoadOptions, load_model
from sharescan.zoo import ZooOptions, scan_zoo
from sharescan.zoo.reopen import ModelRef, ReadCounter

rng = np.random.default_rng(0)


def _save(path: Path, tensors: dict[str, np.ndarray]) -> None:
    from safetensors.numpy import save_file

    save_file(tensors, str(path))


def _fine_tunes(root: Path, n: int = 8) -> None:
    """n fine-tunes of one base: every layer near the base's (some transposed), one layer far."""
    root.mkdir()
    base = {"a": rng.standard_normal((48, 32)).astype(np.float32), "b": rng.standard_normal((32, 32)).astype(np.float32)}
    for k in range(n):
        tuned = {name: (w + 3e-4 * rng.standard_normal(w.shape)).astype(np.float32) for name, w in base.items()}
        if k % 3 == 1:
            tuned["a"] = np.ascontiguousarray(tuned["a"].T)
        if k % 4 == 3:
            tuned["b"] = rng.standard_normal((32, 32)).astype(np.float32)
        _save(root / f"m{k}.safetensors", tuned)


class _Runner:
    """A runner whose tasks run here; ``fail`` makes every task raise as a lost worker's would."""

    threads_per_task = 1
    workers = 2

    def __init__(self, fail: BaseException | None = None) -> None:
        self.fail = fail
        self.runs: list[measure.PairRun] = []

    def map_ordered(self, fn, items):  # type: ignore[no-untyped-def]
        self.runs.extend(items)
        if self.fail is not None:
            raise self.fail
        return [fn(item) for item in items]

    def everywhere(self, fn):  # type: ignore[no-untyped-def]
        fn()


def _spread_everything(monkeypatch: pytest.MonkeyPatch) -> None:
    """Workers cost nothing: every batch is worth sending them."""
    monkeypatch.setattr(measure, "_SECONDS_PER_MODEL", 0.0)
    monkeypatch.setattr(measure, "_SECONDS_PER_BATCH", 0.0)
    monkeypatch.setattr(measure, "_START_SECONDS", 0.0)


def test_near_pairs_measured_on_two_worker_threads_give_the_in_process_groups(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from distributed import LocalCluster

    _fine_tunes(tmp_path / "zoo")
    _spread_everything(monkeypatch)
    log = tmp_path / "runs.txt"  # the task is shipped as a copy: it counts in a file, not in a list here
    real = measure.measure_run

    def counted(run: measure.PairRun):  # type: ignore[no-untyped-def]
        with open(log, "a") as f:
            f.write(f"{len(run.pairs)}\n")
        return real(run)

    monkeypatch.setattr(measure, "measure_run", counted)
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=False, dashboard_address=":0") as cluster:
        spread = scan_zoo(str(tmp_path / "zoo"), ZooOptions(scheduler=cluster.scheduler_address, store=tmp_path / "spread.sqlite"))
    here = scan_zoo(str(tmp_path / "zoo"), ZooOptions(scheduler="none", store=tmp_path / "here.sqlite"))
    sent = [int(n) for n in log.read_text().split()] if log.exists() else []
    assert sum(sent) > 0 and len(sent) > 1, "the near pairs should have gone to the workers in several runs"
    assert any(g.relation == "near" for g in here.groups)
    assert spread.timing.pairs_measured == here.timing.pairs_measured > 0
    assert spread.timing.pairs_on_workers == sum(sent) > 0 and here.timing.pairs_on_workers == 0
    assert 0 < here.timing.measure_seconds <= here.timing.join_seconds
    assert spread.to_dict() | {"timing": None} == here.to_dict() | {"timing": None}


def _measure_for(root: Path, runner: _Runner) -> tuple[measure.SpreadMeasure, list, list[tuple[int, int, bool]]]:
    paths = sorted(str(p) for p in root.glob("*.safetensors"))
    models = [load_model(p, k, LoadOptions()) for k, p in enumerate(paths)]
    entries = [t for m in models for t in m.tensors]
    where = [(k, position) for k, m in enumerate(models) for position in range(len(m.tensors))]
    refs = {k: ModelRef(p, p, tuple(t.name for t in m.tensors)) for k, (p, m) in enumerate(zip(paths, models))}
    spread = measure.SpreadMeasure(lambda start: runner, where, refs, LoadOptions(), ReadCounter())
    b_units = [i for i, e in enumerate(entries) if e.name == "b"]
    pairs = [(b_units[0], j, False) for j in b_units[1:]]
    return spread, entries, pairs


def test_pairs_measured_in_runs_equal_pairs_measured_here_bit_for_bit(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _fine_tunes(tmp_path / "zoo")
    _spread_everything(monkeypatch)
    runner = _Runner()
    spread, entries, pairs = _measure_for(tmp_path / "zoo", runner)
    got = spread(entries, pairs)
    assert len(runner.runs) > 1 and sum(len(r.pairs) for r in runner.runs) == len(pairs)
    want = measure_pairs(entries, pairs)
    assert [(d.max_abs, d.diff_norm, d.norm_a, d.norm_b, d.zero_signs) for d in got] == [(d.max_abs, d.diff_norm, d.norm_a, d.norm_b, d.zero_signs) for d in want]


def test_the_workers_let_go_of_the_models_they_opened_when_the_join_ends(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _fine_tunes(tmp_path / "zoo")
    _spread_everything(monkeypatch)
    spread, entries, pairs = _measure_for(tmp_path / "zoo", _Runner())
    spread(entries, pairs)
    held = measure._worker_join
    assert held is not None and held[0] == spread.join and held[1].open  # the "worker" (this process) kept its models
    spread.close()
    assert measure._worker_join is None


def test_a_lost_worker_has_its_pairs_measured_here(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _fine_tunes(tmp_path / "zoo")
    _spread_everything(monkeypatch)
    spread, entries, pairs = _measure_for(tmp_path / "zoo", _Runner(fail=RuntimeError("worker lost")))
    got = spread(entries, pairs)
    assert [d.diff_norm for d in got] == [d.diff_norm for d in measure_pairs(entries, pairs)]


def test_a_model_changed_since_its_digest_is_said_by_the_worker_that_reopens_it(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _fine_tunes(tmp_path / "zoo")
    _spread_everything(monkeypatch)
    spread, entries, pairs = _measure_for(tmp_path / "zoo", _Runner())
    _save(tmp_path / "zoo" / "m3.safetensors", {"renamed": np.zeros((4, 4), np.float32)})
    with pytest.raises(InputError, match="m3.safetensors: changed while the zoo was scanned"):
        spread(entries, pairs)


def test_batches_cheaper_here_than_on_the_workers_stay_in_this_process(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _fine_tunes(tmp_path / "zoo")
    runner = _Runner()
    spread, entries, pairs = _measure_for(tmp_path / "zoo", runner)
    spread(entries, pairs)  # 7 pairs of 32x32: microseconds here, a round trip and 8 reopened models there
    assert runner.runs == []
    # Elements that cost far more than the workers' overheads: sent.
    monkeypatch.setattr(measure, "_SECONDS_PER_ELEMENT", 1.0)
    spread(entries, pairs)
    assert len(runner.runs) > 1


def test_near_pairs_measured_in_two_worker_processes_give_the_in_process_groups(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Worker processes: runs, options and model references cross a process boundary, and each worker keeps its own open models.
    _fine_tunes(tmp_path / "zoo")
    _spread_everything(monkeypatch)
    spread = scan_zoo(str(tmp_path / "zoo"), ZooOptions(workers=2, store=tmp_path / "spread.sqlite"))
    here = scan_zoo(str(tmp_path / "zoo"), ZooOptions(scheduler="none", store=tmp_path / "here.sqlite"))
    assert spread.timing.pairs_on_workers == spread.timing.pairs_measured > 0
    assert spread.to_dict() | {"timing": None} == here.to_dict() | {"timing": None}
