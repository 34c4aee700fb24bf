"""Reading an ONNX file's layout: the graph without its raw tensor bytes, and where those bytes are."""

from __future__ import annotations

import mmap
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from sharescan.sources.onnx_layout import read_layout
from sharescan.sources.onnx_source import load_onnx
from tests.conftest import FIXTURES


@pytest.mark.parametrize("name", ["tiny_lm_folded.onnx", "tiny_lm_unfolded.onnx", "cnn.onnx", "tiny_lm_external/model.onnx"])
def test_the_stripped_graph_is_the_file_without_raw_data_and_the_offsets_point_at_it(name: str) -> None:
    path = FIXTURES / name
    layout = read_layout(path)
    assert layout is not None
    stripped, raw_at = layout
    full = onnx.load(str(path), load_external_data=False)
    parsed = onnx.load_model_from_string(stripped)
    assert [n.SerializeToString() for n in parsed.graph.node] == [n.SerializeToString() for n in full.graph.node]
    assert len(raw_at) == len(full.graph.initializer) == len(parsed.graph.initializer)
    data = path.read_bytes()
    for kept, original, at in zip(parsed.graph.initializer, full.graph.initializer, raw_at):
        bare = TensorProto()
        bare.CopyFrom(original)
        bare.ClearField("raw_data")
        assert kept.SerializeToString() == bare.SerializeToString()
        assert (at is None and not original.raw_data) or (at is not None and data[at[0] : at[0] + at[1]] == original.raw_data)
    if not any(t.data_location == 1 for t in full.graph.initializer):
        assert len(stripped) < len(data) // 4  # the bulk stays in the file


def test_inline_tensors_are_read_through_a_mapping_of_the_file_not_a_parsed_copy() -> None:
    loaded = load_onnx(FIXTURES / "tiny_lm_folded.onnx", 0)
    full = {t.name: numpy_helper.to_array(t) for t in onnx.load(str(FIXTURES / "tiny_lm_folded.onnx")).graph.initializer}
    big = [e for e in loaded.tensors if e.name in full and full[e.name].nbytes > 4096]
    assert big
    for entry in big:
        array = entry.read()
        assert np.array_equal(array, full[entry.name])
        base = array
        while isinstance(base, np.ndarray) and base.base is not None:
            base = base.base
        assert isinstance(base, memoryview) and isinstance(base.obj, mmap.mmap)


def test_a_file_that_is_not_protobuf_falls_back_to_onnx_and_its_error(tmp_path: Path) -> None:
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"\x0f" * 64)  # wire type 7: not a protobuf field
    assert read_layout(bad) is None
    empty = tmp_path / "empty.onnx"
    empty.write_bytes(b"")
    assert read_layout(empty) is None


def test_a_raw_tensor_shorter_than_its_shape_is_reported_as_corrupt_when_loaded(tmp_path: Path) -> None:
    from sharescan.errors import InputError

    w = numpy_helper.from_array(np.ones((4, 4), np.float32), "w")
    w.raw_data = w.raw_data[:-8]  # two elements short
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4])
    model = helper.make_model(helper.make_graph([helper.make_node("MatMul", ["x", "w"], ["y"])], "g", [x], [y], initializer=[w]))
    path = tmp_path / "short.onnx"
    path.write_bytes(model.SerializeToString())
    with pytest.raises(InputError, match="tensor 'w' holds 56 bytes for shape \\[4, 4\\] float32 \\(64 bytes\\); the file is corrupt"):
        load_onnx(path, 0)
