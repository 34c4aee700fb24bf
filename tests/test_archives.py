"""TorchScript and .pt2 archives are read without running them; checkpoint walks are bounded.

Hostile archives are built here: a TorchScript ``__setstate__`` that creates
a file with ``torch.from_file`` or loops forever, a TorchScript ``data.pkl``
or a .pt2 pickled weight whose globals are ``os.system`` or
``builtins.exec``. ``analyze`` must answer (a result, or one ``error:``
line) without creating the marker file; ``export`` and ``tie`` must refuse
in one line naming ``--trust-code``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch

from sharescan.dtypes import DTYPES
from sharescan.errors import InputError
from sharescan.sources import torch_archive
from sharescan.sources.torch_archive import load_pt2_archive, load_torchscript_archive
from sharescan.sources.torch_source import walk_tensors
from tests.conftest import FIXTURES, ROOT
from tests.test_bad_input import assert_clean_error


def sharescan(*args: object, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])))
    return subprocess.run([sys.executable, "-m", "sharescan", *map(str, args)], cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout)


def one_line_or_result(proc: subprocess.CompletedProcess[str]) -> None:
    """analyze's answer to a hostile file: a result, or one clean error line."""
    assert "Traceback" not in proc.stderr, proc.stderr
    assert proc.returncode in (0, 2), proc.stderr
    if proc.returncode == 2:
        assert_clean_error(proc)


def _bits(t: torch.Tensor) -> np.ndarray:
    t = t.detach().contiguous()
    dt = DTYPES[str(t.dtype).removeprefix("torch.")]
    if not dt.numpy_native:
        t = t.view(torch.int16 if dt.itemsize == 2 else torch.uint8)
    return t.numpy().view(dt.storage)


# --------------------------------------------------------------------------
# the bundled fixtures: the same tensors torch's own loaders give


@pytest.mark.parametrize("name", ["mlp_script.pt", "tiny_lm_script.pt", "mlp.pt2", "tiny_lm.pt2"])
def test_archive_read_without_running_equals_what_torch_loads(name: str) -> None:
    path = FIXTURES / name
    if name.endswith(".pt2"):
        program = torch.export.load(str(path))
        expected = {**program.state_dict, **{k: v for k, v in program.constants.items() if isinstance(v, torch.Tensor)}}
        loaded = load_pt2_archive(path, 0)
    else:
        expected = dict(torch.jit.load(str(path)).state_dict())
        loaded = load_torchscript_archive(path, 0)
    assert [e.name for e in loaded.tensors] == list(expected)
    for e in loaded.tensors:
        t = expected[e.name]
        assert e.shape == tuple(t.shape) and e.dtype == str(t.dtype).removeprefix("torch.")
        np.testing.assert_array_equal(e.read(), _bits(t))


def test_tied_weights_of_a_pt2_program_stay_one_storage() -> None:
    t = {e.name: e for e in load_pt2_archive(FIXTURES / "tiny_lm.pt2", 0).tensors}
    assert t["tok_emb.weight"].storage == t["lm_head.weight"].storage


# --------------------------------------------------------------------------
# TorchScript whose __setstate__ runs code

EVIL_MODULE = textwrap.dedent(
    """
    import sys
    from typing import Tuple

    import torch


    class Evil(torch.nn.Module):
        def __init__(self, path: str, loop: bool):
            super().__init__()
            self.weight = torch.nn.Parameter(torch.randn(4, 4))
            self.path = path
            self.loop = loop
            self.mark = torch.zeros(1)

        def forward(self, x):
            return x @ self.weight

        @torch.jit.export
        def __getstate__(self) -> Tuple[str, bool, bool, torch.Tensor]:
            return (self.path, self.loop, self.training, self.weight)

        @torch.jit.export
        def __setstate__(self, state: Tuple[str, bool, bool, torch.Tensor]) -> None:
            self.path = state[0]
            self.loop = state[1]
            self.training = state[2]
            self.weight = state[3]
            while self.loop:
                pass
            self.mark = torch.from_file(state[0], shared=True, size=4)


    torch.jit.save(torch.jit.script(Evil(sys.argv[2], sys.argv[3] == "loop")), sys.argv[1])
    """
)


def evil_torchscript(tmp_path: Path, loop: bool = False) -> tuple[Path, Path]:
    """A scripted module whose __setstate__ creates ``marker`` (or first loops forever)."""
    script = tmp_path / "make_evil.py"
    script.write_text(EVIL_MODULE)
    path, marker = tmp_path / "evil_script.pt", tmp_path / "marker"
    subprocess.run([sys.executable, str(script), str(path), str(marker), "loop" if loop else "no"], check=True, timeout=120)
    assert not marker.exists()
    return path, marker


def test_torchscript_setstate_that_creates_a_file_is_not_run_by_analyze(tmp_path: Path) -> None:
    path, marker = evil_torchscript(tmp_path)
    proc = sharescan("analyze", path)
    one_line_or_result(proc)
    assert not marker.exists(), "analyze ran the archive's TorchScript"


def test_torchscript_setstate_that_loops_forever_does_not_hang_analyze(tmp_path: Path) -> None:
    path, _ = evil_torchscript(tmp_path, loop=True)
    proc = sharescan("analyze", path, timeout=60)
    one_line_or_result(proc)


def test_export_and_tie_refuse_torchscript_without_trust_code(tmp_path: Path) -> None:
    path, marker = evil_torchscript(tmp_path)
    out = tmp_path / "out.onnx"
    proc = sharescan("export", path, "-o", out, "--input", "x:1x4:float32")
    assert "--trust-code" in assert_clean_error(proc)
    proc = sharescan("tie", path, "-o", tmp_path / "tied.pt", "--task", "tests.tie_tasks:small_pair", "--groups", "A:* = A:*")
    assert "--trust-code" in assert_clean_error(proc)
    assert not marker.exists() and not out.exists()


# --------------------------------------------------------------------------
# pickles whose globals would run code


def payload(kind: str, marker: Path) -> bytes:
    """A protocol-2 pickle that creates ``marker`` when unpickled by a plain unpickler."""
    if kind == "os.system":
        return b"\x80\x02cos\nsystem\nX" + len(f"touch {marker}").to_bytes(4, "little") + f"touch {marker}".encode() + b"\x85R."
    code = f"open({str(marker)!r}, 'w').close()"
    return b"\x80\x02cbuiltins\nexec\nX" + len(code).to_bytes(4, "little") + code.encode() + b"\x85R."


def rewrite_zip(src: Path, dst: Path, change: dict[str, bytes]) -> Path:
    """A copy of a zip archive with the members whose names end in a key replaced."""
    with zipfile.ZipFile(src) as z, zipfile.ZipFile(dst, "w") as out:
        for info in z.infolist():
            data = next((v for k, v in change.items() if info.filename.endswith(k)), z.read(info))
            out.writestr(info.filename, data)
    return dst


@pytest.mark.parametrize("kind", ["os.system", "builtins.exec"])
def test_torchscript_data_pkl_with_a_code_running_global_is_inert(tmp_path: Path, kind: str) -> None:
    marker = tmp_path / "marker"
    path = rewrite_zip(FIXTURES / "mlp_script.pt", tmp_path / "evil_script.pt", {"/data.pkl": payload(kind, marker)})
    proc = sharescan("analyze", path)
    one_line_or_result(proc)
    assert not marker.exists()


def pt2_with_pickled_weight(tmp_path: Path, kind: str) -> tuple[Path, Path]:
    """mlp.pt2 with its first weight marked use_pickle and replaced by a payload."""
    marker = tmp_path / "marker"
    with zipfile.ZipFile(FIXTURES / "mlp.pt2") as z:
        config = json.loads(z.read("mlp/data/weights/model_weights_config.json"))
    config["config"]["features.0.weight"]["use_pickle"] = True
    change = {"data/weights/model_weights_config.json": json.dumps(config).encode(), "data/weights/weight_0": payload(kind, marker)}
    return rewrite_zip(FIXTURES / "mlp.pt2", tmp_path / "evil.pt2", change), marker


@pytest.mark.parametrize("kind", ["os.system", "builtins.exec"])
def test_pt2_pickled_weight_payload_is_not_run_by_analyze_export_or_tie(tmp_path: Path, kind: str) -> None:
    path, marker = pt2_with_pickled_weight(tmp_path, kind)
    proc = sharescan("analyze", path)
    assert "--trust-code" in assert_clean_error(proc)
    proc = sharescan("export", path, "-o", tmp_path / "out.onnx", "--input", "x:1x64:float32")
    assert "--trust-code" in assert_clean_error(proc)
    proc = sharescan("tie", path, "-o", tmp_path / "tied.pt", "--task", "tests.tie_tasks:small_pair", "--groups", "A:* = A:*")
    assert "--trust-code" in assert_clean_error(proc)
    assert not marker.exists()


def test_pt2_whose_sample_inputs_need_a_code_running_unpickler_is_refused_not_run(tmp_path: Path) -> None:
    # torch.export.load falls back to weights_only=False for sample inputs: such a file runs code when loaded.
    marker = tmp_path / "marker"
    path = rewrite_zip(FIXTURES / "mlp.pt2", tmp_path / "evil.pt2", {"data/sample_inputs/model.pt": payload("os.system", marker)})
    assert "--trust-code" in assert_clean_error(sharescan("analyze", path), "evil.pt2")
    assert not marker.exists()


def test_torchscript_constants_pkl_with_a_code_running_global_is_refused_not_run(tmp_path: Path) -> None:
    marker = tmp_path / "marker"
    path = rewrite_zip(FIXTURES / "mlp_script.pt", tmp_path / "evil_script.pt", {"/constants.pkl": payload("builtins.exec", marker)})
    line = assert_clean_error(sharescan("analyze", path), "evil_script.pt")
    assert "builtins.exec" in line and not marker.exists()


def test_truncated_pt2_given_to_export_is_one_line(tmp_path: Path) -> None:
    data = (FIXTURES / "mlp.pt2").read_bytes()
    path = tmp_path / "cut.pt2"
    path.write_bytes(data[: len(data) // 2])
    proc = sharescan("export", path, "-o", tmp_path / "out.onnx", "--input", "x:1x64:float32", "--trust-code")
    assert_clean_error(proc, "cut.pt2")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cut.pt2"]


def test_pt2_weight_reaching_past_its_record_is_refused(tmp_path: Path) -> None:
    with zipfile.ZipFile(FIXTURES / "mlp.pt2") as z:
        config = json.loads(z.read("mlp/data/weights/model_weights_config.json"))
    config["config"]["features.0.weight"]["tensor_meta"]["storage_offset"] = {"as_int": 10}
    path = rewrite_zip(FIXTURES / "mlp.pt2", tmp_path / "bad.pt2", {"data/weights/model_weights_config.json": json.dumps(config).encode()})
    with pytest.raises(InputError, match="reaches past"):
        load_pt2_archive(path, 0)


# --------------------------------------------------------------------------
# bounded walks over weights-only checkpoints


def test_checkpoint_sharing_one_tuple_60_levels_deep_is_walked_once_per_container(tmp_path: Path) -> None:
    x = torch.arange(4.0)
    t: object = (x, x)
    for _ in range(59):
        t = (t, t)  # 2**60 paths, 60 containers
    path = tmp_path / "dag.pt"
    torch.save({"t": t}, path)
    proc = sharescan("analyze", path, "--json", timeout=60)
    assert proc.returncode == 0, proc.stderr
    model = json.loads(proc.stdout)["models"][0]
    assert model["n_tensors"] == 2 and model["unique_bytes"] == 16  # x under two names: aliases


def test_checkpoint_that_contains_itself_is_one_line(tmp_path: Path) -> None:
    loop: list[object] = [torch.zeros(2)]
    loop.append(loop)
    path = tmp_path / "loop.pt"
    torch.save({"loop": loop}, path)
    assert_clean_error(sharescan("analyze", path, timeout=60), "loop.pt", "contains itself")


def test_checkpoint_nested_5000_deep_is_one_line(tmp_path: Path) -> None:
    script = tmp_path / "make_deep.py"
    script.write_text(textwrap.dedent(
        """
        import sys

        import torch

        sys.setrecursionlimit(100_000)
        deep = [torch.zeros(2)]
        for _ in range(5000):
            deep = [deep]
        torch.save({"deep": deep}, sys.argv[1])
        """
    ))  # fmt: skip
    path = tmp_path / "deep.pt"
    subprocess.run([sys.executable, str(script), str(path)], check=True, timeout=120)
    assert_clean_error(sharescan("analyze", path, timeout=60), "deep.pt")


def test_walk_refuses_more_tensors_than_the_limit(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch_archive, "MAX_TENSORS", 10)
    with pytest.raises(InputError, match="more than 10 tensors"):
        list(walk_tensors([torch.zeros(1) for _ in range(11)], "", "many.pt"))
    assert len(list(walk_tensors([torch.zeros(1) for _ in range(10)], "", "ten.pt"))) == 10
