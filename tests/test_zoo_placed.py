"""Placed reads: a zoo's join reads each tensor from the file range its record names, the same bytes the loader reads.

One zoo mixes every format whose tensors can be placed: safetensors with
bfloat16, float8, scalar and zero-size tensors; a sharded Hugging Face
folder; an ONNX file with raw data (and one tensor in float_data, left to
the loader); an ONNX file with external data; a ``.pt`` checkpoint of views
(slices, a strided view, a transpose, a flat window, tied names); a symlink.
"""

from __future__ import annotations

import json
import os
import shutil
import threading
from pathlib import Path

import numpy as np
import pytest

import sharescan
from sharescan.errors import InputError
from sharescan.sources import LoadOptions, load_model
from sharescan.zoo import ZooOptions, scan_zoo
from sharescan.zoo.join import _ref
from sharescan.zoo.reopen import ReadCounter, Reopener
from sharescan.zoo.store import DigestStore
from sharescan.zoo.summary import _group
from sharescan.zoo.task import digest_model

MODELS = ["dt.safetensors", "hf", "views.pt", "raw.onnx", "ext/m.onnx", "link.safetensors"]


def _onnx_model(initializers: list) -> object:
    import onnx
    from onnx import helper

    io = [helper.make_tensor_value_info(n, onnx.TensorProto.FLOAT, [1]) for n in ("x", "y")]
    return helper.make_model(helper.make_graph([helper.make_node("Identity", ["x"], ["y"])], "g", io[:1], io[1:], initializers))


def _mixed_zoo(root: Path) -> Path:
    """Every format above, with tensors related across models (copies, transposes, negations, scalings, rows)."""
    import onnx
    import torch
    from onnx import helper, numpy_helper
    from safetensors.numpy import save_file
    from safetensors.torch import save_file as save_torch

    rng = np.random.default_rng(7)
    root.mkdir(parents=True, exist_ok=True)
    w = rng.standard_normal((64, 48)).astype(np.float32)
    tw = torch.from_numpy(w)
    save_torch(
        {"bf": tw.to(torch.bfloat16), "f8": tw.to(torch.float8_e4m3fn), "f8b": tw.to(torch.float8_e5m2), "z": torch.zeros((0, 5)),
         "s": torch.tensor(3.0), "small": torch.arange(6, dtype=torch.int8).reshape(2, 3), "w": tw.clone()},
        str(root / "dt.safetensors"),
    )  # fmt: skip
    hf = root / "hf"
    hf.mkdir()
    (hf / "config.json").write_text("{}")
    save_file({"a": w.copy()}, str(hf / "model-00001-of-00002.safetensors"))
    save_file({"b": w * 2, "c": rng.standard_normal(7).astype(np.float32)}, str(hf / "model-00002-of-00002.safetensors"))
    shards = {"a": "model-00001-of-00002.safetensors", "b": "model-00002-of-00002.safetensors", "c": "model-00002-of-00002.safetensors"}
    (hf / "model.safetensors.index.json").write_text(json.dumps({"metadata": {}, "weight_map": shards}))
    base = torch.from_numpy(np.concatenate([w[:32], rng.standard_normal((32, 48)).astype(np.float32)], axis=1))  # (32, 96): rows of w begin it
    views = {"full": base, "row": base[3:9], "col": base[:, 5:20], "t": base.t(), "strided": base[::2], "tied": base,
             "flat": base.view(-1)[100:400], "bfv": base.to(torch.bfloat16)[4:10], "empty": base[0:0], "one": base[5], "neg": -tw}  # fmt: skip
    torch.save(views, root / "views.pt")
    raw = [numpy_helper.from_array(w, "W"), numpy_helper.from_array(-w, "N"), numpy_helper.from_array(np.arange(5, dtype=np.int64), "i"),
           helper.make_tensor("fd", onnx.TensorProto.FLOAT, [3], [1.0, 2.0, 3.0])]  # fmt: skip
    onnx.save(_onnx_model(raw), str(root / "raw.onnx"))
    (root / "ext").mkdir()
    external = [numpy_helper.from_array(np.ascontiguousarray(w.T), "WT"), numpy_helper.from_array(w * 3, "W3")]
    onnx.save(_onnx_model(external), str(root / "ext" / "m.onnx"), save_as_external_data=True, all_tensors_to_one_file=True, location="m.data", size_threshold=0)
    os.symlink("dt.safetensors", root / "link.safetensors")  # a relative link
    return root


def _reopener(records: list, labels: list[str]) -> Reopener:
    return Reopener(LoadOptions(), {k: _ref(r, label) for k, (r, label) in enumerate(zip(records, labels))}, ReadCounter())


def test_placed_reads_equal_the_loaders_reads_for_every_tensor_of_every_format(tmp_path: Path) -> None:
    root = _mixed_zoo(tmp_path / "zoo")
    paths = [str(root / m) for m in MODELS]
    records = [digest_model(p) for p in paths]
    assert all(r.ok for r in records), [r.reason for r in records]
    reopener = _reopener(records, paths)
    placed = 0
    for k, (path, record) in enumerate(zip(paths, records)):
        loaded = load_model(path, k, LoadOptions())
        assert [e.name for e in loaded.tensors] == [t.name for t in record.tensors]
        for position, (entry, t) in enumerate(zip(loaded.tensors, record.tensors)):
            want, got = entry.read(), reopener.read(k, position)
            assert (got.dtype, got.shape) == (want.dtype, want.shape), (path, t.name)
            assert got.tobytes() == want.tobytes(), (path, t.name)
            placed += t.at is not None
    assert reopener.counter.models_opened == 2  # views.pt for its non-contiguous views, raw.onnx for its float_data; every other tensor was placed
    unplaced = {(Path(r.path).name, t.name) for r in records for t in r.tensors if t.at is None}
    assert unplaced == {("views.pt", "col"), ("views.pt", "t"), ("views.pt", "strided"), ("views.pt", "empty"), ("raw.onnx", "fd")}
    assert placed == sum(len(r.tensors) for r in records) - len(unplaced)


def test_a_placed_tensor_names_the_file_its_bytes_lie_in(tmp_path: Path) -> None:
    root = _mixed_zoo(tmp_path / "zoo")
    ext, hf = digest_model(str(root / "ext" / "m.onnx")), digest_model(str(root / "hf"))
    assert {os.path.basename(ext.stamps[t.at[0]][0]) for t in ext.tensors if t.at is not None} == {"m.data"}
    files = {t.name: os.path.basename(hf.stamps[t.at[0]][0]) for t in hf.tensors if t.at is not None}
    assert files == {"a": "model-00001-of-00002.safetensors", "b": "model-00002-of-00002.safetensors", "c": "model-00002-of-00002.safetensors"}


def test_zoo_groups_equal_analyze_over_a_zoo_mixing_every_format(tmp_path: Path) -> None:
    root = _mixed_zoo(tmp_path / "zoo")
    zoo = scan_zoo(str(root), ZooOptions(scheduler="none", store=tmp_path / "s.sqlite"))
    paths = [m.path for m in zoo.models if m.status == "ok"]
    assert len(paths) == 5 and zoo.totals.skipped == 0  # the symlink is its target, scanned once
    plain = sharescan.analyze(paths)
    assert [g.to_dict() for g in zoo.groups] == [_group(g).to_dict() for g in plain.groups]
    assert {"identical", "transposed", "negated", "scaled", "rows", "aliased"} <= {g.relation for g in zoo.groups}
    assert zoo.totals.reclaimable_bytes == plain.totals.reclaimable_bytes > 0
    assert zoo.timing.tensors_read > 0


def test_a_join_from_stored_records_equals_one_from_records_just_digested(tmp_path: Path) -> None:
    root = _mixed_zoo(tmp_path / "zoo")
    store = tmp_path / "s.sqlite"
    first = scan_zoo(str(root), ZooOptions(scheduler="none", store=store))
    with DigestStore(store) as db:
        db.db.execute("DELETE FROM results")  # the join runs again, every record read back from the store
        db.commit()
        stored = {r.path: r for r in db.records(m.path for m in first.models)}
    fresh = {p: digest_model(p) for p in stored}
    for p, record in stored.items():
        assert [t.at for t in record.tensors] == [t.at for t in fresh[p].tensors]  # None stays None, places come back as ints
        assert record.stamps == fresh[p].stamps
    again = scan_zoo(str(root), ZooOptions(scheduler="none", store=store))
    assert again.timing.digested == 0 and not again.timing.result_from_store and again.timing.tensors_read > 0
    assert [g.to_dict() for g in again.groups] == [g.to_dict() for g in first.groups]


def _checked(tmp_path: Path, first: str) -> tuple[Path, list[str], Reopener]:
    """A copy of the mixed zoo's views.pt, digested, and a reopener that has read its tensor ``first`` (the file checked unchanged, once for the join)."""
    root = _mixed_zoo(tmp_path / "zoo")
    path = tmp_path / "t.pt"
    shutil.copy(root / "views.pt", path)
    record = digest_model(str(path))
    names = [t.name for t in record.tensors]
    reopener = _reopener([record], ["t.pt"])
    reopener.read(0, names.index(first))
    return path, names, reopener


def test_a_mapped_file_truncated_after_its_check_is_one_input_error(tmp_path: Path) -> None:
    path, names, reopener = _checked(tmp_path, "one")
    os.truncate(path, 2000)  # then cut short while the join still reads it
    with pytest.raises(InputError, match="t.pt: the file changed while it was read"):
        reopener.read(0, names.index("full"))  # 12 KiB: mapped


def test_a_file_removed_after_its_digest_is_one_input_error(tmp_path: Path) -> None:
    root = _mixed_zoo(tmp_path / "zoo")
    record = digest_model(str(root / "ext" / "m.onnx"))
    (root / "ext" / "m.data").unlink()
    with pytest.raises(InputError, match=r"m.onnx: changed while the zoo was scanned \(.*m.data is not as it was digested\)"):
        _reopener([record], [str(root / "ext" / "m.onnx")]).read(0, 0)


def test_placed_reads_from_many_threads_are_the_loaders_reads(tmp_path: Path) -> None:
    root = _mixed_zoo(tmp_path / "zoo")
    paths = [str(root / m) for m in MODELS]
    records = [digest_model(p) for p in paths]
    want = {(k, i): e.read().tobytes() for k, p in enumerate(paths) for i, e in enumerate(load_model(p, k, LoadOptions()).tensors)}
    reopener = _reopener(records, paths)
    wrong: list[tuple[int, int]] = []
    barrier = threading.Barrier(8)

    def work(seed: int) -> None:
        keys = list(want)
        np.random.default_rng(seed).shuffle(keys)
        barrier.wait()
        for _ in range(3):
            for key in keys:
                if reopener.read(*key).tobytes() != want[key]:
                    wrong.append(key)

    threads = [threading.Thread(target=work, args=(s,)) for s in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert wrong == []
    assert reopener.unchanged == {(k, r.tensors[i].at[0]) for k, r in enumerate(records) for i in range(len(r.tensors)) if r.tensors[i].at is not None}


def test_shards_linked_into_a_blob_folder_are_placed_and_read_through_their_links(tmp_path: Path) -> None:
    from safetensors.numpy import save_file

    # The Hugging Face cache's layout: a snapshot folder of relative links to content-named blobs.
    rng = np.random.default_rng(11)
    blobs, snap = tmp_path / "blobs", tmp_path / "snapshots" / "abc"
    blobs.mkdir()
    snap.mkdir(parents=True)
    tensors = {"a": rng.standard_normal((40, 24)).astype(np.float32), "b": rng.standard_normal(5).astype(np.float32)}
    save_file(tensors, str(blobs / "1f2e"))
    (blobs / "c0de").write_text("{}")
    os.symlink("../../blobs/1f2e", snap / "model.safetensors")
    os.symlink("../../blobs/c0de", snap / "config.json")
    record = digest_model(str(snap))
    assert record.ok and all(t.at is not None for t in record.tensors)
    assert all(os.path.realpath(record.stamps[t.at[0]][0]) == str(blobs / "1f2e") for t in record.tensors)
    reopener = _reopener([record], ["abc"])
    assert [reopener.read(0, i).tobytes() for i in range(2)] == [tensors[t.name].tobytes() for t in record.tensors]
    assert reopener.counter.models_opened == 0


def test_places_stay_aligned_when_the_loader_leaves_a_tensor_out(tmp_path: Path) -> None:
    import onnx
    from onnx import helper, numpy_helper

    rng = np.random.default_rng(12)
    w, v = rng.standard_normal((16, 8)).astype(np.float32), rng.standard_normal((8, 4)).astype(np.float32)
    strings = helper.make_tensor("names", onnx.TensorProto.STRING, [2], [b"x", b"y"])  # not numeric: left out
    onnx.save(_onnx_model([numpy_helper.from_array(w, "w"), strings, numpy_helper.from_array(v, "v")]), str(tmp_path / "m.onnx"))
    record = digest_model(str(tmp_path / "m.onnx"))
    assert [t.name for t in record.tensors] == ["w", "v"] and all(t.at is not None for t in record.tensors)
    reopener = _reopener([record], ["m.onnx"])
    assert reopener.read(0, 0).tobytes() == w.tobytes() and reopener.read(0, 1).tobytes() == v.tobytes()


def test_a_store_of_the_previous_schema_is_digested_again_with_places(tmp_path: Path) -> None:
    import sqlite3

    root = _mixed_zoo(tmp_path / "zoo")
    store = tmp_path / "s.sqlite"
    first = scan_zoo(str(root), ZooOptions(scheduler="none", store=store))
    db = sqlite3.connect(store)  # the same store as schema 1 left it: no place columns
    db.execute("ALTER TABLE tensors DROP COLUMN file")
    db.execute("ALTER TABLE tensors DROP COLUMN offset")
    db.execute("UPDATE meta SET value = '1' WHERE key = 'schema_version'")
    db.commit()
    db.close()
    again = scan_zoo(str(root), ZooOptions(scheduler="none", store=store))
    assert again.timing.digested == len(first.models) and again.timing.models_reopened == first.timing.models_reopened
    assert [g.to_dict() for g in again.groups] == [g.to_dict() for g in first.groups]
    with DigestStore(store) as s:
        assert any(t.at is not None for r in s.records(m.path for m in again.models) for t in r.tensors)


@pytest.mark.parametrize("name", ["one", "full"])  # read with pread (256 bytes), mapped (8 KiB)
def test_a_file_removed_after_its_check_is_one_input_error(tmp_path: Path, name: str) -> None:
    path, names, reopener = _checked(tmp_path, "row")
    path.unlink()  # then removed while the join still reads it
    with pytest.raises(InputError, match="t.pt: changed while the zoo was scanned"):
        reopener.read(0, names.index(name))
