"""The relation registry (``detect.RELATIONS``) is the single source of relations."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

import sharescan
from sharescan import detect
from sharescan.detect.relation import BaseRelation, Scope
from sharescan.groups import Group
from sharescan.report.json_report import render_json
from sharescan.report.markdown import render_markdown
from tests.helpers import save_safetensors

rng = np.random.default_rng(0)


class _Reversed(BaseRelation):
    """A relation defined here only: a tensor equal to another with its rows reversed."""

    name = "reversed"

    def detect(self, scope: Scope) -> list[Group]:
        groups = []
        claimed: set[int] = set()
        for a in scope.units:
            if a in claimed:
                continue
            flipped = scope.entries[a].read()[::-1]
            copies = [b for b in scope.units if b != a and b not in claimed and scope.entries[b].shape == flipped.shape and np.array_equal(scope.entries[b].read(), flipped)]
            if copies:
                claimed.update([a, *copies])
                groups.append(Group(self.name, (a, *copies)))
        return groups


def test_every_registered_relation_is_totalled_in_registry_order(tmp_path: Path) -> None:
    w = rng.standard_normal((8, 16)).astype(np.float32)
    path = save_safetensors(tmp_path / "m.safetensors", {"a": w, "b": w.copy(), "c": -w, "d": 3 * w})
    data = json.loads(render_json(sharescan.analyze([str(path)])))
    assert list(data["totals"]["reclaimable_by_relation"]) == [r.name for r in detect.RELATIONS]
    assert len({r.name for r in detect.RELATIONS}) == len(detect.RELATIONS)  # names are unique keys


def test_a_relation_added_to_the_registry_alone_is_detected_accounted_and_reported(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    toy = _Reversed()
    # Right after "aliased": it runs before "identical" and claims what it finds.
    monkeypatch.setattr(detect, "RELATIONS", (detect.RELATIONS[0], toy, *detect.RELATIONS[1:]))
    w = rng.standard_normal((8, 16)).astype(np.float32)
    v = rng.standard_normal((4, 16)).astype(np.float32)
    path = save_safetensors(tmp_path / "m.safetensors", {"a": w, "b": w[::-1].copy(), "c": v, "d": v.copy()})
    result = sharescan.analyze([str(path)], sharescan.AnalysisOptions(tol=None, row_tol=None, candidates=0))
    assert sorted((g.relation, [m.name for m in g.members]) for g in result.groups) == [("identical", ["c", "d"]), ("reversed", ["a", "b"])]
    assert [name for name, _ in result.totals.by_relation][:3] == ["aliased", "reversed", "identical"]
    assert dict(result.totals.by_relation)["reversed"] == w.nbytes
    assert result.totals.reclaimable_bytes == w.nbytes + v.nbytes
    assert "reversed" in render_markdown(result)


def test_a_claiming_relation_hides_its_members_from_later_relations(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # b and e are both a reversed, and copies of each other: "reversed" runs
    # first and claims them, so "identical" may not reclaim e a second time.
    monkeypatch.setattr(detect, "RELATIONS", (detect.RELATIONS[0], _Reversed(), *detect.RELATIONS[1:]))
    w = rng.standard_normal((8, 16)).astype(np.float32)
    path = save_safetensors(tmp_path / "m.safetensors", {"a": w, "b": w[::-1].copy(), "e": w[::-1].copy()})
    result = sharescan.analyze([str(path)], sharescan.AnalysisOptions(tol=None, row_tol=None, candidates=0))
    assert [(g.relation, [m.name for m in g.members]) for g in result.groups] == [("reversed", ["a", "b", "e"])]
    assert result.totals.reclaimable_bytes == 2 * w.nbytes  # each byte once
