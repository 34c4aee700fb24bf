"""Small builders for test models, written with the formats' own libraries."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from tests.conftest import ROOT


def save_safetensors(path: Path, tensors: dict[str, np.ndarray], metadata: dict[str, str] | None = None) -> Path:
    from safetensors.numpy import save_file

    save_file({k: np.ascontiguousarray(v) for k, v in tensors.items()}, str(path), metadata=metadata)
    return path


def save_onnx(path: Path, initializers: dict[str, np.ndarray], nodes: list | None = None, **save_kwargs) -> Path:
    """A valid ONNX graph: each initializer feeds an Identity to a graph output, unless nodes are given."""
    import onnx
    from onnx import helper, numpy_helper

    inits = [numpy_helper.from_array(v, k) for k, v in initializers.items()]
    if nodes is None:
        nodes = [helper.make_node("Identity", [k], [f"out_{k}"]) for k in initializers]
    outputs = [helper.make_tensor_value_info(o, 0, None) for n in nodes for o in n.output]
    graph = helper.make_graph(nodes, "g", [], outputs, initializer=inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    onnx.save_model(model, str(path), **save_kwargs)
    return path


def matmul_model(w: np.ndarray, opset: int, batch: int = 3):  # type: ignore[no-untyped-def]
    """An in-memory model computing y = x @ W, W the initializer ``W`` (float32 input and output, IR 10)."""
    from onnx import TensorProto, helper, numpy_helper

    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [batch, w.shape[0]])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [batch, w.shape[1]])
    graph = helper.make_graph([helper.make_node("MatMul", ["x", "W"], ["y"])], "g", [x], [y], initializer=[numpy_helper.from_array(w, "W")])
    m = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    m.ir_version = 10
    return m


@contextlib.contextmanager
def _cwd(path: Path) -> Iterator[None]:
    """contextlib.chdir, which Python 3.10 lacks."""
    before = os.getcwd()
    os.chdir(path)
    try:
        yield
    finally:
        os.chdir(before)


def run_cli(*args: str, cwd: Path = ROOT, isolated: bool = False) -> subprocess.CompletedProcess[str]:
    """``sharescan ARGS`` in ``cwd``: in this process through ``sharescan.cli.main`` (fast), or,
    with ``isolated``, as a real ``python -m sharescan`` process (what a user runs: its own
    stderr, imports and exit)."""
    if isolated:
        return subprocess.run([sys.executable, "-m", "sharescan", *args], cwd=cwd, capture_output=True, text=True, timeout=300)
    from click.testing import CliRunner

    from sharescan.cli import main

    code: int | str | None = 0
    with CliRunner().isolation() as (out, err, _), _cwd(cwd):
        try:
            main(list(args))
        except SystemExit as e:
            code = e.code
        finally:
            sys.stdout.flush()  # the runner's streams buffer; a process would flush at exit
            sys.stderr.flush()
    returncode = code if isinstance(code, int) else 0 if code is None else 1
    return subprocess.CompletedProcess(["sharescan", *args], returncode, out.getvalue().decode(), err.getvalue().decode())
