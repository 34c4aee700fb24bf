"""Each loader: names, shapes, dtypes, storage identity and lazy values."""

from __future__ import annotations

import mmap
from pathlib import Path

import numpy as np
import pytest
import torch

import sharescan
from sharescan.sources import LoadOptions, load_model
from tests.helpers import save_onnx, save_safetensors


def _load(path: Path, **kw):
    return load_model(str(path), 0, LoadOptions(**kw))


def _is_mapped(array: np.ndarray) -> bool:
    while isinstance(array, np.ndarray):
        array = array.base
    if isinstance(array, memoryview):
        array = array.obj
    return isinstance(array, mmap.mmap)


def _by_name(model) -> dict:
    return {e.name: e for e in model.tensors}


def test_torch_state_dict_keeps_storage_identity_of_tied_tensors(tmp_path: Path) -> None:
    w = torch.randn(6, 4)
    sd = {"emb": w, "head": w, "copy": w.clone(), "slice": w[2:4], "t": w.t()}
    torch.save(sd, tmp_path / "m.pt")
    t = _by_name(_load(tmp_path / "m.pt"))
    # One tensor under two names is one storage; each other view is its own tensor over the same buffer.
    assert t["emb"].storage == t["head"].storage
    assert len({t[n].storage for n in ("emb", "slice", "t", "copy")}) == 4
    assert t["emb"].buffer_key == t["slice"].buffer_key == t["t"].buffer_key != t["copy"].buffer_key
    np.testing.assert_array_equal(t["slice"].read(), w[2:4].numpy())
    np.testing.assert_array_equal(t["t"].read(), w.t().numpy())
    result = sharescan.analyze([str(tmp_path / "m.pt")])
    assert result.models[0].unique_bytes == 2 * w.numel() * 4  # w's storage and the clone
    # The slice and the transpose read w's own bytes: found, but nothing to reclaim.
    assert [(g.relation, g.reclaimable_bytes) for g in result.groups] == [("identical", 96), ("aliased", 0), ("transposed", 0), ("rows", 0)]


def test_torch_bfloat16_and_float8_tensors_are_read_as_bits(tmp_path: Path) -> None:
    b = torch.randn(5, 3).to(torch.bfloat16)
    f8 = torch.randn(7).to(torch.float8_e4m3fn)
    torch.save({"b": b, "b_neg": -b, "f8": f8, "f8_copy": f8.clone()}, tmp_path / "m.pt")
    t = _by_name(_load(tmp_path / "m.pt"))
    assert t["b"].dtype == "bfloat16" and t["b"].nbytes == 30
    np.testing.assert_array_equal(t["b"].read(), b.view(torch.int16).numpy().view(np.uint16))
    result = sharescan.analyze([str(tmp_path / "m.pt")])
    assert {g.relation for g in result.groups} == {"negated", "identical"}


def test_torch_ints_bool_scalars_and_empty_tensors(tmp_path: Path) -> None:
    sd = {
        "i8": torch.tensor([1, -2, 3], dtype=torch.int8),
        "u8": torch.tensor([1, 2], dtype=torch.uint8),
        "i64": torch.arange(4),
        "flag": torch.tensor([True, False]),
        "scalar": torch.tensor(2.5, dtype=torch.float64),
        "empty": torch.zeros(0, 3),
    }
    torch.save(sd, tmp_path / "m.pt")
    t = _by_name(_load(tmp_path / "m.pt"))
    assert {k: (e.dtype, e.shape, e.nbytes) for k, e in t.items()} == {
        "i8": ("int8", (3,), 3),
        "u8": ("uint8", (2,), 2),
        "i64": ("int64", (4,), 32),
        "flag": ("bool", (2,), 2),
        "scalar": ("float64", (), 8),
        "empty": ("float32", (0, 3), 0),
    }
    assert t["scalar"].read().item() == 2.5


def test_safetensors_bfloat16_is_read_without_torch_conversion(tmp_path: Path) -> None:
    from safetensors.torch import save_file

    b = torch.randn(4, 4).to(torch.bfloat16)
    save_file({"b": b, "bt": b.T.contiguous()}, str(tmp_path / "m.safetensors"))
    t = _by_name(_load(tmp_path / "m.safetensors"))
    np.testing.assert_array_equal(t["b"].read(), b.view(torch.int16).numpy().view(np.uint16))
    result = sharescan.analyze([str(tmp_path / "m.safetensors")])
    assert [g.relation for g in result.groups] == ["transposed"]


def test_safetensors_reads_lazily_large_tensors_mapped_small_ones_read_alone(tmp_path: Path) -> None:
    big = np.arange(32 * 64, dtype=np.float32).reshape(32, 64)  # 8 KiB: a mapping of its own
    path = save_safetensors(tmp_path / "m.safetensors", {"big": big, "w": np.arange(12, dtype=np.float32).reshape(3, 4)})
    t = _by_name(_load(path))
    assert _is_mapped(t["big"].read())
    # A small tensor among few is read with one pread, not through a mapping
    # whose fault would map its large neighbours' pages too.
    small = t["w"].read()
    assert not _is_mapped(small)
    np.testing.assert_array_equal(small, np.arange(12).reshape(3, 4))
    # Nothing was read at load: bytes changed in place afterwards are what a read sees.
    raw = bytearray(path.read_bytes())
    at = raw.rfind(np.arange(12, dtype=np.float32).tobytes())
    raw[at : at + 4] = np.float32(7).tobytes()
    path.write_bytes(bytes(raw))
    assert t["w"].read()[0, 0] == 7


def test_a_file_of_many_small_tensors_shares_one_mapping(tmp_path: Path) -> None:
    from sharescan.sources import mapped

    arrays = {f"b{k}": np.full(4, k, dtype=np.float32) for k in range(mapped._PREAD_SMALL + 1)}
    t = _by_name(_load(save_safetensors(tmp_path / "m.safetensors", arrays)))
    first = t["b0"].read()
    assert _is_mapped(first) and first.base is not None
    np.testing.assert_array_equal(t[f"b{mapped._PREAD_SMALL}"].read(), np.full(4, mapped._PREAD_SMALL))


def test_safetensors_save_model_dropped_names_come_back_as_aliases(tmp_path: Path) -> None:
    from safetensors.torch import save_model

    class Tied(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.emb = torch.nn.Embedding(10, 4)
            self.head = torch.nn.Linear(4, 10, bias=False)
            self.head.weight = self.emb.weight

    save_model(Tied(), str(tmp_path / "m.safetensors"))
    result = sharescan.analyze([str(tmp_path / "m.safetensors")])
    (group,) = result.groups
    assert group.relation == "aliased"
    assert sorted(m.name for m in group.members) == ["emb.weight", "head.weight"]
    assert result.models[0].stored_bytes == 2 * 160 and result.models[0].unique_bytes == 160


def test_hf_folder_with_pytorch_bin(tmp_path: Path) -> None:
    (tmp_path / "config.json").write_text("{}")
    torch.save({"w": torch.ones(3)}, tmp_path / "pytorch_model.bin")
    model = _load(tmp_path)
    assert [e.name for e in model.tensors] == ["w"]


def test_onnx_constants_identity_aliases_and_typed_fields(tmp_path: Path) -> None:
    import onnx
    from onnx import helper

    w = np.arange(6, dtype=np.float32).reshape(2, 3)
    typed = helper.make_tensor("typed", onnx.TensorProto.FLOAT, [2, 3], w.reshape(-1).tolist(), raw=False)
    nodes = [
        helper.make_node("Constant", [], ["c"], value=onnx.numpy_helper.from_array(w, "c")),
        helper.make_node("Constant", [], ["cf"], value_floats=[1.0, 2.0]),
        helper.make_node("Identity", ["typed"], ["alias"]),
        helper.make_node("Add", ["c", "alias"], ["out"]),
    ]
    graph = helper.make_graph(nodes, "g", [], [helper.make_tensor_value_info("out", onnx.TensorProto.FLOAT, [2, 3])], initializer=[typed])
    onnx.save_model(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(tmp_path / "m.onnx"))
    t = _by_name(_load(tmp_path / "m.onnx"))
    assert set(t) == {"typed", "c", "cf", "alias"}
    np.testing.assert_array_equal(t["typed"].read(), w)
    assert t["alias"].storage == t["typed"].storage
    result = sharescan.analyze([str(tmp_path / "m.onnx")])
    rel = {g.relation: sorted(m.name for m in g.members) for g in result.groups}
    assert rel == {"aliased": ["alias", "typed"], "identical": ["c", "typed"]}


def test_onnx_subgraph_initializers_are_read(tmp_path: Path) -> None:
    import onnx
    from onnx import helper, numpy_helper

    w = np.ones((8,), np.float32)  # scaled copies are searched among tensors of 8+ elements
    then_graph = helper.make_graph([helper.make_node("Identity", ["tw"], ["t_out"])], "then", [], [helper.make_tensor_value_info("t_out", onnx.TensorProto.FLOAT, [8])], initializer=[numpy_helper.from_array(w, "tw")])
    else_graph = helper.make_graph([helper.make_node("Identity", ["ew"], ["e_out"])], "else", [], [helper.make_tensor_value_info("e_out", onnx.TensorProto.FLOAT, [8])], initializer=[numpy_helper.from_array(w * 2, "ew")])
    node = helper.make_node("If", ["cond"], ["y"], then_branch=then_graph, else_branch=else_graph, name="if0")
    graph = helper.make_graph([node], "g", [helper.make_tensor_value_info("cond", onnx.TensorProto.BOOL, [])], [helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, [8])], initializer=[numpy_helper.from_array(w, "top")])
    onnx.save_model(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(tmp_path / "m.onnx"))
    names = {e.name for e in _load(tmp_path / "m.onnx").tensors}
    assert names == {"top", "if0/then_branch/tw", "if0/else_branch/ew", "if0/then_branch/t_out", "if0/else_branch/e_out"}
    result = sharescan.analyze([str(tmp_path / "m.onnx")])
    assert {g.relation for g in result.groups} == {"aliased", "identical", "scaled"}


def test_onnx_external_data_is_memory_mapped(tmp_path: Path) -> None:
    w = np.random.default_rng(0).standard_normal((64, 32)).astype(np.float32)
    save_onnx(tmp_path / "m.onnx", {"w": w, "wt": w.T.copy()}, save_as_external_data=True, all_tensors_to_one_file=True, location="m.data", size_threshold=0)
    t = _by_name(_load(tmp_path / "m.onnx"))
    assert _is_mapped(t["w"].read())
    np.testing.assert_array_equal(t["wt"].read(), w.T)
    result = sharescan.analyze([str(tmp_path / "m.onnx")])
    copies = [(g.relation, g.reclaimable_bytes) for g in result.groups if g.relation != "aliased"]
    assert copies == [("transposed", w.nbytes)]


def test_format_is_sniffed_without_a_known_suffix(tmp_path: Path) -> None:
    save_safetensors(tmp_path / "weights.model", {"w": np.ones(3, np.float32)})
    torch.save({"w": torch.ones(3)}, tmp_path / "weights.data")
    assert _load(tmp_path / "weights.model").format == "safetensors"
    assert _load(tmp_path / "weights.data").format == "pytorch"


def test_inputs_are_never_modified(tmp_path: Path) -> None:
    path = save_safetensors(tmp_path / "m.safetensors", {"a": np.ones(8, np.float32), "b": np.ones(8, np.float32)})
    before = (path.read_bytes(), path.stat().st_mtime_ns)
    sharescan.analyze([str(path)])
    assert (path.read_bytes(), path.stat().st_mtime_ns) == before


@pytest.mark.parametrize("suffix", [".pt", ".safetensors"])
def test_loaders_agree_on_one_state_dict(tmp_path: Path, suffix: str) -> None:
    from safetensors.torch import save_file

    sd = {"a": torch.randn(3, 5), "b": torch.randint(0, 9, (4,))}
    path = tmp_path / f"m{suffix}"
    torch.save(sd, path) if suffix == ".pt" else save_file(sd, str(path))
    t = _by_name(_load(path))
    for k, v in sd.items():
        np.testing.assert_array_equal(t[k].read(), v.numpy())


def test_plain_torch_checkpoint_is_read_from_its_records_as_torch_loads_it(tmp_path: Path) -> None:
    w = torch.randn(40, 24)
    sd = {"emb": w, "head": w, "t": w.t(), "half": torch.randn(3, 5).half(), "b": torch.randn(6).to(torch.bfloat16), "i": torch.arange(7), "empty": torch.zeros(0, 3)}
    nested = {"model": sd, "epoch": 3, "note": "x", "scale": 0.5, "extra": [w[1:3], None]}
    torch.save(nested, tmp_path / "m.pt")
    loaded = _load(tmp_path / "m.pt")
    expected = torch.load(tmp_path / "m.pt", weights_only=True)
    flat = {"model." + k: v for k, v in expected["model"].items()} | {"extra.0": expected["extra"][0]}
    # Same names in the same order as torch.load and walk_tensors give.
    assert [e.name for e in loaded.tensors] == list(flat)
    for e in loaded.tensors:
        t = flat[e.name]
        assert e.shape == tuple(t.shape)
        want = t.view(torch.int16).numpy().view(np.uint16) if t.dtype == torch.bfloat16 else t.numpy()
        np.testing.assert_array_equal(e.read(), want)
    t = _by_name(loaded)
    assert t["model.emb"].storage == t["model.head"].storage != t["model.t"].storage
    assert t["model.emb"].buffer_key == t["model.t"].buffer_key == t["extra.0"].buffer_key
    assert t["model.empty"].storage == "empty:model.empty" and t["model.empty"].stored_nbytes == 0
    assert _is_mapped(t["model.emb"].read())
    assert [e.name for e in _load(tmp_path / "m.pt", key="model").tensors] == list(expected["model"])


def test_plain_torch_checkpoint_is_analysed_without_importing_torch(tmp_path: Path) -> None:
    import subprocess
    import sys

    w = torch.randn(64, 32)
    torch.save({"a": w, "b": w.clone(), "c": -w}, tmp_path / "m.pt")
    code = "import sys, sharescan; r = sharescan.analyze(sys.argv[1]); print(sorted(g.relation for g in r.groups), 'torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code, str(tmp_path / "m.pt")], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split("]")[1].strip() == "False"
    assert "'identical'" in out.stdout and "'negated'" in out.stdout


def test_checkpoint_with_objects_beyond_tensors_still_goes_through_torch_load(tmp_path: Path) -> None:
    from sharescan.sources.torch_archive import read_checkpoint

    w = torch.randn(4, 4)
    torch.save({"w": w, "device": torch.device("cpu")}, tmp_path / "dev.pt")
    assert read_checkpoint(tmp_path / "dev.pt") is None  # an inert object: torch.load decides
    t = _by_name(_load(tmp_path / "dev.pt"))
    np.testing.assert_array_equal(t["w"].read(), w.numpy())
    torch.save({"w": w}, tmp_path / "plain.pt")
    assert read_checkpoint(tmp_path / "plain.pt") is not None


def test_untrusted_pickle_in_a_zip_checkpoint_is_still_refused(tmp_path: Path) -> None:
    class Payload:
        def __reduce__(self):
            return (print, ("ran",))

    torch.save({"w": torch.randn(2, 2), "p": Payload()}, tmp_path / "evil.pt")
    with pytest.raises(sharescan.InputError, match="holds pickled Python objects"):
        _load(tmp_path / "evil.pt")
