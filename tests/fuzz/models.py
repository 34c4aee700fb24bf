"""Small valid models the mutations start from, made with the formats' own libraries."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import numpy as np

from tests.fuzz.plan import FIXTURES

__all__ = ["small_onnx", "external_onnx", "bin_folder", "legacy_pt", "onnx_is_valid"]


def small_onnx() -> Any:
    """Z = X @ W + C (C a Constant node), and an If whose branches return an
    initializer (then) and a Constant (else). Valid, and runs in onnxruntime."""
    from onnx import TensorProto, helper, numpy_helper

    w = numpy_helper.from_array(np.arange(16, dtype=np.float32).reshape(4, 4), "W")
    cond = numpy_helper.from_array(np.array(True), "cond")
    c = numpy_helper.from_array(np.ones(4, dtype=np.float32), "c_value")
    t = numpy_helper.from_array(np.full(4, 2.0, dtype=np.float32), "T")
    e = numpy_helper.from_array(np.full(4, 3.0, dtype=np.float32), "e_value")
    out4 = [helper.make_tensor_value_info(n, TensorProto.FLOAT, [4]) for n in ("t_out", "e_out")]
    then_g = helper.make_graph([helper.make_node("Identity", ["T"], ["t_out"])], "then", [], [out4[0]], initializer=[t])
    else_g = helper.make_graph([helper.make_node("Constant", [], ["e_out"], value=e)], "else", [], [out4[1]])
    nodes = [
        helper.make_node("MatMul", ["X", "W"], ["Y"]),
        helper.make_node("Constant", [], ["C"], value=c),
        helper.make_node("Add", ["Y", "C"], ["Z"]),
        helper.make_node("If", ["cond"], ["I"], then_branch=then_g, else_branch=else_g),
    ]
    graph = helper.make_graph(
        nodes,
        "small",
        [helper.make_tensor_value_info("X", TensorProto.FLOAT, [1, 4])],
        [helper.make_tensor_value_info("Z", TensorProto.FLOAT, [1, 4]), helper.make_tensor_value_info("I", TensorProto.FLOAT, [4])],
        initializer=[w, cond],
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def external_onnx(folder: Path, location: str = "w.bin", name: str = "model.onnx") -> tuple[Path, Any]:
    """``small_onnx`` with W (64 bytes) stored in ``folder/location``. Returns
    the model path and the model (to mutate and save again)."""
    import onnx
    from onnx import TensorProto

    folder.mkdir(parents=True, exist_ok=True)
    model = small_onnx()
    w = model.graph.initializer[0]
    (folder / location).write_bytes(w.raw_data)
    w.ClearField("raw_data")
    w.data_location = TensorProto.EXTERNAL
    set_external(w, location=location, offset="0", length="64")
    path = folder / name
    onnx.save_model(model, str(path))
    return path, model


def set_external(tensor: Any, **entries: str) -> None:
    """Replace a tensor's external_data entries."""
    del tensor.external_data[:]
    for key, value in entries.items():
        entry = tensor.external_data.add()
        entry.key, entry.value = key, value


def state_dict() -> dict[str, Any]:
    import torch

    return torch.load(str(FIXTURES / "mlp.pt"), weights_only=True)


def legacy_pt(path: Path) -> Path:
    """mlp.pt re-saved in the legacy (non-zip) torch format."""
    import torch

    torch.save(state_dict(), str(path), _use_new_zipfile_serialization=False)
    return path


def bin_folder(folder: Path) -> tuple[Path, Path]:
    """A sharded PyTorch folder: pytorch_model.bin.index.json and two .bin
    shards holding mlp.pt's tensors. Returns both shard paths."""
    import torch

    folder.mkdir(parents=True, exist_ok=True)
    sd = state_dict()
    names = sorted(sd)
    half = len(names) // 2
    shards = [folder / "pytorch_model-00001-of-00002.bin", folder / "pytorch_model-00002-of-00002.bin"]
    weight_map = {}
    for shard, part in zip(shards, (names[:half], names[half:])):
        torch.save({k: sd[k].clone() for k in part}, str(shard))
        weight_map.update({k: shard.name for k in part})
    (folder / "pytorch_model.bin.index.json").write_text(json.dumps({"metadata": {}, "weight_map": weight_map}))
    return shards[0], shards[1]


def hf_folder(root: Path) -> Path:
    dest = root / "m" / "tiny_lm_hf"
    shutil.copytree(FIXTURES / "tiny_lm_hf", dest)
    return dest


def onnx_is_valid(data: bytes, base: Path) -> bool:
    """Whether bytes parse as an ONNX model the checker accepts (external data
    looked up in ``base``): only then may a damaged file be accepted."""
    import onnx

    probe = base / ".probe.onnx"
    try:
        model = onnx.load_from_string(data)
        probe.write_bytes(data)
        onnx.checker.check_model(str(probe), full_check=False)
        return len(model.graph.node) > 0
    except Exception:
        return False
    finally:
        probe.unlink(missing_ok=True)
