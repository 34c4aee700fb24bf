"""Path tricks: outputs that would overwrite an input or its data, links,
``..``, NUL bytes, FIFOs, devices, and outputs that cannot be written."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tests.fuzz import models
from tests.fuzz.builders import builder
from tests.fuzz.plan import Plan, analyze, copy_fixture, dedup

__all__ = ["PATH_TRICKS"]


def _inline(root: Path) -> Path:
    (root / "m").mkdir(exist_ok=True)
    path = root / "m" / "model.onnx"
    path.write_bytes(models.small_onnx().SerializeToString())
    return path


def _ext(root: Path, name: str = "model.onnx", location: str = "model.onnx.data") -> Path:
    """A model whose W lives in ``location`` beside it."""
    path, _ = models.external_onnx(root / "m", location=location, name=name)
    return path


def _dedup_to(out: Callable[[Path, Path], Path], make: Callable[[Path], Path] = _inline, expect: str = "refuse", *extra: str) -> Callable[[Path], Plan]:
    def build(root: Path) -> Plan:
        model = make(root)
        return dedup(root, model, expect, out(root, model), *extra)

    return build


def _link(target: Path, link: Path) -> Path:
    link.symlink_to(target)
    return link


def _immutable(path: Path, plan: Plan) -> Plan:
    import subprocess

    subprocess.run(["chattr", "+i", str(path)], check=True, capture_output=True)
    plan.immutable.append(path)
    return plan


def _report(plan: Plan, report: Path) -> Plan:
    plan.argv += ["--report", str(report)]
    plan.outputs.append(report)
    return plan


def _analyze_report(make: Callable[[Path], Path], report: Callable[[Path, Path], Path]) -> Callable[[Path], Plan]:
    def build(root: Path) -> Plan:
        model = make(root)
        target = report(root, model)
        return Plan(["analyze", str(model), "--json", "--report", str(target)], root, "refuse", [target])

    return build


def _fifo(root: Path, name: str) -> Path:
    (root / "m").mkdir(exist_ok=True)
    path = root / "m" / name
    os.mkfifo(path)
    return path


def _dev_zero_link(root: Path, name: str) -> Path:
    (root / "m").mkdir(exist_ok=True)
    return _link(Path("/dev/zero"), root / "m" / name)


def _hf(root: Path) -> Path:
    return models.hf_folder(root)


def _readonly_file(root: Path) -> Plan:
    model = _inline(root)
    (root / "out").mkdir()
    out = root / "out" / "dedup.onnx"
    out.write_bytes(b"keep me")
    out.chmod(0o444)
    return dedup(root, model, "either", out)


def _fifo_data(root: Path) -> Plan:
    model = _ext(root)
    data = root / "m" / "model.onnx.data"
    data.unlink()
    os.mkfifo(data)
    return dedup(root, model)


def _export_report(root: Path) -> Plan:
    model = copy_fixture(root, "mlp.pt2")
    (root / "out").mkdir()
    out = root / "out" / "m.onnx"
    return Plan(["export", str(model), "-o", str(out), "--report", str(model), "--no-ram"], root, "refuse", [out])


def _tie_over_input(root: Path) -> Plan:
    import numpy as np

    model = copy_fixture(root, "mlp.pt")
    calib = root / "calib.npz"
    np.savez(calib, x=np.zeros((4, 64), dtype=np.float32))
    return Plan(["tie", str(model), "--arch", "fixtures.architectures:DigitsMLP", "--inputs", str(calib), "--groups", "A:features.0.bias = A:features.2.bias", "--epochs", "1", "--finetune-shared", "0", "-o", str(model)], root, "refuse", [])


def _empty_folder(root: Path) -> Plan:
    (root / "m").mkdir()
    return analyze(root, root / "m")


def _same_twice(root: Path) -> Plan:
    model = copy_fixture(root, "mlp.safetensors")
    plan = analyze(root, model, "either")
    plan.argv.insert(2, str(model))
    return plan


def _relative_dotdot(root: Path) -> Plan:
    """cwd inside m/sub, the input named through ``..``, the output onto it via ``..`` too."""
    _inline(root)
    (root / "m" / "sub").mkdir()
    return Plan(["dedup", "../model.onnx", "-o", "../sub/../model.onnx", "--no-ram"], root / "m" / "sub", "refuse", [])


PATH_TRICKS: dict[str, Callable[[Path], Plan]] = {
    "control_dedup_inline": _dedup_to(lambda r, m: r / "out.onnx", expect="ok"),
    "control_dedup_external": _dedup_to(lambda r, m: r / "out.onnx", _ext, "ok"),
    "out_is_input": _dedup_to(lambda r, m: m),
    "out_is_input_external": _dedup_to(lambda r, m: m, _ext),
    "out_is_input_data_file": _dedup_to(lambda r, m: m.parent / "model.onnx.data", _ext),
    "out_data_file_is_input_data": _dedup_to(lambda r, m: m.parent / "weights.onnx", lambda r: _ext(r, "x.onnx", "weights.onnx.data"), "either"),
    "out_dotdot_to_input": _dedup_to(lambda r, m: (m.parent / "sub").mkdir() or m.parent / "sub" / ".." / m.name),
    "out_relative_dotdot": _relative_dotdot,
    "out_symlink_to_input": _dedup_to(lambda r, m: _link(m, r / "link.onnx")),
    "out_symlink_to_data": _dedup_to(lambda r, m: _link(m.parent / "model.onnx.data", r / "link.onnx"), _ext),
    "out_hardlink_to_input": _dedup_to(lambda r, m: (os.link(m, r / "hard.onnx"), r / "hard.onnx")[1]),
    "out_hardlink_to_data": _dedup_to(lambda r, m: (os.link(m.parent / "model.onnx.data", r / "hard.onnx"), r / "hard.onnx")[1], _ext),
    "in_symlink": _dedup_to(lambda r, m: r / "out.onnx", lambda r: _link(_inline(r), r / "in_link.onnx"), "ok"),
    "out_nul": _dedup_to(lambda r, m: Path(str(r / "out.onnx") + "\x00.x")),
    "out_missing_folder": _dedup_to(lambda r, m: r / "nowhere" / "out.onnx"),
    "out_is_folder": _dedup_to(lambda r, m: (r / "outdir").mkdir() or r / "outdir"),
    "out_immutable_file": lambda r: _immutable(r / "out" / "dedup.onnx", ((r / "out").mkdir(), (r / "out" / "dedup.onnx").write_bytes(b"old"), dedup(r, _inline(r)))[2]),
    "out_immutable_folder": lambda r: _immutable(r / "out", dedup(r, _inline(r))),
    "out_readonly_file": _readonly_file,
    "report_is_input": lambda r: _report(dedup(r, (m := _inline(r))), m),
    "report_is_data_file": lambda r: _report(dedup(r, (m := _ext(r))), m.parent / "model.onnx.data"),
    "report_is_output": lambda r: _report((p := dedup(r, _inline(r))), Path(p.argv[3])),
    "report_symlink_to_input": lambda r: _report(dedup(r, (m := _inline(r))), _link(m, r / "rep.md")),
    "report_immutable_folder": lambda r: _immutable(r / "rep", _report(((r / "rep").mkdir(), dedup(r, _inline(r)))[1], r / "rep" / "r.md")),
    "report_is_output_data_file": lambda r: _report((p := dedup(r, _ext(r))), Path(p.argv[3] + ".data")),
    "report_is_input_folder": _analyze_report(_hf, lambda r, m: m),
    "out_under_input_file": _dedup_to(lambda r, m: m / "out.onnx"),
    "out_symlinked_folder_to_input": _dedup_to(lambda r, m: _link(m.parent, r / "alias") / m.name),
    "report_nul": lambda r: _report(dedup(r, _inline(r)), Path(str(r / "r.md") + "\x00")),
    "analyze_report_is_input": _analyze_report(lambda r: copy_fixture(r, "mlp.safetensors"), lambda r, m: m),
    "analyze_report_is_data_file": _analyze_report(_ext, lambda r, m: m.parent / "model.onnx.data"),
    "analyze_report_is_shard": _analyze_report(_hf, lambda r, m: m / "model-00002-of-00002.safetensors"),
    "analyze_report_is_index": _analyze_report(_hf, lambda r, m: m / "model.safetensors.index.json"),
    "analyze_report_symlink_to_input": _analyze_report(lambda r: copy_fixture(r, "mlp.pt"), lambda r, m: _link(m, r / "rep.md")),
    "analyze_in_nul": lambda r: analyze(r, str(copy_fixture(r, "mlp.safetensors")) + "\x00.onnx"),
    "dedup_in_nul": lambda r: dedup(r, str(_inline(r)) + "\x00"),
    "analyze_dev_zero": lambda r: analyze(r, "/dev/zero"),
    "analyze_dev_zero_as_safetensors": lambda r: analyze(r, _dev_zero_link(r, "z.safetensors")),
    "analyze_dev_zero_as_onnx": lambda r: analyze(r, _dev_zero_link(r, "z.onnx")),
    "analyze_dev_zero_as_pt": lambda r: analyze(r, _dev_zero_link(r, "z.pt")),
    "dedup_dev_zero": lambda r: dedup(r, _dev_zero_link(r, "z.onnx")),
    "analyze_fifo_onnx": lambda r: analyze(r, _fifo(r, "p.onnx")),
    "analyze_fifo_safetensors": lambda r: analyze(r, _fifo(r, "p.safetensors")),
    "analyze_fifo_pt": lambda r: analyze(r, _fifo(r, "p.pt")),
    "dedup_fifo": lambda r: dedup(r, _fifo(r, "p.onnx")),
    "dedup_fifo_data_file": _fifo_data,
    "analyze_fifo_in_folder": lambda r: (_fifo(r, "model.safetensors"), analyze(r, r / "m"))[1],
    "analyze_folder_empty": _empty_folder,
    "analyze_same_file_twice": _same_twice,
    "dedup_in_is_folder": lambda r: dedup(r, (r / "m").mkdir() or r / "m"),
    "export_out_is_input": lambda r: Plan(["export", str(m := copy_fixture(r, "mlp.pt2")), "-o", str(m), "--no-ram"], r, "refuse", []),
    "export_report_is_input": _export_report,
    "tie_out_is_input": _tie_over_input,
}


@builder
def path_trick(root: Path, p: dict[str, Any]) -> Plan:
    return PATH_TRICKS[p["trick"]](root)
