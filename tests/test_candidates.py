"""Candidates for tying: only pairs within MAX_CANDIDATE_DISTANCE, most bytes saved per unit of distance first."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

import sharescan
from sharescan.analysis import AnalysisOptions
from sharescan.detect.candidates import MAX_CANDIDATE_DISTANCE
from sharescan.result import AnalysisResult
from tests.helpers import run_cli, save_safetensors

rng = np.random.default_rng(7)


def _noisy(w: np.ndarray, rel: float) -> np.ndarray:
    """w plus dense noise of relative L2 size rel."""
    noise = rng.standard_normal(w.shape)
    return (w + rel * np.linalg.norm(w) / np.linalg.norm(noise) * noise).astype(w.dtype)


def _analyze(tensors: dict[str, np.ndarray], tmp_path: Path, candidates: int = 5) -> AnalysisResult:
    path = save_safetensors(tmp_path / "m.safetensors", tensors)
    return sharescan.analyze([str(path)], AnalysisOptions(candidates=candidates))


def _pairs(result: AnalysisResult) -> list[tuple[str, str]]:
    return [(c.a.name, c.b.name) for c in result.candidates]


def test_pairs_beyond_the_distance_limit_are_not_listed(tmp_path: Path) -> None:
    w, v, u = (rng.standard_normal((48, 40)).astype(np.float32) for _ in range(3))
    tensors = {
        "close_a": w, "close_b": _noisy(w, 0.3),
        "past_a": v, "past_b": _noisy(v, 0.6),  # estimated within reach of the limit, then measured beyond it
        "unrelated_a": u, "unrelated_b": rng.standard_normal((48, 40)).astype(np.float32),  # about sqrt(2) apart
    }  # fmt: skip
    result = _analyze(tensors, tmp_path, candidates=20)
    assert _pairs(result) == [("close_a", "close_b")]
    assert all(c.rel_distance <= MAX_CANDIDATE_DISTANCE for c in result.candidates)


def test_a_larger_tensor_outranks_a_slightly_closer_small_one(tmp_path: Path) -> None:
    small, large = rng.standard_normal(256).astype(np.float32), rng.standard_normal((128, 96)).astype(np.float32)
    result = _analyze({"small_a": small, "small_b": _noisy(small, 0.05), "large_a": large, "large_b": _noisy(large, 0.1)}, tmp_path)
    assert _pairs(result) == [("large_a", "large_b"), ("small_a", "small_b")]
    first, second = result.candidates
    assert (first.saved_bytes, second.saved_bytes) == (large.nbytes, small.nbytes)
    assert first.score == pytest.approx(large.nbytes / first.rel_distance)
    assert first.score > second.score


def test_at_equal_size_the_closer_pair_ranks_first(tmp_path: Path) -> None:
    w, v = rng.standard_normal((64, 32)).astype(np.float32), rng.standard_normal((64, 32)).astype(np.float32)
    result = _analyze({"far_a": v, "far_b": _noisy(v, 0.2), "near_a": w, "near_b": _noisy(w, 0.02)}, tmp_path)
    assert _pairs(result)[:2] == [("near_a", "near_b"), ("far_a", "far_b")]


def test_json_candidates_keep_their_keys_and_add_saved_bytes_and_score(tmp_path: Path) -> None:
    w = rng.standard_normal((32, 16)).astype(np.float32)
    path = save_safetensors(tmp_path / "m.safetensors", {"a": w, "b": _noisy(w, 0.1)})
    proc = run_cli("analyze", str(path), "--json")
    assert proc.returncode == 0, proc.stderr
    (cand,) = json.loads(proc.stdout)["candidates"]
    assert set(cand) == {"a", "b", "transposed", "rel_distance", "max_abs_diff", "saved_bytes", "score"}
    assert cand["saved_bytes"] == w.nbytes
    assert cand["score"] == pytest.approx(w.nbytes / cand["rel_distance"], rel=1e-5)
