"""Bad input is refused cleanly: the contract of ``sharescan analyze`` for
missing, corrupt, refused and empty models and for bad options.

Every refusal must give exit code 2 and exactly one line on stderr that starts
with ``error: ``, names the file and says what to do; no Python traceback,
nothing written (not even the ``--report`` file, nothing on stdout), and the
input files untouched. The CLI runs in a subprocess, as a user runs it; every
bad file is made in pytest's ``tmp_path``.
"""

from __future__ import annotations

import json
import os
import pickle
import struct
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]

# A refusal names a way forward: an action (re-save, check, copy, ...) or what
# sharescan would accept instead. One of these phrases must appear in it.
ADVICE = (
    "re-save",
    "re-download",
    "download",
    "check",
    "copy",
    "pass ",
    "--trust-pickle",
    "choose",
    "create",
    "expected",
    "refusing",
    "keys are",
    "sharescan reads",
    "recognises",
    "needs",
    "does not read (",
)

# A damaged file is not "pickled Python objects": suggesting --trust-pickle
# for it would steer the user into running an unpickler on garbage.
NOT_A_PICKLE_REFUSAL = ("--trust-pickle", "pickled python objects")

# --key only applies to PyTorch checkpoints; suggesting it for a safetensors or
# ONNX file sends the user after an option that cannot help.
KEY_HINT = ("--key",)


# --------------------------------------------------------------------------
# helpers: running the CLI and checking a refusal


def run(*args: object, cwd: Path) -> subprocess.CompletedProcess[str]:
    """``python -m sharescan analyze ARGS`` in ``cwd``, output captured."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
    return subprocess.run(
        [sys.executable, "-m", "sharescan", "analyze", *map(str, args)],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )


def assert_clean_error(proc: subprocess.CompletedProcess[str], *words: str) -> str:
    """Exit 2, one stderr line starting with ``error: `` holding every word
    (case-insensitive), no traceback. Returns the line."""
    detail = f"exit {proc.returncode}\n--- stderr ---\n{proc.stderr}\n--- stdout ---\n{proc.stdout}"
    assert "Traceback" not in proc.stderr, detail
    assert proc.returncode == 2, detail
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, f"expected one stderr line, got {len(lines)}\n{detail}"
    line = lines[0]
    assert line.startswith("error: "), detail
    for word in words:
        assert word.lower() in line.lower(), f"{word!r} not in {line!r}"
    return line


def assert_advice(line: str) -> None:
    """The message says what to do, not only what went wrong."""
    assert any(a in line.lower() for a in ADVICE), f"no advice on what to do in {line!r}"


def snapshot(root: Path) -> dict[str, tuple[str, bytes, int]]:
    """Every file and folder under root: kind, bytes and mtime."""
    out = {}
    for p in sorted(root.rglob("*")):
        name = str(p.relative_to(root))
        out[name] = ("dir", b"", 0) if p.is_dir() else ("file", p.read_bytes(), p.lstat().st_mtime_ns)
    return out


def refuse(tmp_path: Path, *args: object, words: tuple[str, ...] = (), absent: tuple[str, ...] = (), advice: bool = True) -> str:
    """Run analyze ARGS with ``--report`` in tmp_path and check the whole
    contract: a clean error naming the words (and none of ``absent``), nothing
    on stdout, no report and no other file written, every input file
    unchanged. Returns the error line."""
    before = snapshot(tmp_path)
    report = tmp_path / "report.md"
    proc = run(*args, "--report", report, cwd=tmp_path)
    line = assert_clean_error(proc, *words)
    for word in absent:
        assert word.lower() not in line.lower(), f"{word!r} should not be in {line!r}"
    if advice:
        assert_advice(line)
    assert proc.stdout == "", proc.stdout
    assert not report.exists(), "the report was written although the input was refused"
    assert snapshot(tmp_path) == before, "files under tmp_path were created, changed or removed"
    return line


def truncate(path: Path, size: int) -> None:
    data = path.read_bytes()
    assert 0 < size < len(data)
    path.write_bytes(data[:size])


def damage_zip_member(path: Path, suffix: str) -> None:
    """Rewrite a zip archive (torch.save / torch.jit.save) with the members
    ending in ``suffix`` replaced by bytes that are not a valid pickle; the
    archive itself stays a valid zip."""
    import zipfile

    with zipfile.ZipFile(path) as z:
        members = [(info.filename, z.read(info)) for info in z.infolist()]
    assert any(name.endswith(suffix) for name, _ in members)
    with zipfile.ZipFile(path, "w") as z:
        for name, data in members:
            z.writestr(name, b"\x80\x02garbage" + data[len(data) // 2 :] if name.endswith(suffix) else data)


# --------------------------------------------------------------------------
# helpers: writing model files


def save_safetensors(path: Path, tensors: dict[str, np.ndarray]) -> Path:
    from safetensors.numpy import save_file

    save_file(tensors, str(path))
    return path


def raw_safetensors(path: Path, header: bytes, data: bytes = b"", length: int | None = None) -> Path:
    """A safetensors file written by hand: u64 header length, header, data."""
    n = len(header) if length is None else length
    path.write_bytes(struct.pack("<Q", n) + header + data)
    return path


def good_safetensors(path: Path) -> Path:
    rng = np.random.default_rng(0)
    return save_safetensors(path, {"a.weight": rng.standard_normal((8, 8)).astype(np.float32), "b.weight": rng.standard_normal((8, 4)).astype(np.float32)})


def state_dict():
    import torch

    torch.manual_seed(0)
    return {"fc.weight": torch.randn(16, 16), "fc.bias": torch.randn(16), "out.weight": torch.randn(4, 16)}


def save_torchscript(path: Path) -> Path:
    import torch

    class Tiny(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.fc = torch.nn.Linear(8, 8)

        def forward(self, x):
            return self.fc(x)

    torch.jit.save(torch.jit.script(Tiny()), str(path))
    return path


def onnx_matmul(path: Path, external: str | None = None) -> Path:
    """Y = X @ W with W a [4, 4] float initializer; W in ``external`` if given."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    w = numpy_helper.from_array(np.arange(16, dtype=np.float32).reshape(4, 4), name="W")
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["X", "W"], ["Y"])],
        "matmul",
        [helper.make_tensor_value_info("X", TensorProto.FLOAT, [1, 4])],
        [helper.make_tensor_value_info("Y", TensorProto.FLOAT, [1, 4])],
        initializer=[w],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    if external is None:
        onnx.save_model(model, str(path))
    else:
        onnx.save_model(model, str(path), save_as_external_data=True, all_tensors_to_one_file=True, location=external, size_threshold=0)
    return path


def set_external_location(path: Path, location: str) -> None:
    """Rewrite W's external_data ``location`` in an ONNX file, nothing else."""
    import onnx

    model = onnx.load(str(path), load_external_data=False)
    (init,) = model.graph.initializer
    for kv in init.external_data:
        if kv.key == "location":
            kv.value = location
    path.write_bytes(model.SerializeToString())


@pytest.fixture
def external_onnx(tmp_path: Path) -> Path:
    """model/model.onnx with W in model/weights.bin."""
    folder = tmp_path / "model"
    folder.mkdir()
    path = onnx_matmul(folder / "model.onnx", external="weights.bin")
    assert (folder / "weights.bin").stat().st_size == 64
    return path


class Evil:
    """Unpickling this runs ``touch MARKER``."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch '{self.marker}'",))


# --------------------------------------------------------------------------
# paths that are not models


def test_missing_file_is_refused(tmp_path):
    refuse(tmp_path, tmp_path / "nothere.safetensors", words=("nothere.safetensors", "no such file"))


def test_folder_without_a_model_is_refused(tmp_path):
    folder = tmp_path / "emptyish"
    folder.mkdir()
    (folder / "README.md").write_text("no weights here\n")
    (folder / "config.json").write_text("{}\n")
    refuse(tmp_path, folder, words=("emptyish", "no model"))


@pytest.mark.parametrize("suffix", [".safetensors", ".pt", ".onnx", ".pt2", ".bin"])
def test_empty_file_is_refused(tmp_path, suffix):
    path = tmp_path / f"zero{suffix}"
    path.write_bytes(b"")
    refuse(tmp_path, path, words=(path.name, "empty"))


def test_text_file_is_an_unknown_format(tmp_path):
    path = tmp_path / "notes.txt"
    path.write_text("these are notes, not weights\n" * 4)
    refuse(tmp_path, path, words=("notes.txt", "unknown model format"))


def test_random_bytes_with_unknown_suffix_are_an_unknown_format(tmp_path):
    path = tmp_path / "blob.dat"
    path.write_bytes(bytes(range(1, 256)) * 4)  # no pickle, zip or safetensors signature
    refuse(tmp_path, path, words=("blob.dat", "unknown model format"))


# --------------------------------------------------------------------------
# truncated or corrupt safetensors


def test_safetensors_cut_inside_the_length_prefix_is_refused(tmp_path):
    path = good_safetensors(tmp_path / "cut.safetensors")
    truncate(path, 5)
    refuse(tmp_path, path, words=("cut.safetensors",))


def test_safetensors_cut_inside_the_header_is_refused(tmp_path):
    path = good_safetensors(tmp_path / "cut.safetensors")
    (n,) = struct.unpack("<Q", path.read_bytes()[:8])
    truncate(path, 8 + n // 2)
    refuse(tmp_path, path, words=("cut.safetensors",))


def test_safetensors_cut_inside_the_data_is_refused(tmp_path):
    path = good_safetensors(tmp_path / "cut.safetensors")
    truncate(path, path.stat().st_size - 10)
    refuse(tmp_path, path, words=("cut.safetensors", "truncated"))


def test_safetensors_header_length_beyond_the_file_is_refused(tmp_path):
    header = json.dumps({"w": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]}}).encode()
    path = raw_safetensors(tmp_path / "long.safetensors", header, b"\0" * 8, length=10_000)
    refuse(tmp_path, path, words=("long.safetensors", "header"))


def test_safetensors_header_length_over_the_format_cap_is_refused(tmp_path):
    path = raw_safetensors(tmp_path / "huge.safetensors", b"{}", length=2**63)
    refuse(tmp_path, path, words=("huge.safetensors", "header"))


@pytest.mark.parametrize("header", [b"this is not json", b"\xff\xfe\x00garbage", b'{"w": {"dtype": "F32",'], ids=["text", "not-utf8", "unterminated"])
def test_safetensors_header_that_is_not_json_is_refused(tmp_path, header):
    path = raw_safetensors(tmp_path / "nojson.safetensors", header, b"\0" * 16)
    refuse(tmp_path, path, words=("nojson.safetensors", "header"))


@pytest.mark.parametrize("header", [b"[1, 2, 3]", b'"a string"', b"42"], ids=["list", "string", "number"])
def test_safetensors_header_that_is_json_but_not_an_object_is_refused(tmp_path, header):
    path = raw_safetensors(tmp_path / "notobj.safetensors", header, b"\0" * 16)
    refuse(tmp_path, path, words=("notobj.safetensors", "header"))


def test_safetensors_data_offsets_not_matching_shape_are_refused(tmp_path):
    # [2, 2] float32 is 16 bytes; the record claims 12.
    header = json.dumps({"w": {"dtype": "F32", "shape": [2, 2], "data_offsets": [0, 12]}}).encode()
    path = raw_safetensors(tmp_path / "offsets.safetensors", header, b"\0" * 16)
    refuse(tmp_path, path, words=("offsets.safetensors", "'w'"))


@pytest.mark.parametrize(
    "record",
    [
        {"dtype": "F32", "shape": [2]},
        {"dtype": "F32", "shape": "two", "data_offsets": [0, 8]},
        {"dtype": "F32", "shape": [2], "data_offsets": [0]},
        "not a record",
    ],
    ids=["no-offsets", "shape-not-list", "one-offset", "record-not-object"],
)
def test_safetensors_malformed_tensor_record_is_refused(tmp_path, record):
    header = json.dumps({"w": record}).encode()
    path = raw_safetensors(tmp_path / "record.safetensors", header, b"\0" * 8)
    refuse(tmp_path, path, words=("record.safetensors", "'w'"))


def test_safetensors_unknown_dtype_is_refused(tmp_path):
    header = json.dumps({"w": {"dtype": "F128", "shape": [1], "data_offsets": [0, 16]}}).encode()
    path = raw_safetensors(tmp_path / "dtype.safetensors", header, b"\0" * 16)
    refuse(tmp_path, path, words=("dtype.safetensors", "F128"))


# --------------------------------------------------------------------------
# truncated or corrupt PyTorch files


def test_pt_state_dict_truncated_to_half_is_refused(tmp_path):
    import torch

    path = tmp_path / "half.pt"
    torch.save(state_dict(), path)
    truncate(path, path.stat().st_size // 2)
    refuse(tmp_path, path, words=("half.pt",))


def test_truncated_zip_checkpoint_is_refused_without_importing_torch(tmp_path):
    """A cut torch.save file is said from its zip magic: a zoo worker that meets one does not pay torch's import."""
    import torch

    path = tmp_path / "cut.pt"
    torch.save(state_dict(), path)
    truncate(path, path.stat().st_size // 2)
    code = (
        "import sys\n"
        "from sharescan.errors import InputError\n"
        "from sharescan.sources import LoadOptions, load_model\n"
        "try:\n"
        f"    load_model({str(path)!r}, 0, LoadOptions())\n"
        "except InputError as e:\n"
        "    print(e)\n"
        "print('torch' in sys.modules)\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    message, imported = proc.stdout.strip().splitlines()
    assert "cut.pt" in message and "truncated" in message
    assert imported == "False"


def test_legacy_pt_state_dict_truncated_to_half_is_refused(tmp_path):
    import torch

    path = tmp_path / "legacy.pt"
    torch.save(state_dict(), path, _use_new_zipfile_serialization=False)
    truncate(path, path.stat().st_size // 2)
    refuse(tmp_path, path, words=("legacy.pt",))


@pytest.mark.parametrize("data", [b"definitely not a checkpoint " * 8, bytes(range(256)) * 4, b"PK\x03\x04" + b"\0" * 200], ids=["text", "bytes", "zip-magic"])
def test_garbage_bytes_named_pt_are_refused_as_corrupt(tmp_path, data):
    path = tmp_path / "garbage.pt"
    path.write_bytes(data)
    refuse(tmp_path, path, words=("garbage.pt",), absent=NOT_A_PICKLE_REFUSAL)


def test_pt_zip_with_a_corrupt_data_pkl_is_refused_as_corrupt(tmp_path):
    import torch

    path = tmp_path / "damaged.pt"
    torch.save(state_dict(), path)
    damage_zip_member(path, "/data.pkl")
    refuse(tmp_path, path, words=("damaged.pt",), absent=NOT_A_PICKLE_REFUSAL)


def test_torchscript_truncated_is_refused(tmp_path):
    path = save_torchscript(tmp_path / "script.pt")
    truncate(path, path.stat().st_size // 2)
    refuse(tmp_path, path, words=("script.pt",))


def test_torchscript_with_a_corrupt_member_is_refused(tmp_path):
    path = save_torchscript(tmp_path / "script.pt")
    damage_zip_member(path, "/constants.pkl")
    refuse(tmp_path, path, words=("script.pt",))


@pytest.mark.parametrize("data", [b"not an exported program " * 8, b"PK\x03\x04" + b"\0" * 200], ids=["text", "zip-magic"])
def test_garbage_pt2_is_refused(tmp_path, data):
    path = tmp_path / "program.pt2"
    path.write_bytes(data)
    refuse(tmp_path, path, words=("program.pt2",))


def test_pt2_that_is_a_zip_of_something_else_is_refused(tmp_path):
    import zipfile

    path = tmp_path / "other.pt2"
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("hello.txt", "not an exported program")
    refuse(tmp_path, path, words=("other.pt2",))


# --------------------------------------------------------------------------
# truncated or corrupt ONNX


def test_onnx_truncated_is_refused(tmp_path):
    path = onnx_matmul(tmp_path / "cut.onnx")
    truncate(path, path.stat().st_size // 2)
    refuse(tmp_path, path, words=("cut.onnx",))


@pytest.mark.parametrize("data", [b"\xff" * 64, bytes(range(256)) * 4, b"not an onnx model at all"], ids=["ff", "bytes", "text"])
def test_garbage_onnx_is_refused(tmp_path, data):
    path = tmp_path / "garbage.onnx"
    path.write_bytes(data)
    refuse(tmp_path, path, words=("garbage.onnx",))


# --------------------------------------------------------------------------
# pickles that carry code


def test_pt_holding_a_whole_module_is_refused_without_trust_pickle(tmp_path):
    import torch

    path = tmp_path / "module.pt"
    torch.save(torch.nn.Linear(2, 2), path)
    refuse(tmp_path, path, words=("module.pt", "--trust-pickle"))


def test_pt_holding_a_whole_module_loads_with_trust_pickle(tmp_path):
    import torch

    path = tmp_path / "module.pt"
    torch.save(torch.nn.Linear(2, 2), path)
    proc = run(path, "--trust-pickle", "--json", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "Traceback" not in proc.stderr
    (model,) = json.loads(proc.stdout)["models"]
    assert model["n_tensors"] == 2  # weight and bias


def test_raw_pickle_payload_is_live(tmp_path):
    """Control for the refusals below: unpickling the payload does run code."""
    marker = tmp_path / "PWNED"
    pickle.loads(pickle.dumps(Evil(marker), protocol=2))
    assert marker.exists()


@pytest.mark.parametrize("name", ["evil.pt", "evil.pkl", "evil.bin", "evil.ckpt"])
def test_raw_pickle_that_runs_code_is_refused_and_never_run(tmp_path, name):
    marker = tmp_path / "PWNED"
    path = tmp_path / name
    path.write_bytes(pickle.dumps(Evil(marker), protocol=2))
    assert path.read_bytes()[:1] == b"\x80"
    refuse(tmp_path, path, words=(name, "--trust-pickle"))
    assert not marker.exists(), "unpickling ran os.system"


def test_raw_pickle_that_runs_code_inside_a_dict_is_refused_and_never_run(tmp_path):
    import torch

    marker = tmp_path / "PWNED"
    path = tmp_path / "evil_ckpt.pt"
    torch.save({"model": state_dict(), "hook": Evil(marker)}, path)
    assert not marker.exists()
    refuse(tmp_path, path, words=("evil_ckpt.pt", "--trust-pickle"))
    assert not marker.exists(), "unpickling ran os.system"


# --------------------------------------------------------------------------
# ONNX external data


def test_onnx_external_data_with_a_valid_location_loads(tmp_path, external_onnx):
    """Control for the refusals below: the untouched external-data model is fine."""
    proc = run(external_onnx, "--json", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    json.loads(proc.stdout)


def test_onnx_external_data_leaving_the_folder_is_refused(tmp_path, external_onnx):
    (tmp_path / "outside.bin").write_bytes(np.arange(16, dtype=np.float32).tobytes())
    set_external_location(external_onnx, "../outside.bin")
    refuse(tmp_path, external_onnx, words=("model.onnx", "../outside.bin", "leaves"))


def test_onnx_external_data_with_an_absolute_path_is_refused(tmp_path, external_onnx):
    outside = tmp_path / "outside.bin"
    outside.write_bytes(np.arange(16, dtype=np.float32).tobytes())
    set_external_location(external_onnx, str(outside))
    refuse(tmp_path, external_onnx, words=("model.onnx", str(outside)))


def test_onnx_external_data_through_a_symlink_out_of_the_folder_is_refused(tmp_path, external_onnx):
    outside = tmp_path / "outside.bin"
    outside.write_bytes(np.arange(16, dtype=np.float32).tobytes())
    (external_onnx.parent / "link.bin").symlink_to(outside)
    set_external_location(external_onnx, "link.bin")
    refuse(tmp_path, external_onnx, words=("model.onnx", "leaves"))


def test_onnx_external_data_file_missing_is_refused(tmp_path, external_onnx):
    (external_onnx.parent / "weights.bin").unlink()
    refuse(tmp_path, external_onnx, words=("model.onnx", "weights.bin", "missing"))


def test_onnx_external_data_file_too_short_is_refused(tmp_path, external_onnx):
    truncate(external_onnx.parent / "weights.bin", 10)
    refuse(tmp_path, external_onnx, words=("model.onnx", "weights.bin"))


# --------------------------------------------------------------------------
# sharded safetensors folders


def write_index(folder: Path, weight_map: dict[str, str]) -> Path:
    folder.mkdir(exist_ok=True)
    index = folder / "model.safetensors.index.json"
    index.write_text(json.dumps({"metadata": {}, "weight_map": weight_map}))
    return index


def test_sharded_index_pointing_outside_the_folder_is_refused(tmp_path):
    good_safetensors(tmp_path / "x.safetensors")
    folder = tmp_path / "hf"
    write_index(folder, {"a.weight": "../x.safetensors", "b.weight": "../x.safetensors"})
    refuse(tmp_path, folder, words=("model.safetensors.index.json", "../x.safetensors"))


def test_sharded_index_missing_a_shard_is_refused(tmp_path):
    folder = tmp_path / "hf"
    folder.mkdir()
    good_safetensors(folder / "model-00001-of-00002.safetensors")
    write_index(folder, {"a.weight": "model-00001-of-00002.safetensors", "b.weight": "model-00002-of-00002.safetensors"})
    refuse(tmp_path, folder, words=("model.safetensors.index.json", "model-00002-of-00002.safetensors", "missing"))


def test_sharded_index_that_is_not_json_is_refused(tmp_path):
    folder = tmp_path / "hf"
    folder.mkdir()
    (folder / "model.safetensors.index.json").write_text("{not json")
    refuse(tmp_path, folder, words=("model.safetensors.index.json",))


def test_sharded_index_with_a_corrupt_shard_is_refused(tmp_path):
    folder = tmp_path / "hf"
    shard = good_safetensors(tmp_path / "model-00001-of-00001.safetensors")
    write_index(folder, {"a.weight": shard.name})
    shard.rename(folder / shard.name)
    truncate(folder / shard.name, 20)
    refuse(tmp_path, folder, words=(shard.name,))


# --------------------------------------------------------------------------
# models with no tensors


def test_safetensors_without_tensors_is_refused(tmp_path):
    path = save_safetensors(tmp_path / "none.safetensors", {})
    refuse(tmp_path, path, words=("none.safetensors", "no tensors"), absent=KEY_HINT)


def test_handwritten_empty_safetensors_header_is_refused(tmp_path):
    path = raw_safetensors(tmp_path / "bare.safetensors", b"{}")
    refuse(tmp_path, path, words=("bare.safetensors", "no tensors"), absent=KEY_HINT)


def test_onnx_graph_without_initializers_is_refused(tmp_path):
    import onnx
    from onnx import TensorProto, helper

    graph = helper.make_graph(
        [helper.make_node("Identity", ["input"], ["output"])],
        "identity",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, [2])],
        [helper.make_tensor_value_info("output", TensorProto.FLOAT, [2])],
    )
    path = tmp_path / "identity.onnx"
    onnx.save_model(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(path))
    refuse(tmp_path, path, words=("identity.onnx", "no tensors"), absent=KEY_HINT)


def test_pt_state_dict_without_tensors_is_refused(tmp_path):
    import torch

    path = tmp_path / "empty_sd.pt"
    torch.save({}, path)
    refuse(tmp_path, path, words=("empty_sd.pt", "no tensors"))


def test_one_bad_model_among_good_ones_is_named_and_nothing_is_written(tmp_path):
    good = good_safetensors(tmp_path / "good.safetensors")
    bad = good_safetensors(tmp_path / "bad.safetensors")
    truncate(bad, bad.stat().st_size - 10)
    line = refuse(tmp_path, good, bad, words=("bad.safetensors",))
    assert "good.safetensors" not in line


# --------------------------------------------------------------------------
# bad options


def test_fail_above_that_is_not_a_size_is_refused(tmp_path):
    path = good_safetensors(tmp_path / "ok.safetensors")
    refuse(tmp_path, path, "--fail-above", "abc", words=("--fail-above", "abc"))


def test_report_into_a_missing_folder_is_refused_and_creates_nothing(tmp_path):
    path = good_safetensors(tmp_path / "ok.safetensors")
    target = tmp_path / "no" / "such" / "dir" / "report.md"
    before = snapshot(tmp_path)
    proc = run(path, "--report", target, cwd=tmp_path)
    assert_advice(assert_clean_error(proc, "report.md", "does not exist"))
    assert proc.stdout == ""
    assert not (tmp_path / "no").exists()
    assert snapshot(tmp_path) == before


def test_report_path_that_is_a_folder_is_refused(tmp_path):
    path = good_safetensors(tmp_path / "ok.safetensors")
    (tmp_path / "out").mkdir()
    before = snapshot(tmp_path)
    proc = run(path, "--report", tmp_path / "out", cwd=tmp_path)
    assert_clean_error(proc, "out")
    assert snapshot(tmp_path) == before


def test_unknown_key_in_a_nested_checkpoint_names_the_available_keys(tmp_path):
    import torch

    path = tmp_path / "ckpt.pt"
    torch.save({"model": state_dict(), "epoch": 3}, path)
    refuse(tmp_path, path, "--key", "nope", words=("ckpt.pt", "nope", "'model'", "'epoch'"))


def test_key_into_a_nested_checkpoint_loads(tmp_path):
    """Control for the refusal above: the right --key works."""
    import torch

    path = tmp_path / "ckpt.pt"
    torch.save({"model": state_dict(), "epoch": 3}, path)
    proc = run(path, "--key", "model", "--json", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    json.loads(proc.stdout)


def test_top_below_one_is_refused(tmp_path):
    path = good_safetensors(tmp_path / "ok.safetensors")
    before = snapshot(tmp_path)
    proc = run(path, "--top", "0", cwd=tmp_path)
    assert_clean_error(proc, "--top")
    assert snapshot(tmp_path) == before


# --------------------------------------------------------------------------
# not errors


def test_nan_tensor_is_a_warning_not_an_error(tmp_path):
    weights = np.ones((8, 8), dtype=np.float32)
    weights[3, 5] = np.nan
    path = save_safetensors(tmp_path / "nan.safetensors", {"has_nan.weight": weights, "fine.weight": np.zeros((8, 8), dtype=np.float32)})
    before = path.read_bytes(), path.stat().st_mtime_ns
    proc = run(path, "--json", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "Traceback" not in proc.stderr
    warnings = [line for line in proc.stderr.splitlines() if line.startswith("warning:")]
    assert any("has_nan.weight" in w for w in warnings), proc.stderr
    assert not any("fine.weight" in w for w in warnings), proc.stderr
    assert not any(line.startswith("error:") for line in proc.stderr.splitlines())
    result = json.loads(proc.stdout)
    assert any("has_nan.weight" in w for w in result["warnings"]), result["warnings"]
    assert "has_nan.weight" in result["models"][0]["nonfinite_tensors"]
    assert (path.read_bytes(), path.stat().st_mtime_ns) == before
