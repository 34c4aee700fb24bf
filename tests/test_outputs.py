"""No output (model, external data, report) may name or overlap a file an input reads.

Each case runs the CLI as a user does and checks the refusal contract: exit
2, one ``error:`` line, the input's files byte-for-byte unchanged, and no
file left behind in the folder.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from sharescan.errors import InputError
from sharescan.outputs import atomic_path, check_output, input_files
from tests.helpers import run_cli

rng = np.random.default_rng(11)


def _external_model(folder: Path, name: str = "model.onnx", data: str = "model.onnx.data") -> Path:
    """A MatMul chain whose two identical weights live in an external data file."""
    w = rng.standard_normal((8, 8)).astype(np.float32)
    inits = [numpy_helper.from_array(w, "w0"), numpy_helper.from_array(w.copy(), "w1")]
    nodes = [helper.make_node("MatMul", ["x", "w0"], ["h"]), helper.make_node("MatMul", ["h", "w1"], ["y"])]
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 8])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 8])
    model = helper.make_model(helper.make_graph(nodes, "g", [x], [y], initializer=inits), opset_imports=[helper.make_opsetid("", 17)])
    path = folder / name
    onnx.save_model(model, str(path), save_as_external_data=True, all_tensors_to_one_file=True, location=data, size_threshold=0)
    return path


def _snapshot(folder: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.iterdir()) if p.is_file()}


def _refused(proc: subprocess.CompletedProcess[str], *words: str) -> None:
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), proc.stderr
    assert "Traceback" not in proc.stderr
    for w in words:
        assert w in lines[0], lines[0]


def test_dedup_output_named_like_the_inputs_data_file_is_refused_and_the_data_survives(tmp_path: Path) -> None:
    model = _external_model(tmp_path)
    before = _snapshot(tmp_path)
    proc = run_cli("dedup", str(model), "-o", str(tmp_path / "model.onnx.data"), "--no-ram")
    _refused(proc, "model.onnx.data", "choose another -o")
    assert _snapshot(tmp_path) == before


def test_dedup_output_whose_data_file_would_be_the_inputs_data_is_refused(tmp_path: Path) -> None:
    model = _external_model(tmp_path, "x.onnx", "weights.onnx.data")
    before = _snapshot(tmp_path)
    proc = run_cli("dedup", str(model), "-o", str(tmp_path / "weights.onnx"), "--no-ram")
    _refused(proc, "weights.onnx.data")
    assert _snapshot(tmp_path) == before


@pytest.mark.parametrize("command", ["analyze", "dedup"])
def test_report_naming_the_inputs_data_file_is_refused(tmp_path: Path, command: str) -> None:
    model = _external_model(tmp_path)
    before = _snapshot(tmp_path)
    args = ["analyze", str(model)] if command == "analyze" else ["dedup", str(model), "-o", str(tmp_path / "out.onnx"), "--no-ram"]
    proc = run_cli(*args, "--report", str(tmp_path / "model.onnx.data"))
    _refused(proc, "--report")
    assert _snapshot(tmp_path) == before


def test_output_hard_linked_to_an_input_data_file_is_refused(tmp_path: Path) -> None:
    model = _external_model(tmp_path)
    os.link(tmp_path / "model.onnx.data", tmp_path / "alias.onnx")
    before = _snapshot(tmp_path)
    proc = run_cli("dedup", str(model), "-o", str(tmp_path / "alias.onnx"), "--no-ram")
    _refused(proc, "alias.onnx")
    assert _snapshot(tmp_path) == before


def test_output_reached_through_a_symlinked_folder_is_still_the_input(tmp_path: Path) -> None:
    (tmp_path / "real").mkdir()
    model = _external_model(tmp_path / "real")
    (tmp_path / "link").symlink_to(tmp_path / "real")
    before = _snapshot(tmp_path / "real")
    proc = run_cli("dedup", str(model), "-o", str(tmp_path / "link" / ".." / "real" / "model.onnx.data"), "--no-ram")
    _refused(proc)
    assert _snapshot(tmp_path / "real") == before


def test_immutable_or_read_only_output_is_refused_before_any_work(tmp_path: Path) -> None:
    model = _external_model(tmp_path)
    target = tmp_path / "out.onnx"
    target.write_bytes(b"keep me")
    target.chmod(0o444)
    if os.access(target, os.W_OK):  # root ignores mode bits: make it immutable instead
        if shutil.which("chattr") is None or subprocess.run(["chattr", "+i", str(target)], capture_output=True).returncode != 0:
            pytest.fail("cannot make a file unwritable on this machine (no chattr)")
    try:
        before = _snapshot(tmp_path)
        proc = run_cli("dedup", str(model), "-o", str(target), "--no-ram")
        _refused(proc, "cannot be replaced")
        assert _snapshot(tmp_path) == before
    finally:
        subprocess.run(["chattr", "-i", str(target)], capture_output=True)


def test_in_place_may_replace_the_model_and_its_own_data(tmp_path: Path) -> None:
    model = _external_model(tmp_path)
    check_output(model, [str(model)], in_place=True)  # no error
    with pytest.raises(InputError, match="--in-place"):
        check_output(model, [str(model)], in_place=False)


def test_input_files_lists_external_data_shards_and_folder_contents(tmp_path: Path) -> None:
    model = _external_model(tmp_path)
    assert {p.name for p in input_files([model])} == {"model.onnx", "model.onnx.data"}
    folder = tmp_path / "hf"
    folder.mkdir()
    (folder / "model.safetensors.index.json").write_text('{"weight_map": {"a": "s1.safetensors", "b": "s2.safetensors"}}')
    assert {p.name for p in input_files([folder / "model.safetensors.index.json"])} == {"model.safetensors.index.json", "s1.safetensors", "s2.safetensors"}
    (folder / "s1.safetensors").write_bytes(b"x")
    assert {p.name for p in input_files([folder])} >= {"model.safetensors.index.json", "s1.safetensors"}


def test_atomic_path_leaves_nothing_when_the_write_fails_and_gives_ordinary_permissions(tmp_path: Path) -> None:
    target = tmp_path / "r.md"
    with pytest.raises(RuntimeError):
        with atomic_path(target) as tmp:
            tmp.write_text("half")
            raise RuntimeError("stop")
    assert list(tmp_path.iterdir()) == []
    with atomic_path(target) as tmp:
        tmp.write_text("whole")
    assert target.read_text() == "whole"
    umask = os.umask(0)
    os.umask(umask)
    assert target.stat().st_mode & 0o777 == 0o666 & ~umask
