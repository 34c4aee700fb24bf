"""Views of one storage are tensors of their own; the storage's bytes count once.

A PyTorch file saves each storage once, whole, however many views of it the
state dict holds. Each view is analysed with its own elements, only views
that read the same bytes the same way are aliases, and a removed view
reclaims only the bytes of the storage no kept view needs.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

import sharescan
from sharescan.detect.aliased import FreedBytes, find_aliased
from sharescan.sources import LoadOptions, load_model
from sharescan.table import TensorEntry


def _analyze(path: Path):
    return sharescan.analyze([str(path)])


def _groups(result) -> list[tuple[str, list[str], int]]:
    return [(g.relation, [m.name for m in g.members], g.reclaimable_bytes) for g in result.groups]


def test_exact_copy_of_the_second_slice_of_a_storage_is_found(tmp_path: Path) -> None:
    torch.manual_seed(0)
    base = torch.randn(2, 64)
    path = tmp_path / "slices.pt"
    torch.save({"a": base[0], "b": base[1], "copy": base[1].clone()}, path)
    result = _analyze(path)
    assert _groups(result) == [("identical", ["b", "copy"], 256)]
    model = result.models[0]
    # The file holds base's storage (512 B) and the copy (256 B); the copy goes.
    assert (model.stored_bytes, model.unique_bytes, model.reclaimable_bytes) == (768, 768, 256)


def test_slice_dropped_for_an_earlier_copy_frees_only_bytes_no_other_view_needs(tmp_path: Path) -> None:
    x = torch.arange(8, dtype=torch.float32)
    path = tmp_path / "overlap.pt"
    # copy is kept (first in the file); b = x[2:8] is dropped, but a = x[0:6] still needs x[2:6].
    torch.save({"copy": x[2:8].clone(), "a": x[0:6], "b": x[2:8]}, path)
    result = _analyze(path)
    identical = [g for g in result.groups if g.relation == "identical"]
    assert [[m.name for m in g.members] for g in identical] == [["copy", "b"]]
    assert identical[0].reclaimable_bytes == 8  # x[6:8]: the only bytes of b nobody else reads
    assert result.models[0].unique_bytes == 24 + 32


def test_tensor_and_its_transpose_stay_one_storage_counted_once(tmp_path: Path) -> None:
    w = torch.randn(32, 16)
    path = tmp_path / "t.pt"
    torch.save({"w": w, "wt": w.t()}, path)
    entries = {e.name: e for e in load_model(str(path), 0, LoadOptions()).tensors}
    assert entries["w"].storage != entries["wt"].storage and entries["w"].buffer_key == entries["wt"].buffer_key
    np.testing.assert_array_equal(entries["wt"].read(), w.t().numpy())
    result = _analyze(path)
    assert result.models[0].unique_bytes == 2048 and result.totals.reclaimable_bytes == 0
    assert _groups(result) == [("transposed", ["w", "wt"], 0)]


def test_views_read_their_own_elements(tmp_path: Path) -> None:
    x = torch.arange(24, dtype=torch.float32).reshape(4, 6)
    path = tmp_path / "v.pt"
    views = {"row": x[1], "col": x[:, 2], "block": x[1:3, 2:5], "every_other": x[:, ::2]}
    torch.save(views, path)
    entries = {e.name: e for e in load_model(str(path), 0, LoadOptions()).tensors}
    for name, v in views.items():
        assert entries[name].shape == tuple(v.shape)
        np.testing.assert_array_equal(entries[name].read(), v.numpy())
    assert len({e.storage for e in entries.values()}) == 4 and len({e.buffer_key for e in entries.values()}) == 1


def _entry(name: str, storage: str, buffer: str, span: tuple[int, int], n: int) -> TensorEntry:
    return TensorEntry(0, name, (n,), "float32", storage, lambda: np.zeros(n, np.float32), 64, buffer=buffer, span=span)


def test_only_views_with_the_same_layout_are_aliases() -> None:
    entries = [
        _entry("a", "s@0:(4,):(1,)", "s", (0, 16), 4),
        _entry("a_again", "s@0:(4,):(1,)", "s", (0, 16), 4),
        _entry("b", "s@4:(4,):(1,)", "s", (16, 32), 4),
    ]
    groups, units = find_aliased(entries)
    assert [g.members for g in groups] == [(0, 1)] and units == [0, 2]


def test_freed_bytes_count_each_byte_once_and_never_what_a_kept_view_needs() -> None:
    entries = [
        _entry("whole", "s@0:(16,):(1,)", "s", (0, 64), 16),
        _entry("left", "s@0:(8,):(1,)", "s", (0, 32), 8),
        _entry("mid", "s@4:(8,):(1,)", "s", (16, 48), 8),
        _entry("right", "s@8:(8,):(1,)", "s", (32, 64), 8),
    ]
    freed = FreedBytes(entries, removed=[2, 3])  # "whole" and "left" are kept
    assert freed.free(2) == 0  # inside "whole"
    freed = FreedBytes(entries, removed=[0, 2, 3])  # only "left" is kept
    assert [freed.free(2), freed.free(3), freed.free(0)] == [16, 16, 0]
