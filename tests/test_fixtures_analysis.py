"""Every tie, copy and transposed copy the trained fixtures contain, with exact bytes."""

from __future__ import annotations

import json

import pytest
import torch

import sharescan
from sharescan.analysis import AnalysisOptions
from tests.conftest import FIXTURES

EXPECTED = json.loads((FIXTURES / "expected.json").read_text())
LM = EXPECTED["summary"]["tiny_lm"]
EMB_BYTES = LM["embedding_bytes"]
VOCAB, DIM = LM["embedding_shape"]


def _analyze(*names: str, **options):
    return sharescan.analyze([str(FIXTURES / n) for n in names], AnalysisOptions(**options))


def _relations(result) -> dict[str, list[list[str]]]:
    out: dict[str, list[list[str]]] = {}
    for g in result.groups:
        out.setdefault(g.relation, []).append([m.name for m in g.members])
    return out


def test_embedding_size_matches_config() -> None:
    assert EMB_BYTES == VOCAB * DIM * 4


@pytest.mark.parametrize("name", ["tiny_lm.pt", "tiny_lm_script.pt", "tiny_lm.pt2", "tiny_lm.safetensors"])
def test_tied_embedding_is_aliased_and_counted_once(name: str) -> None:
    result = _analyze(name)
    aliased = _relations(result)["aliased"]
    assert [sorted(g) for g in aliased] == [["lm_head.weight", "tok_emb.weight"]]
    model = result.models[0]
    assert model.stored_bytes - model.unique_bytes == EMB_BYTES
    assert "transposed" not in _relations(result)


@pytest.mark.parametrize("name", ["tiny_lm_folded.onnx", "tiny_lm_external/model.onnx", "tiny_lm_dynamo.onnx"])
def test_constant_folded_export_holds_a_transposed_copy_of_the_tie(name: str) -> None:
    facts = LM["per_file"][name]
    result = _analyze(name)
    (group,) = [g for g in result.groups if g.relation == "transposed"]
    assert [m.name for m in group.members] == facts["identical"] + facts["transposed"]
    assert group.members[0].shape == (VOCAB, DIM) and group.members[1].shape == (DIM, VOCAB)
    assert group.reclaimable_bytes == EMB_BYTES
    assert result.totals.by_relation[2] == ("transposed", EMB_BYTES)


def test_unfolded_export_already_shares_the_tie() -> None:
    result = _analyze("tiny_lm_unfolded.onnx")
    model = result.models[0]
    assert dict(model.reused_initializers)["tok_emb.weight"] == 2
    assert "transposed" not in _relations(result)
    assert all("tok_emb.weight" not in names for groups in _relations(result).values() for names in groups)


def test_external_data_model_reads_the_same_tensors_as_the_inline_one() -> None:
    inline = _analyze("tiny_lm_folded.onnx").models[0]
    external = _analyze("tiny_lm_external/model.onnx").models[0]
    assert (external.n_tensors, external.unique_bytes) == (inline.n_tensors, inline.unique_bytes)
    assert external.file_bytes > (FIXTURES / "tiny_lm_external/model.onnx").stat().st_size


def test_sharded_hf_folder_reads_every_shard() -> None:
    result = _analyze("tiny_lm_hf")
    model = result.models[0]
    index = json.loads((FIXTURES / "tiny_lm_hf/model.safetensors.index.json").read_text())
    assert model.format == "safetensors-sharded"
    assert model.n_tensors == len(index["weight_map"])
    assert model.unique_bytes == _analyze("tiny_lm.safetensors").models[0].unique_bytes


def test_the_tie_is_found_across_checkpoint_and_export() -> None:
    result = _analyze("tiny_lm.pt", "tiny_lm_folded.onnx")
    rel = _relations(result)
    assert ["tok_emb.weight", "tok_emb.weight"] in rel["identical"]
    # The legacy exporter stores every Linear weight transposed for MatMul: each
    # is a transposed copy of the checkpoint's, including the tie's second copy.
    transposed = {m.name for g in result.groups if g.relation == "transposed" for m in g.members}
    assert LM["per_file"]["tiny_lm_folded.onnx"]["transposed"][0] in transposed
    assert "blocks.0.fc1.weight" in transposed
    # Nothing is reclaimed twice, and the checkpoint keeps every tensor it has.
    assert sum(g.reclaimable_bytes for g in result.groups) == result.totals.reclaimable_bytes
    assert result.models[0].reclaimable_bytes == 0


@pytest.mark.parametrize("name", ["mlp.pt", "mlp.safetensors", "mlp.onnx", "mlp_script.pt", "mlp.pt2"])
def test_every_format_of_one_model_reads_the_same_parameters(name: str) -> None:
    facts = EXPECTED["files"]["mlp.safetensors"]
    model = _analyze(name).models[0]
    assert model.n_tensors == facts["tensor_count"]
    assert model.unique_bytes == facts["total_bytes"]


def test_mlp_in_all_formats_is_one_set_of_parameters() -> None:
    names = ["mlp.pt", "mlp.safetensors", "mlp.onnx", "mlp_script.pt", "mlp.pt2"]
    result = _analyze(*names)
    per_model = EXPECTED["files"]["mlp.safetensors"]["total_bytes"]
    assert result.totals.reclaimable_bytes == 4 * per_model
    assert result.totals.by_relation[1] == ("identical", 4 * per_model)


def test_pair_trained_apart_shares_only_rows_that_never_trained() -> None:
    # Same initialisation, trained apart: no whole tensor is shared, but units
    # whose ReLU never fired kept their initial weights in both models.
    result = _analyze("pair_a.safetensors", "pair_b.safetensors")
    assert {g.relation for g in result.groups} == {"rows"}
    for g in result.groups:
        assert [m.name for m in g.members] == [g.members[0].name] * 2
        assert g.max_abs_error == 0.0 and g.rows.distinct_rows < g.rows.n_rows
    a = torch.load(FIXTURES / "pair_a.pt", weights_only=True)["features.0.weight"]
    b = torch.load(FIXTURES / "pair_b.pt", weights_only=True)["features.0.weight"]
    same = int((a == b).all(dim=1).sum())
    first = next(g for g in result.groups if g.members[0].name == "features.0.weight")
    assert first.rows.n_rows - first.rows.distinct_rows == same > 0


def test_nested_checkpoint_is_walked_or_narrowed_by_key() -> None:
    whole = _analyze("mlp_checkpoint.pt").models[0]
    narrowed = _analyze("mlp_checkpoint.pt", key="model").models[0]
    assert narrowed.n_tensors == 6
    assert narrowed.unique_bytes == EXPECTED["files"]["mlp.safetensors"]["total_bytes"]
    assert whole.n_tensors > narrowed.n_tensors


def test_pickled_module_loads_only_with_trust_pickle() -> None:
    from sharescan.errors import InputError

    with pytest.raises(InputError, match="--trust-pickle"):
        _analyze("mlp_module.pkl.pt")
    trusted = _analyze("mlp_module.pkl.pt", trust_pickle=True).models[0]
    assert trusted.n_tensors == 6
