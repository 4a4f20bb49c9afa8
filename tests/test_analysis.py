"""bga_mner.analysis: retrieval arithmetic, image-free generated features, ambiguous-name F1."""

from __future__ import annotations

import json

import pytest
import torch

from bga_mner.analysis import (alignment_features, ambiguous_f1, recall_at_k,
                               retrieval_from_features, run_ambiguous_f1)
from bga_mner.data.conll import Tweet
from models_batch import make_batch, tiny_model


def test_recall_at_k_counts_ties_against_the_query():
    sim = torch.tensor([[0.9, 0.1, 0.2],    # own image first
                        [0.5, 0.4, 0.6],    # own image last
                        [0.3, 0.3, 0.3]])   # a three-way tie: not retrieved at 1
    assert recall_at_k(sim, 1) == pytest.approx(1 / 3)
    assert recall_at_k(sim, 2) == pytest.approx(1 / 3)
    assert recall_at_k(sim, 3) == pytest.approx(1.0)


def test_retrieval_is_perfect_for_matched_features_and_chance_like_for_shuffled():
    g = torch.Generator().manual_seed(0)
    real = torch.randn(40, 2, 16, generator=g) + 5.0  # a shared offset (hub component)
    generated = real + 0.1 * torch.randn(40, 2, 16, generator=g)
    ids = [f"i{k}" for k in range(40)]
    res = retrieval_from_features(generated, real, ids)
    assert res.recall_at_1 == 1.0 and res.per_layer == [1.0, 1.0]
    assert res.n == 40 and res.chance_at_1 == pytest.approx(1 / 40) and res.chance_at_5 == pytest.approx(5 / 40)
    shuffled = retrieval_from_features(generated[torch.randperm(40, generator=g)], real, ids, "last")
    assert shuffled.recall_at_1 <= 0.1 and shuffled.layer == 1


def test_alignment_features_are_image_free_and_pooled_per_layer():
    model = tiny_model()
    batch = make_batch(has_image=(False, True, True), crops=((1, 1, 1), (1, 0, 0), (1, 1, 0)))
    gen, real, ids = alignment_features(model, [batch])
    n = int(batch["has_image"].sum())
    assert gen.shape == real.shape == (n, model.num_bga_layers, model.t2v.queries.shape[1])
    assert ids == [i for i, h in zip(batch["ids"], batch["has_image"]) if h]
    other = dict(batch, image=torch.randn_like(batch["image"]), crops=torch.randn_like(batch["crops"]))
    gen2, real2, _ = alignment_features(model, [other])
    assert torch.equal(gen, gen2)            # generated from the text alone
    assert not torch.allclose(real, real2)   # real features see the image


def _tweet(i, tags):
    return Tweet(f"t{i}", [f"w{k}" for k in range(len(tags))], list(tags))


def test_ambiguous_f1_scores_only_entities_on_ambiguous_positions():
    gold = [_tweet(0, ["B-PER", "O", "B-LOC"]), _tweet(1, ["O", "B-ORG", "I-ORG"])]
    pred = [["B-LOC", "O", "B-LOC"],   # ambiguous word 0 mistyped; word 2 right but not ambiguous
            ["O", "B-ORG", "O"]]        # overlaps ambiguous word 1 with the wrong boundary
    out = ambiguous_f1(gold, pred, {"t0": [0], "t1": [1, 2]})
    assert out["ambiguous_entities"] == 2
    assert out["ambiguous"]["overall"] == {"precision": 0.0, "recall": 0.0, "f1": 0.0}
    assert out["overall"]["overall"]["precision"] == pytest.approx(100 / 3)
    right = ambiguous_f1(gold, [g.tags for g in gold], {"t0": [0]})
    assert right["ambiguous"]["overall"]["f1"] == 100.0 and right["ambiguous_entities"] == 1
    with pytest.raises(ValueError, match="t1"):
        ambiguous_f1(gold, [pred[0], ["O"]], {})


def test_run_ambiguous_f1_reads_a_run_folder(smoke_run):
    run_dir, _ = smoke_run
    out = run_ambiguous_f1(run_dir)
    results = json.loads((run_dir / "results.json").read_text())
    assert out["overall"]["overall"]["f1"] == pytest.approx(results["test"]["overall"]["f1"])
    assert out["ambiguous_entities"] > 0
