"""The benchmark's planted model, at a small size: every relation found, nothing else."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

import sharescan
from tests.conftest import ROOT

sys.path.insert(0, str(ROOT / "benchmarks"))

import bench_analyze  # noqa: E402
import make_synthetic  # noqa: E402


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_planted_relations_are_found_with_full_recall_and_precision(tmp_path: Path, seed: int) -> None:
    path = tmp_path / "synthetic.safetensors"
    info = make_synthetic.write(path, 24 * 10**6, rows=32, seed=seed)
    assert json.loads(path.with_suffix(".truth.json").read_text())["truth"] == info["truth"]
    result = sharescan.analyze([str(path)])
    score = bench_analyze.score(result, info["truth"])
    assert score["missed"] == [] and score["unexpected"] == []
    assert score["recall"] == 1.0 and score["precision"] == 1.0
    relations = {t["relation"] for t in info["truth"]}
    assert relations == {"identical", "transposed", "negated", "scaled", "near", "rows"}


def test_scaled_copies_report_their_planted_factor(tmp_path: Path) -> None:
    path = tmp_path / "synthetic.safetensors"
    info = make_synthetic.write(path, 8 * 10**6, rows=16)
    result = sharescan.analyze([str(path)])
    factors = {}
    for g in result.groups:
        if g.relation == "scaled":
            a, b = g.members
            factors[b.name] = b.scale if b.name.endswith(".b") else 1 / a.scale
    planted = {t["members"][1]: t["scale"] for t in info["truth"] if t["relation"] == "scaled"}
    assert factors == pytest.approx(planted)
