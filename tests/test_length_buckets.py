"""``data.length_buckets``: batches padded to a few fixed lengths (data/datamodule.py), outputs unchanged."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from bga_mner.config import ConfigError, DataConfig, load_config
from bga_mner.data.conll import Tweet
from bga_mner.data.datamodule import Item, MNERDataModule, bucket_length, collate
from bga_mner.data.encode import encode_batch
from bga_mner.data.images import VisualSample
from bga_mner.models.backbones import load_tokenizer
from bga_mner.system import MNERSystem
from models_batch import tiny_cfg

FIXTURES = Path(__file__).parent / "fixtures"
WORDS = [["Kevin", "Durant", "scored", "in", "Boston", "tonight"], ["NASA", "launch"],
         ["Go", "Seahawks", "!"]]
TAGS = [["B-PER", "I-PER", "O", "O", "B-LOC", "O"], ["B-ORG", "O"], ["O", "B-ORG", "O"]]
BUCKETS = (8, 16, 32)
G, C, K = 224, 128, 3  # the tiny ViT's image and crop sizes (patch 32)


@pytest.fixture(scope="module")
def tokenizer():
    return load_tokenizer("tiny-bert")  # the bundled MiniLM WordPiece vocabulary


def _items(tokenizer, words=WORDS, tags=TAGS, max_length: int = 128) -> list[Item]:
    gen = torch.Generator().manual_seed(0)
    items = []
    for i, (enc, w, t) in enumerate(zip(encode_batch(tokenizer, words, max_length), words, tags)):
        crop_mask = torch.tensor([True, i == 0, False])
        visual = VisualSample(torch.randn(3, G, G, generator=gen), torch.randn(K, 3, C, C, generator=gen),
                              crop_mask, has_image=i != 1)
        items.append(Item(Tweet(f"t{i}", list(w), list(t)), enc, visual))
    return items


def test_bucket_length_is_the_smallest_bucket_that_holds_it() -> None:
    assert [bucket_length(n, BUCKETS) for n in (1, 8, 9, 16, 17, 32)] == [8, 8, 16, 16, 32, 32]
    with pytest.raises(ValueError, match=r"33 word pieces is longer than the largest of "
                                         r"data.length_buckets=\[8, 16, 32\]"):
        bucket_length(33, BUCKETS)


def test_collate_pads_tokens_and_words_to_buckets(tokenizer) -> None:
    items = _items(tokenizer)
    plain = collate(items, tokenizer.pad_token_id)
    padded = collate(items, tokenizer.pad_token_id, length_buckets=BUCKETS)
    nt, w = plain["input_ids"].shape[1], plain["labels"].shape[1]
    assert (nt, w) == (9, 6)  # [CLS] 7 pieces [SEP]; six words
    assert padded["input_ids"].shape == padded["attention_mask"].shape == (3, 16)
    for key in ("word_starts", "word_mask", "labels"):
        assert padded[key].shape == (3, 8), key
        assert padded[key].dtype == plain[key].dtype, key
    # the batch's own part is unchanged, the new columns are padding
    for key in ("input_ids", "attention_mask"):
        assert torch.equal(padded[key][:, :nt], plain[key]), key
    assert (padded["input_ids"][:, nt:] == tokenizer.pad_token_id).all()
    assert (padded["attention_mask"][:, nt:] == 0).all()
    for key in ("word_starts", "word_mask", "labels"):
        assert torch.equal(padded[key][:, :w], plain[key]), key
        assert not padded[key][:, w:].any(), key  # start 0, mask False, label 0 (O)
    for key in ("image", "crops", "crop_mask", "has_image"):
        assert torch.equal(padded[key], plain[key]), key
    assert padded["words"] == plain["words"] and padded["tags"] == plain["tags"]


def test_more_words_than_the_largest_bucket_keep_their_own_word_axis(tokenizer) -> None:
    words = [["w"] * 12]  # 12 words, 14 pieces: the token axis fits 16, the words fit no bucket <= 8
    items = _items(tokenizer, words=words, tags=[["O"] * 12], max_length=8)  # truncated to 8 pieces
    batch = collate(items[:1], tokenizer.pad_token_id, length_buckets=(8,))
    assert batch["input_ids"].shape == (1, 8)
    assert batch["labels"].shape == (1, 12)  # every word's gold label, as without buckets
    assert batch["word_mask"].sum() == 6  # the kept words


def test_a_sequence_longer_than_the_largest_bucket_is_an_error(tokenizer) -> None:
    with pytest.raises(ValueError, match="longer than the largest of data.length_buckets"):
        collate(_items(tokenizer), tokenizer.pad_token_id, length_buckets=(8,))


def test_bucket_lists_are_checked() -> None:
    for bad in ([], [64, 32], [32, 32], [2, 8]):
        with pytest.raises(ConfigError, match="data.length_buckets"):
            DataConfig(length_buckets=bad)


def test_largest_bucket_beyond_the_generator_queries_is_a_config_error(tokenizer) -> None:
    cfg = load_config(overrides=["run.profile=smoke", "data.length_buckets=[32,64,128]",
                                 "model.max_length=64"])
    with pytest.raises(ConfigError, match=r"exceeds model.max_length=64, the v2t generator"):
        MNERDataModule.from_config(cfg, tokenizer)


def test_setup_refuses_tweets_longer_than_the_largest_bucket(tokenizer, tmp_path: Path) -> None:
    cfg = load_config(overrides=[
        "run.profile=smoke", f"data.root={FIXTURES / 'tweets'}", "data.use_images=false",
        f"paths.cache_dir={tmp_path}", "data.length_buckets=[8]"])
    dm = MNERDataModule.from_config(cfg, tokenizer)
    with pytest.raises(ConfigError, match=r"word pieces is longer than the largest of "
                                          r"data.length_buckets=\[8\]; the largest bucket must be "
                                          r">= data.max_length=128"):
        dm.setup("fit")


def test_loaders_pad_to_buckets(tokenizer, tmp_path: Path) -> None:
    cfg = load_config(overrides=[
        "run.profile=smoke", f"data.root={FIXTURES / 'tweets'}", "data.use_images=false",
        f"paths.cache_dir={tmp_path}", "data.length_buckets=[16,32,64,128]", "data.batch_size=2"])
    dm = MNERDataModule.from_config(cfg, tokenizer)
    dm.setup("fit")
    lengths = {batch["input_ids"].shape[1] for loader in (dm.train_dataloader(), dm.val_dataloader(),
                                                          dm.test_dataloader()) for batch in loader}
    assert lengths and lengths <= {16, 32, 64, 128}


@pytest.mark.parametrize("visual", [True, False], ids=["with-images", "image-free"])
def test_padding_to_a_bucket_leaves_outputs_and_losses_unchanged(tokenizer, one_thread, visual) -> None:
    """The network masks every padded token and word: emissions at the real words, the generation
    terms (Eqs. 5, 7), the CRF loss (Eq. 10) and the Viterbi paths are those of the unpadded batch."""
    torch.manual_seed(0)
    system = MNERSystem(tiny_cfg("model.dropout=0.0")).eval()  # evaluation: argmax masks, no noise
    items = _items(tokenizer)
    plain = collate(items, tokenizer.pad_token_id)
    padded = collate(items, tokenizer.pad_token_id, length_buckets=(32,))
    with torch.no_grad():
        outs = [system.model(b, visual=visual) for b in (plain, padded)]
        losses = [system.objective(b, o) for b, o in zip((plain, padded), outs)]
    w = plain["labels"].shape[1]
    mask = plain["word_mask"]
    torch.testing.assert_close(outs[1].emissions[:, :w][mask], outs[0].emissions[mask],
                               rtol=1e-5, atol=1e-5)
    assert len(outs[0].layer_losses) == (2 if visual else 0)
    for name in losses[0][1]:
        torch.testing.assert_close(losses[1][1][name], losses[0][1][name], rtol=1e-5, atol=1e-5,
                                   msg=name)
    assert system.decode_batch(padded, outs[1]) == system.decode_batch(plain, outs[0])
