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


# --- slices of the synthetic set: ambiguous, image-told, unseen names ---

from bga_mner.analysis import (SLICES, run_slice_f1, slice_f1, slice_positions,  # noqa: E402
                               slice_tags)
from bga_mner.data.conll import read_conll, write_conll  # noqa: E402
from bga_mner.data.synthetic import SynthConfig, generate  # noqa: E402

OLD_META = {  # a meta.json of GENERATOR_VERSION 1: no image_told_positions, no unseen_positions
    "a": {"split": "test", "has_image": True, "cue_words": [], "ambiguous_positions": [3]},
    "b": {"split": "test", "has_image": True, "cue_words": [{"position": 6, "word": "flag"}],
          "ambiguous_positions": [1]},
    "c": {"split": "test", "has_image": False, "cue_words": [], "ambiguous_positions": [0]},
    "d": {"split": "test", "has_image": True, "cue_words": [], "ambiguous_positions": []},
}


def test_slice_positions_on_an_old_meta_without_the_new_keys():
    assert slice_positions(OLD_META, "ambiguous") == {"a": [3], "b": [1], "c": [0], "d": []}
    # image-told: with an image and no cue word
    assert slice_positions(OLD_META, "image_told") == {"a": [3], "b": [], "c": [], "d": []}
    assert slice_positions(OLD_META, "unseen") == {"a": [], "b": [], "c": [], "d": []}
    new = {**OLD_META, "a": {**OLD_META["a"], "unseen_positions": [5, 6]}}
    assert slice_positions(new, "unseen")["a"] == [5, 6]
    assert set(SLICES) == {"ambiguous", "image_told", "unseen"}
    with pytest.raises(ValueError, match="unknown slice"):
        slice_positions(OLD_META, "rare")


def test_slice_tags_keeps_only_entities_on_the_positions():
    gold = ["B-PER", "I-PER", "O", "B-LOC"]
    pred = ["B-PER", "O", "B-ORG", "B-LOC"]
    assert slice_tags(gold, pred, [1]) == (["B-PER", "I-PER", "O", "O"], ["O", "O", "O", "O"])
    assert slice_tags(gold, pred, {0, 2}) == (["B-PER", "I-PER", "O", "O"],
                                              ["B-PER", "O", "B-ORG", "O"])
    assert slice_tags(gold, pred, []) == (["O"] * 4, ["O"] * 4)
    with pytest.raises(ValueError, match="predicted tags"):
        slice_tags(gold, pred[:3], [0])
    out = slice_f1([_tweet(0, gold)], [pred], {"t0": [3]}, "unseen")
    assert out["unseen"]["overall"]["f1"] == 100.0 and out["unseen_entities"] == 1


def _flip(tag):
    if tag == "O":
        return tag
    prefix, etype = tag.split("-", 1)
    return f"{prefix}-{'LOC' if etype == 'PER' else 'PER'}"


def test_run_slice_f1_scores_each_slice_of_a_run_folder(tmp_path):
    root = tmp_path / "set"
    generate(root, SynthConfig(train=4, valid=2, test=120, seed=5, unseen_names=3, unseen_rate=0.5,
                               image_told_cues=False))
    meta = json.loads((root / "meta.json").read_text())["tweets"]
    assert slice_positions(meta, "image_told") == {i: m["image_told_positions"]
                                                    for i, m in meta.items()}
    gold = read_conll(root / "test.txt")
    # predictions: every unseen name mistyped, everything else right
    pred = [[_flip(tag) if k in meta[t.image_id]["unseen_positions"] else tag
             for k, tag in enumerate(t.tags)] for t in gold]
    run = tmp_path / "run"
    (run / "predictions").mkdir(parents=True)
    (run / "config.yaml").write_text(f"data:\n  name: synthetic\n  root: {root}\n")
    write_conll(run / "predictions" / "test.conll", gold, pred)
    unseen = run_slice_f1(run, "unseen")
    told = run_slice_f1(run, "image_told")
    assert unseen["unseen_entities"] > 10 and unseen["unseen"]["overall"]["f1"] == 0.0
    assert told["image_told_entities"] > 5 and told["image_told"]["overall"]["f1"] == 100.0
    assert run_ambiguous_f1(run) == run_slice_f1(run, "ambiguous")
    assert run_ambiguous_f1(run)["ambiguous"]["overall"]["f1"] == 100.0
    assert unseen["overall"] == told["overall"] and unseen["overall"]["overall"]["f1"] < 100.0
    with pytest.raises(ValueError, match="unknown slice"):
        run_slice_f1(run, "rare")
