"""What one fuzz case is (an id and parameters) and what building it yields (a
command to run and what it may do)."""

from __future__ import annotations

import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = ["Case", "Plan", "FIXTURES", "REPO", "analyze", "dedup", "copy_fixture"]

REPO = Path(__file__).resolve().parents[2]
FIXTURES = REPO / "fixtures"


@dataclass(frozen=True)
class Case:
    """One generated case: enough to rebuild its files anywhere, deterministically."""

    id: str
    cls: str  # the class it counts under in reports
    builder: str  # name of a function in tests.fuzz.builders
    params: dict[str, Any] = field(default_factory=dict)
    mode: str = "inproc"  # "inproc": sharescan.cli.main in the worker; "subprocess": a real `python -m sharescan`

    def to_json(self) -> dict[str, Any]:
        return {"id": self.id, "cls": self.cls, "builder": self.builder, "params": self.params, "mode": self.mode}


@dataclass
class Plan:
    """A built case: the command, and what it is allowed to do."""

    argv: list[str]
    cwd: Path
    # "refuse": exit 2 only; "either": exit 2, or exit 0 with a valid output
    # (the input may still be readable); "ok": a valid input, exit 0 only.
    expect: str = "refuse"
    outputs: list[Path] = field(default_factory=list)  # files a success may create
    immutable: list[Path] = field(default_factory=list)  # chattr +i'd paths, released afterwards

    @property
    def command(self) -> str:
        return " ".join(["sharescan", *(repr(a) if ("\x00" in a or " " in a) else a for a in self.argv)])


def analyze(root: Path, model: Path | str, expect: str = "refuse", *extra: str) -> Plan:
    """``analyze MODEL --json --report root/report.md``."""
    report = root / "report.md"
    return Plan(["analyze", str(model), "--json", "--report", str(report), *extra], root, expect, [report])


def dedup(root: Path, model: Path | str, expect: str = "refuse", out: Path | None = None, *extra: str) -> Plan:
    """``dedup MODEL -o root/out/dedup.onnx --no-ram --json``."""
    if out is None:
        (root / "out").mkdir(exist_ok=True)
        out = root / "out" / "dedup.onnx"
    return Plan(["dedup", str(model), "-o", str(out), "--no-ram", "--json", *extra], root, expect, [out, Path(f"{out}.data")])


def copy_fixture(root: Path, name: str, into: str = "m") -> Path:
    """A copy of fixtures/NAME (file or folder) under root/INTO."""
    dest_dir = root / into
    dest_dir.mkdir(parents=True, exist_ok=True)
    src = FIXTURES / name
    dest = dest_dir / src.name
    if src.is_dir():
        shutil.copytree(src, dest)
    else:
        shutil.copyfile(src, dest)
    return dest
