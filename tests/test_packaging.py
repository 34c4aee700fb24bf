"""The package as installed: one version, its license, its type marker, and
torch as an extra that the base install does without."""

from __future__ import annotations

import subprocess
import sys
from importlib import metadata
from pathlib import Path

import pytest

from tests.conftest import FIXTURES, ROOT

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
PROJECT = PYPROJECT["project"]

# Runs the CLI in a Python where `import torch` fails, as in the base install.
WITHOUT_TORCH = "import sys; sys.modules['torch'] = None; from sharescan.cli import main; sys.argv = ['sharescan', *sys.argv[1:]]; main()"


def _without_torch(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-c", WITHOUT_TORCH, *args], cwd=ROOT, capture_output=True, text=True, timeout=120)


def test_version_is_written_once_and_the_cli_reports_the_installed_one() -> None:
    import sharescan

    assert "version" not in PROJECT and "version" in PROJECT["dynamic"]
    assert PYPROJECT["tool"]["setuptools"]["dynamic"]["version"] == {"attr": "sharescan.__version__"}
    out = subprocess.run([sys.executable, "-m", "sharescan", "--version"], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == f"sharescan, version {metadata.version('sharescan')}"
    assert metadata.version("sharescan") == sharescan.__version__


def test_py_typed_ships_as_package_data() -> None:
    from importlib import resources

    assert resources.files("sharescan").joinpath("py.typed").is_file()
    assert "py.typed" in PYPROJECT["tool"]["setuptools"]["package-data"]["sharescan"]


def test_license_is_an_spdx_expression_with_the_apache_text_beside_it() -> None:
    assert PROJECT["license"] == "Apache-2.0"
    assert PROJECT["license-files"] == ["LICENSE"]
    text = (ROOT / "LICENSE").read_text(encoding="utf-8")
    assert "Apache License" in text and "Version 2.0, January 2004" in text and "END OF TERMS AND CONDITIONS" in text
    assert metadata.metadata("sharescan")["License-Expression"] == "Apache-2.0"
    assert not any(c.startswith("License ::") for c in PROJECT.get("classifiers", []))  # the SPDX field replaces them


def test_torch_is_an_extra_and_base_dependencies_are_ranges() -> None:
    from packaging.requirements import Requirement

    requires = [Requirement(r) for r in metadata.requires("sharescan") or []]
    base = {r.name: r for r in requires if r.marker is None}
    torch_extra = {r.name: r for r in requires if r.marker is not None and r.marker.evaluate({"extra": "torch"})}
    assert "torch" not in base and "onnxscript" not in base, sorted(base)
    assert {"torch", "onnxscript"} <= set(torch_extra), sorted(torch_extra)
    assert {"numpy", "onnx", "onnxruntime", "safetensors", "ml_dtypes", "rich", "click", "xxhash", "psutil"} <= set(base), sorted(base)
    pinned = [str(r) for r in [*base.values(), *torch_extra.values()] if any(s.operator in ("==", "===") for s in r.specifier)]
    assert not pinned, pinned
    assert all(str(r.specifier) for r in [*base.values(), *torch_extra.values()]), "every runtime dependency names a range"


@pytest.mark.parametrize("name", ["mlp.pt", "mlp_checkpoint.pt", "mlp.pt2"])
def test_pytorch_file_without_torch_is_refused_in_one_line_naming_the_extra(name: str) -> None:
    proc = _without_torch("analyze", str(FIXTURES / name))
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr == f"error: {FIXTURES / name}: reading PyTorch files needs torch: pip install 'sharescan[torch]'\n"
    assert proc.stdout == ""


@pytest.mark.parametrize("args", [("export", "fixtures/mlp_script.pt", "-o", "{out}/m.onnx", "--input", "x:1x64:float32"), ("tie", "fixtures/mlp.pt", "--inputs", "fixtures/digits_pair.npz", "--auto", "1", "-o", "{out}/t.pt")], ids=["export", "tie"])
def test_export_and_tie_without_torch_are_refused_in_one_line_naming_the_extra(args: tuple[str, ...], tmp_path: Path) -> None:
    proc = _without_torch(*(a.format(out=tmp_path) for a in args))
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr == f"error: {args[0]} needs torch: pip install 'sharescan[torch]'\n"
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("name", ["mlp.onnx", "mlp.safetensors", "mlp_script.pt"])
def test_onnx_safetensors_and_torchscript_are_read_without_torch(name: str) -> None:
    proc = _without_torch("analyze", str(FIXTURES / name), "--json")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.lstrip().startswith("{")


def test_a_module_missing_inside_torch_is_not_reported_as_the_missing_extra() -> None:
    from sharescan.errors import InputError
    from sharescan.sources.torch_source import needs_torch

    with pytest.raises(ModuleNotFoundError), needs_torch("x.pt: reading PyTorch files"):
        raise ModuleNotFoundError("No module named 'torch._C'", name="torch._C")
    with pytest.raises(InputError, match=r"^x\.pt: reading PyTorch files needs torch: pip install 'sharescan\[torch\]'$"), needs_torch("x.pt: reading PyTorch files"):
        raise ModuleNotFoundError("No module named 'torch'", name="torch")


def test_fuzz_cases_run_on_one_xdist_worker() -> None:
    # Each xdist worker has its own session: spread over workers, the shared
    # fuzz fixture would run every case once per worker.
    from tests import conftest

    class Item:
        fixturenames = ("case", "fuzz_results")

        def __init__(self) -> None:
            self.marks: list[pytest.MarkDecorator] = []

        def add_marker(self, mark: pytest.MarkDecorator) -> None:
            self.marks.append(mark)

    fuzz, other = Item(), Item()
    other.fixturenames = ("tmp_path",)
    conftest.pytest_collection_modifyitems(None, [fuzz, other])  # type: ignore[arg-type]
    assert [m.mark.args for m in fuzz.marks] == [("fuzz",)] and fuzz.marks[0].name == "xdist_group"
    assert other.marks == []
