"""sharescan zoo: cross-model groups equal to analyze's, a store that spares rescans, bad input told in one line.

Zoos are a few small models built in tmp_path (safetensors, ONNX, a PyTorch
state dict, a Hugging Face folder). Every scan but the LocalCluster test runs
in this process (``--scheduler none``).
"""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import xxhash

import sharescan
from sharescan.zoo import ZooOptions, ZooProgress, ZooResult, scan_zoo
from sharescan.zoo.summary import _group
from tests.conftest import ROOT
from tests.helpers import run_cli

IN_PROCESS = ZooOptions(scheduler="none")


def _save_safetensors(path: Path, tensors: dict[str, np.ndarray]) -> None:
    from safetensors.numpy import save_file

    save_file(tensors, str(path))


def _save_onnx(path: Path, weight: np.ndarray) -> None:
    import onnx
    from onnx import helper, numpy_helper

    rows, cols = weight.shape
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "W"], ["y"])], "g",
        [helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, [1, rows])],
        [helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, [1, cols])],
        [numpy_helper.from_array(weight, "W")],
    )
    onnx.save(helper.make_model(graph), str(path))


def _make_zoo(root: Path, seed: int = 0) -> dict[str, np.ndarray]:
    """base; a fine-tune (one layer copied, the others near); a transposed copy; an ONNX copy; a .pt state dict (a negated copy);
    an HF folder whose embedding extends base's vocabulary (the same rows, then new ones)."""
    rng = np.random.default_rng(seed)
    root.mkdir(parents=True, exist_ok=True)
    base = {f"layer{k}.weight": rng.standard_normal((64, 48)).astype(np.float32) for k in range(3)}
    base["bias"] = rng.standard_normal(48).astype(np.float32)
    base["embed"] = rng.standard_normal((40, 24)).astype(np.float32)
    _save_safetensors(root / "base.safetensors", base)
    tuned = {k: v + (1e-4 * rng.standard_normal(v.shape)).astype(np.float32) for k, v in base.items()}
    tuned["layer0.weight"] = base["layer0.weight"].copy()
    _save_safetensors(root / "tuned.safetensors", tuned)
    _save_safetensors(root / "export.safetensors", {"emb": np.ascontiguousarray(base["layer1.weight"].T), "own": rng.standard_normal((16, 16)).astype(np.float32)})
    (root / "onnx").mkdir(exist_ok=True)
    _save_onnx(root / "onnx" / "m.onnx", base["layer2.weight"])
    import torch

    torch.save({"w": torch.from_numpy(-base["layer2.weight"]), "b": torch.from_numpy(base["bias"].copy())}, root / "neg.pt")
    hf = root / "hf-model"
    hf.mkdir(exist_ok=True)
    (hf / "config.json").write_text("{}")
    bigger_vocab = np.concatenate([base["embed"], rng.standard_normal((8, 24)).astype(np.float32)])
    _save_safetensors(hf / "model.safetensors", {"decoder.weight": base["layer0.weight"].copy(), "embed": bigger_vocab})
    return base


def _groups_of(result: sharescan.result.AnalysisResult) -> list[dict]:
    return [_group(g).to_dict() for g in result.groups]


def _ok_paths(result: ZooResult) -> list[str]:
    return [m.path for m in result.models if m.status == "ok"]


def test_groups_equal_analyze_over_the_same_models(tmp_path: Path) -> None:
    _make_zoo(tmp_path / "zoo")
    zoo = scan_zoo(str(tmp_path / "zoo"), IN_PROCESS)
    paths = _ok_paths(zoo)
    assert len(paths) == 6 and zoo.totals.skipped == 0
    plain = sharescan.analyze(paths)
    assert [g.to_dict() for g in zoo.groups] == _groups_of(plain)
    relations = {g.relation for g in zoo.groups if g.across_models}
    assert {"identical", "transposed", "near", "negated", "rows"} <= relations
    assert zoo.totals.reclaimable_bytes == plain.totals.reclaimable_bytes > 0
    assert zoo.totals.input_bytes == plain.totals.unique_bytes
    assert zoo.totals.unique_bytes == plain.totals.after_bytes
    assert zoo.totals.content_addressed_bytes == plain.totals.unique_bytes - dict(plain.totals.by_relation)["identical"]
    # This zoo's near merges touch no tensor an exact relation merges: exact-only is analyze --exact's answer.
    exact = sharescan.analyze(paths, sharescan.AnalysisOptions(tol=None, row_tol=None))
    assert zoo.totals.unique_bytes < zoo.totals.exact_unique_bytes == exact.totals.after_bytes < zoo.totals.content_addressed_bytes
    assert [m.reclaimable_bytes for m in zoo.models] == [m.reclaimable_bytes for m in plain.models]
    # One family: every model but none is linked to base through some group.
    assert len(zoo.families) == 1 and set(zoo.families[0].models) == set(paths)
    assert zoo.families[0].shared_bytes == plain.totals.reclaimable_across_models_bytes


def test_exact_settings_are_passed_to_the_detectors(tmp_path: Path) -> None:
    _make_zoo(tmp_path / "zoo")
    zoo = scan_zoo(str(tmp_path / "zoo"), ZooOptions(scheduler="none", tol=None, row_tol=None))
    plain = sharescan.analyze(_ok_paths(zoo), sharescan.AnalysisOptions(tol=None, row_tol=None))
    assert [g.to_dict() for g in zoo.groups] == _groups_of(plain)
    assert "near" not in {g.relation for g in zoo.groups}


def test_rescan_of_an_unchanged_zoo_reads_no_model(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _make_zoo(tmp_path / "zoo")
    first = scan_zoo(str(tmp_path / "zoo"), IN_PROCESS)
    assert first.timing.digested == 6 and first.timing.from_store == 0

    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("a model was opened")

    monkeypatch.setattr("sharescan.sources.load_model", refuse)
    monkeypatch.setattr("sharescan.zoo.reopen.load_model", refuse)
    again = scan_zoo(str(tmp_path / "zoo"), IN_PROCESS)
    assert (again.timing.digested, again.timing.from_store, again.timing.result_from_store, again.timing.tensors_read) == (0, 6, True, 0)
    assert again.to_dict() | {"timing": None} == first.to_dict() | {"timing": None}


def test_changed_model_is_digested_again_and_only_it(tmp_path: Path) -> None:
    base = _make_zoo(tmp_path / "zoo")
    first = scan_zoo(str(tmp_path / "zoo"), IN_PROCESS)
    assert any(m.model.endswith("export.safetensors") for g in first.groups for m in g.members)
    target = tmp_path / "zoo" / "export.safetensors"
    _save_safetensors(target, {"emb": np.ascontiguousarray(base["layer1.weight"].T) + 1.0, "own": np.arange(256, dtype=np.float32).reshape(16, 16) * 0.37 + 1.0})
    st = target.stat()
    os.utime(target, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000))  # a coarse clock may give the rewrite the old mtime
    again = scan_zoo(str(tmp_path / "zoo"), IN_PROCESS)
    assert (again.timing.digested, again.timing.from_store, again.timing.result_from_store) == (1, 5, False)
    assert not any(m.model.endswith("export.safetensors") for g in again.groups for m in g.members)
    assert [g.to_dict() for g in again.groups] == _groups_of(sharescan.analyze(_ok_paths(again)))


def test_store_keeps_each_tensors_content_hash(tmp_path: Path) -> None:
    base = _make_zoo(tmp_path / "zoo")
    store = tmp_path / "digests.sqlite"
    scan_zoo(str(tmp_path / "zoo"), ZooOptions(scheduler="none", store=store))
    with sqlite3.connect(store) as db:
        (content,) = db.execute("SELECT content FROM tensors WHERE model LIKE '%base.safetensors' AND name = 'layer0.weight'").fetchone()
    assert content % (1 << 64) == xxhash.xxh3_64_intdigest(base["layer0.weight"].tobytes())
    assert not (tmp_path / "zoo.sharescan.sqlite").exists()  # --store was used, not the default


def test_default_store_sits_beside_the_folder_or_in_the_manifests_folder(tmp_path: Path) -> None:
    _make_zoo(tmp_path / "zoo")
    scan_zoo(str(tmp_path / "zoo"), IN_PROCESS)
    assert (tmp_path / "zoo.sharescan.sqlite").is_file()
    lists = tmp_path / "lists"
    lists.mkdir()
    (lists / "few.txt").write_text("# two models\n../zoo/base.safetensors\n\n../zoo/tuned.safetensors\n../zoo/base.safetensors\n")
    result = scan_zoo(str(lists / "few.txt"), IN_PROCESS)
    assert [m.path for m in result.models] == [str(lists / "../zoo/base.safetensors"), str(lists / "../zoo/tuned.safetensors")]
    assert (lists / "few.sharescan.sqlite").is_file()


def test_unreadable_model_is_skipped_with_one_warning_and_listed(tmp_path: Path) -> None:
    _make_zoo(tmp_path / "zoo")
    (tmp_path / "zoo" / "broken.safetensors").write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{not json")
    proc = run_cli("zoo", str(tmp_path / "zoo"), "--scheduler", "none", "--json")
    assert proc.returncode == 0, proc.stderr
    lines = proc.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("warning: ") and "broken.safetensors" in lines[0] and lines[0].endswith("skipped")
    data = json.loads(proc.stdout)
    broken = [m for m in data["models"] if m["path"].endswith("broken.safetensors")]
    assert broken == [{**broken[0], "status": "skipped"}] and "corrupt" in broken[0]["reason"]
    assert data["totals"]["skipped"] == 1 and data["totals"]["models"] == 7
    # Told again on a rescan that reads nothing.
    again = run_cli("zoo", str(tmp_path / "zoo"), "--scheduler", "none", "--json")
    assert again.stderr == proc.stderr and json.loads(again.stdout)["timing"]["result_from_store"] is True


def test_json_keeps_the_documented_keys(tmp_path: Path) -> None:
    _make_zoo(tmp_path / "zoo")
    data = json.loads(run_cli("zoo", str(tmp_path / "zoo"), "--scheduler", "none", "--json").stdout)
    assert {"models", "groups", "families", "totals", "timing"} <= set(data)
    assert {"path", "format", "bytes", "tensors", "reclaimable_bytes", "status", "reason"} <= set(data["models"][0])
    assert {"relation", "bytes_reclaimable", "members", "rel_error"} <= set(data["groups"][0])
    assert {"model", "tensor"} <= set(data["groups"][0]["members"][0])
    assert {"models", "shared_bytes"} <= set(data["families"][0])
    assert {"models", "skipped", "input_bytes", "unique_bytes", "exact_unique_bytes", "content_addressed_bytes", "reclaimable_bytes"} <= set(data["totals"])
    assert {"seconds", "digested", "from_store"} <= set(data["timing"])


def test_terminal_and_markdown_reports_name_families_and_skipped_models(tmp_path: Path) -> None:
    _make_zoo(tmp_path / "zoo")
    (tmp_path / "zoo" / "empty.onnx").write_bytes(b"")
    report = tmp_path / "zoo.md"
    proc = run_cli("zoo", "zoo", "--scheduler", "none", "--report", str(report), cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    first = proc.stdout.splitlines()[0]
    assert first.startswith("7 models (1 skipped):")
    for text in (proc.stdout, report.read_text()):
        assert "Families (1)" in text and "zoo/neg.pt" in text and "layer0.weight" in text
        assert "zoo/empty.onnx: empty file" in text


def test_interrupted_scan_resumes_from_the_store(tmp_path: Path) -> None:
    _make_zoo(tmp_path / "zoo")

    class StopAfterTwo(ZooProgress):
        count = 0

        def digested(self, label: str, record: object) -> None:
            self.count += 1
            if self.count == 2:
                raise KeyboardInterrupt  # what Ctrl-C does between two models

    with pytest.raises(KeyboardInterrupt):
        scan_zoo(str(tmp_path / "zoo"), IN_PROCESS, StopAfterTwo())
    resumed = scan_zoo(str(tmp_path / "zoo"), IN_PROCESS)
    assert (resumed.timing.digested, resumed.timing.from_store) == (4, 2)
    fresh = scan_zoo(str(tmp_path / "zoo"), ZooOptions(scheduler="none", store=tmp_path / "fresh.sqlite"))
    assert resumed.to_dict() | {"timing": None} == fresh.to_dict() | {"timing": None}


def test_unreachable_scheduler_is_one_error_line_and_exit_2(tmp_path: Path) -> None:
    _make_zoo(tmp_path / "zoo")
    proc = run_cli("zoo", str(tmp_path / "zoo"), "--scheduler", "tcp://127.0.0.1:1", "--connect-timeout", "0.5")
    assert proc.returncode == 2 and proc.stdout == ""
    lines = proc.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: --scheduler tcp://127.0.0.1:1: cannot reach")
    assert not (tmp_path / "zoo.sharescan.sqlite").exists()  # nothing written


def test_bad_targets_are_refused_in_one_line(tmp_path: Path) -> None:
    _make_zoo(tmp_path / "zoo")
    for args, says in (
        (["zoo", str(tmp_path / "missing")], "no such folder or manifest"),
        (["zoo", str(tmp_path / "zoo" / "base.safetensors")], "is a model file"),
        (["zoo", str(tmp_path / "zoo"), "--scheduler", "none", "--store", str(tmp_path / "zoo" / "base.safetensors")], "not a sharescan digest store"),
        (["zoo", str(tmp_path / "zoo"), "--exact", "--tol", "1e-3"], "--exact excludes"),
        (["zoo", str(tmp_path / "zoo"), "--scheduler", "none", "--workers", "2"], "--workers sizes the local cluster"),
        (["zoo", str(tmp_path / "zoo"), "--workers", "0"], "must be 1 or more"),
    ):
        proc = run_cli(*args)
        assert proc.returncode == 2 and len(proc.stderr.splitlines()) == 1 and proc.stderr.startswith("error: ") and says in proc.stderr, proc.stderr


def test_local_cluster_with_two_workers_gives_the_in_process_result(tmp_path: Path) -> None:
    # A real dask.distributed LocalCluster: two worker processes.
    _make_zoo(tmp_path / "zoo")
    on_dask = scan_zoo(str(tmp_path / "zoo"), ZooOptions(workers=2, store=tmp_path / "dask.sqlite"))
    here = scan_zoo(str(tmp_path / "zoo"), ZooOptions(scheduler="none", store=tmp_path / "here.sqlite"))
    assert on_dask.timing.digested == 6
    assert on_dask.to_dict() | {"timing": None} == here.to_dict() | {"timing": None}


def test_help_imports_neither_dask_nor_torch_and_shows_the_store_default() -> None:
    code = "import sys\nfrom sharescan.cli import cli\ntry:\n    cli.main(['zoo', '--help'], standalone_mode=False)\nexcept SystemExit:\n    pass\nprint('\\n'.join(sys.modules))\n"
    proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    modules = set(proc.stdout.split())
    assert not {"dask", "distributed", "torch"} & modules
    assert "ROOT.sharescan.sqlite" in proc.stdout and "sharescan zoo " in proc.stdout.split("Examples:")[1]


def test_large_families_and_groups_are_cut_in_tables_but_listed_whole_in_json(tmp_path: Path) -> None:
    weight = np.random.default_rng(3).standard_normal((32, 16)).astype(np.float32)
    (tmp_path / "zoo").mkdir()
    for k in range(10):
        _save_safetensors(tmp_path / "zoo" / f"copy{k}.safetensors", {"w": weight})
    proc = run_cli("zoo", "zoo", "--scheduler", "none", cwd=tmp_path)
    assert "and 2 more" in proc.stdout and "and 4 more" in proc.stdout  # 10 models: 8 shown; 10 members: 6 shown
    data = json.loads(run_cli("zoo", "zoo", "--scheduler", "none", "--json", cwd=tmp_path).stdout)
    assert len(data["families"][0]["models"]) == 10 and len(data["groups"][0]["members"]) == 10


def test_a_model_reached_twice_through_a_symlink_is_scanned_once(tmp_path: Path) -> None:
    _make_zoo(tmp_path / "zoo")
    (tmp_path / "zoo" / "again.safetensors").symlink_to(tmp_path / "zoo" / "base.safetensors")
    result = scan_zoo(str(tmp_path / "zoo"), IN_PROCESS)
    assert len(result.models) == 6 and not any(m.path.endswith("again.safetensors") for m in result.models)


def test_a_store_that_cannot_be_written_is_one_error_line(tmp_path: Path) -> None:
    _make_zoo(tmp_path / "zoo")
    proc = run_cli("zoo", str(tmp_path / "zoo"), "--scheduler", "none", "--store", str(tmp_path / "no-such-folder" / "s.sqlite"))
    assert proc.returncode == 2 and proc.stderr.startswith("error: ") and len(proc.stderr.splitlines()) == 1


def test_a_running_scheduler_is_reached_by_its_address(tmp_path: Path) -> None:
    # A cluster started apart (threads, processes=False, to stay quick), reached the way a remote one is.
    from distributed import LocalCluster

    _make_zoo(tmp_path / "zoo")
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=False, dashboard_address=":0") as cluster:
        remote = scan_zoo(str(tmp_path / "zoo"), ZooOptions(scheduler=cluster.scheduler_address, store=tmp_path / "remote.sqlite"))
    here = scan_zoo(str(tmp_path / "zoo"), ZooOptions(scheduler="none", store=tmp_path / "here.sqlite"))
    assert remote.timing.digested == 6
    assert remote.to_dict() | {"timing": None} == here.to_dict() | {"timing": None}


def test_an_analysis_kept_in_an_older_form_is_searched_again(tmp_path: Path) -> None:
    _make_zoo(tmp_path / "zoo")
    first = scan_zoo(str(tmp_path / "zoo"), IN_PROCESS)
    with sqlite3.connect(tmp_path / "zoo.sharescan.sqlite") as db:
        (body,) = db.execute("SELECT body FROM results").fetchone()
        old = json.loads(body)
        del old["totals"]["content_addressed_bytes"]  # a key an earlier sharescan did not write
        db.execute("UPDATE results SET body = ?", (json.dumps(old),))
    again = scan_zoo(str(tmp_path / "zoo"), IN_PROCESS)
    assert (again.timing.digested, again.timing.result_from_store) == (0, False)
    assert again.to_dict() | {"timing": None} == first.to_dict() | {"timing": None}


def test_a_change_to_external_data_alone_is_noticed(tmp_path: Path) -> None:
    import onnx

    (tmp_path / "zoo").mkdir()
    weight = np.random.default_rng(5).standard_normal((32, 16)).astype(np.float32)
    _save_onnx(tmp_path / "zoo" / "a.onnx", weight)
    model = onnx.load(str(tmp_path / "zoo" / "a.onnx"))
    onnx.save(model, str(tmp_path / "zoo" / "b.onnx"), save_as_external_data=True, location="b.onnx.data", size_threshold=0)
    first = scan_zoo(str(tmp_path / "zoo"), IN_PROCESS)
    assert [g.relation for g in first.groups] == ["identical"] and len(first.models) == 2  # the .data file is not a model
    data = tmp_path / "zoo" / "b.onnx.data"
    data.write_bytes((-weight).tobytes())  # the graph file is untouched
    st = data.stat()
    os.utime(data, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000))
    again = scan_zoo(str(tmp_path / "zoo"), IN_PROCESS)
    assert (again.timing.digested, again.timing.from_store) == (1, 1)
    assert [g.relation for g in again.groups] == ["negated"]


def test_confirming_reads_take_each_tensor_from_its_file_once_and_repeats_from_memory(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import sharescan.zoo.reopen as reopen

    _make_zoo(tmp_path / "zoo")
    reads: list[tuple[int, object]] = []
    read_at, read_loaded = reopen.Reopener._read_at, reopen.Reopener._read_loaded

    def counting_at(self: reopen.Reopener, k: int, ref: reopen.ModelRef, place: reopen.Place):  # type: ignore[no-untyped-def]
        reads.append((k, place))
        return read_at(self, k, ref, place)

    def counting_loaded(self: reopen.Reopener, k: int, position: int):  # type: ignore[no-untyped-def]
        reads.append((k, position))
        return read_loaded(self, k, position)

    monkeypatch.setattr(reopen.Reopener, "_read_at", counting_at)
    monkeypatch.setattr(reopen.Reopener, "_read_loaded", counting_loaded)
    zoo = scan_zoo(str(tmp_path / "zoo"), IN_PROCESS)
    assert reads and len(reads) == len(set(reads)) == zoo.timing.tensors_read
    monkeypatch.setattr(reopen, "_CACHED_BYTES", 0)
    reads.clear()
    again = scan_zoo(str(tmp_path / "zoo"), ZooOptions(scheduler="none", store=tmp_path / "other.sqlite"))
    assert len(reads) > len(set(reads))  # without the cache the same tensors are read again
    assert [g.to_dict() for g in again.groups] == [g.to_dict() for g in zoo.groups]


def _fails_on_three(item: int) -> int:
    if item == 3:
        raise RuntimeError("worker lost")
    return item * 10


def test_the_join_reads_tensors_where_their_records_place_them_without_reopening_a_model(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import sharescan.zoo.task as task

    _make_zoo(tmp_path / "zoo")
    placed = scan_zoo(str(tmp_path / "zoo"), IN_PROCESS)
    assert placed.timing.tensors_read > 0 and placed.timing.models_reopened == 0  # safetensors, ONNX, .pt, a folder: all placed
    monkeypatch.setattr(task, "_locations", lambda entries, stamps: [None] * len(entries))
    loaded = scan_zoo(str(tmp_path / "zoo"), ZooOptions(scheduler="none", store=tmp_path / "unplaced.sqlite"))
    assert loaded.timing.models_reopened > 0
    assert [g.to_dict() for g in loaded.groups] == [g.to_dict() for g in placed.groups]


def test_a_file_changed_after_its_digest_is_said_when_the_join_reads_it(tmp_path: Path) -> None:
    from sharescan.errors import InputError
    from sharescan.zoo.join import JoinSettings, join_records
    from sharescan.zoo.task import digest_model

    rng = np.random.default_rng(3)
    w = rng.standard_normal((64, 48)).astype(np.float32)
    _save_safetensors(tmp_path / "a.safetensors", {"w": w})
    _save_safetensors(tmp_path / "b.safetensors", {"w": w + np.float32(1e-5)})
    records = [digest_model(str(tmp_path / name)) for name in ("a.safetensors", "b.safetensors")]
    assert all(t.at is not None for r in records for t in r.tensors)
    _save_safetensors(tmp_path / "b.safetensors", {"w": -w})  # the same size and names, other bytes
    st = (tmp_path / "b.safetensors").stat()
    os.utime(tmp_path / "b.safetensors", ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000))
    with pytest.raises(InputError, match="b.safetensors: changed while the zoo was scanned"):
        join_records(records, ["a", "b.safetensors"], JoinSettings(2e-3, 2e-3))


def test_the_store_keeps_the_samples_of_equal_tensors_once_and_drops_them_with_their_last_tensor(tmp_path: Path) -> None:
    rng = np.random.default_rng(7)
    frozen = rng.standard_normal((64, 48)).astype(np.float32)
    zoo = tmp_path / "zoo"
    zoo.mkdir()
    for k in range(3):  # a frozen layer shared by three fine-tunes, and a layer of each's own
        _save_safetensors(zoo / f"m{k}.safetensors", {"frozen": frozen.copy(), "own": rng.standard_normal((64, 48)).astype(np.float32)})
    store = tmp_path / "s.sqlite"
    first = scan_zoo(str(zoo), ZooOptions(scheduler="none", store=store))
    with sqlite3.connect(store) as db:
        assert db.execute("SELECT COUNT(*) FROM samples").fetchone()[0] == 4  # frozen once, own three times
    # Read back from the store (an unrelated change forces the join again), the groups are the same.
    _save_safetensors(zoo / "m3.safetensors", {"other": rng.standard_normal((8, 8)).astype(np.float32)})
    again = scan_zoo(str(zoo), ZooOptions(scheduler="none", store=store))
    assert (again.timing.digested, again.timing.from_store) == (1, 3)
    assert [g.to_dict() for g in again.groups] == [g.to_dict() for g in first.groups] and first.groups
    for k in range(3):
        (zoo / f"m{k}.safetensors").unlink()
    scan_zoo(str(zoo), ZooOptions(scheduler="none", store=store))
    with sqlite3.connect(store) as db:
        assert db.execute("SELECT COUNT(*) FROM samples").fetchone()[0] == 1  # m3's alone
        assert db.execute("SELECT COUNT(*) FROM tensors").fetchone()[0] == 1


def test_tasks_of_several_models_lose_only_the_model_that_fails_them() -> None:
    # Models are digested several to a task; a task that fails is run again one
    # model at a time, so only the failing model is reported as failed.
    from distributed import Client, LocalCluster

    import sharescan.zoo.cluster as cluster

    with LocalCluster(n_workers=1, threads_per_worker=1, processes=False, dashboard_address=":0") as local, Client(local) as client:
        runner = cluster._Dask(client)
        items = list(range(40))
        out = list(runner.map_unordered(_fails_on_three, items, lambda item, e: -item))
    assert sorted(out) == sorted([-3] + [i * 10 for i in items if i != 3])
    assert len(items) // 16 > 1  # several models a task: the batch holding 3 was retried


def test_models_deleted_from_disk_leave_the_store_and_models_listed_elsewhere_stay(tmp_path: Path) -> None:
    _make_zoo(tmp_path / "zoo")
    store = tmp_path / "s.sqlite"
    scan_zoo(str(tmp_path / "zoo"), ZooOptions(scheduler="none", store=store))
    (tmp_path / "other.txt").write_text(str(tmp_path / "zoo" / "base.safetensors") + "\n")
    (tmp_path / "zoo" / "tuned.safetensors").unlink()
    # A manifest naming one model, sharing the store: the others are not listed, yet still on disk.
    scan_zoo(str(tmp_path / "other.txt"), ZooOptions(scheduler="none", store=store))
    with sqlite3.connect(store) as db:
        models = {Path(p).name for (p,) in db.execute("SELECT path FROM models")}
        orphans = db.execute("SELECT COUNT(*) FROM tensors WHERE model NOT IN (SELECT path FROM models)").fetchone()[0]
    assert "tuned.safetensors" not in models and orphans == 0
    assert {"base.safetensors", "export.safetensors", "neg.pt", "m.onnx", "hf-model"} <= models


def test_a_killed_scan_keeps_the_records_committed_before_it_died(tmp_path: Path) -> None:
    # Records are committed at most _COMMIT_SECONDS apart; at 0 each one is, and a scan
    # killed without closing its store (no KeyboardInterrupt, no finally) keeps them.
    _make_zoo(tmp_path / "zoo")
    code = (
        "import os, sys\n"
        "import sharescan.zoo.store as store\n"
        "from sharescan.zoo import ZooOptions, ZooProgress, scan_zoo\n"
        "store._COMMIT_SECONDS = 0\n"
        "class Die(ZooProgress):\n"
        "    n = 0\n"
        "    def digested(self, label, record):\n"
        "        self.n += 1\n"
        "        if self.n == 3:\n"
        "            os._exit(0)\n"
        "scan_zoo(sys.argv[1], ZooOptions(scheduler='none'), Die())\n"
    )
    subprocess.run([sys.executable, "-c", code, str(tmp_path / "zoo")], cwd=ROOT, check=True, timeout=120)
    resumed = scan_zoo(str(tmp_path / "zoo"), IN_PROCESS)
    assert (resumed.timing.digested, resumed.timing.from_store) == (3, 3)


def test_a_rescan_answered_from_the_store_imports_neither_numpy_nor_the_detectors(tmp_path: Path) -> None:
    _make_zoo(tmp_path / "zoo")
    scan_zoo(str(tmp_path / "zoo"), IN_PROCESS)
    code = (
        "import sys\n"
        "from sharescan.cli import cli\n"
        "try:\n"
        f"    cli.main(['zoo', {str(tmp_path / 'zoo')!r}, '--scheduler', 'none', '--json'], standalone_mode=False)\n"
        "except SystemExit:\n"
        "    pass\n"
        "print('modules:', ' '.join(sys.modules))\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    report, modules_line = proc.stdout.rsplit("modules:", 1)
    modules = set(modules_line.split())
    assert json.loads(report)["timing"]["result_from_store"] is True
    assert not {"numpy", "sharescan.detect", "sharescan.analysis", "dask", "torch"} & modules
