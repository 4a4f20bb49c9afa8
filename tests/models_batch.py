"""Batches and tiny models for the network tests (no data module: random ids, random images)."""

from __future__ import annotations

from pathlib import Path

import torch

from bga_mner.config import load_config
from bga_mner.models import build_model

NUM_LABELS = 9


# the registered 3-layer pair (N = 2 BGA layers): every network test exercises the recursion
# layer l -> layer l + 1 (sampler refinement, generated text into the next visual block)
TEXT_L3, VIT_D3 = "tiny-bert-l3", "bga_test_vit_d3"


def tiny_cfg(*overrides: str):
    """The smoke profile's config with tiny-bert-l3 (3 layers) + bga_test_vit_d3: N = 2 BGA layers.

    Overrides come last (e.g. another text/visual pair; their depths must match)."""
    return load_config(overrides=["run.profile=smoke", f"model.text_encoder={TEXT_L3}",
                                  f"model.visual_encoder={VIT_D3}", *overrides])


def deep_cfg(*overrides: str):
    """Random-init MiniLM (6 layers, width 384) + bga_test_vit_d6 (width 128): N = 5, projections."""
    return tiny_cfg("model.text_encoder=all-MiniLM-L6-v2", "model.visual_encoder=bga_test_vit_d6",
                    "model.text_pretrained=false", *overrides)


def raw_generation_total(out) -> torch.Tensor:
    """The unweighted sum of every raw generation term of a ``BGAOutput`` (0 when there is none):
    a scalar that depends on each of them, for gradient and zero checks. The weighted objective of
    Eq. 11 is ``MNERSystem.objective`` (tests/test_system.py)."""
    total = out.emissions.new_zeros(())
    for t in out.layer_losses:
        for term in (t.recon_visual, t.recon_text, t.cycle_visual, t.cycle_text, t.keep_ratio_text,
                     t.keep_ratio_visual):
            total = total + (term if term is not None else 0.0)
    return total


def tiny_model(*overrides: str, seed: int = 0, **kwargs):
    torch.manual_seed(seed)
    return build_model(tiny_cfg(*overrides).model, NUM_LABELS, **kwargs)


def make_batch(lengths=(12, 8, 10), words=(6, 4, 5), crops=((1, 1, 1), (1, 0, 0), (0, 0, 0)),
               has_image=(True, True, False), num_objects: int = 3, seed: int = 0) -> dict:
    """A batch dict per docs/ARCHITECTURE.md.

    Args:
        lengths: WordPiece length of each tweet incl. [CLS]/[SEP] (padded to the longest).
        words: number of words of each tweet (word i starts at sub-token i + 1).
        crops: crop_mask rows; has_image: per tweet.
    """
    g = torch.Generator().manual_seed(seed)
    B, Nt, W = len(lengths), max(lengths), max(words)
    attention_mask = torch.zeros(B, Nt, dtype=torch.long)
    input_ids = torch.zeros(B, Nt, dtype=torch.long)
    word_starts = torch.zeros(B, W, dtype=torch.long)
    word_mask = torch.zeros(B, W, dtype=torch.bool)
    for i, (n, w) in enumerate(zip(lengths, words)):
        attention_mask[i, :n] = 1
        input_ids[i, :n] = torch.randint(1000, 5000, (n,), generator=g)
        input_ids[i, 0], input_ids[i, n - 1] = 101, 102  # [CLS] ... [SEP]
        word_starts[i, :w] = torch.arange(1, w + 1)
        word_mask[i, :w] = True
    has = torch.tensor(has_image)
    image = torch.randn(B, 3, 224, 224, generator=g) * has[:, None, None, None]
    crop_mask = torch.tensor(crops, dtype=torch.bool)[:, :num_objects]
    crop = torch.randn(B, num_objects, 3, 128, 128, generator=g) * crop_mask[:, :, None, None, None]
    return dict(input_ids=input_ids, attention_mask=attention_mask, word_starts=word_starts,
                word_mask=word_mask, labels=torch.randint(0, NUM_LABELS, (B, W), generator=g) * word_mask,
                image=image, crops=crop, crop_mask=crop_mask, has_image=has,
                ids=[f"t{i}" for i in range(B)], words=[["w"] * w for w in words],
                tags=[["O"] * w for w in words])


def image_free(batch: dict) -> dict:
    """The batch without its image keys (data.use_images=false)."""
    return {k: v for k, v in batch.items() if k not in ("image", "crops", "crop_mask", "has_image")}


def select(batch: dict, rows: list[int]) -> dict:
    """A sub-batch of the given rows (tensors and lists)."""
    return {k: (v[rows] if torch.is_tensor(v) else [v[i] for i in rows]) for k, v in batch.items()}


def _bpe_vocab() -> tuple[dict[str, int], list[tuple[str, str]]]:
    vocab = {"<s>": 0, "<pad>": 1, "</s>": 2, "<unk>": 3, "<mask>": 4}
    for ch in "ĠHelowrd":
        vocab.setdefault(ch, len(vocab))
    merges = [("H", "e"), ("He", "l"), ("Hel", "l"), ("Hell", "o"), ("Ġ", "Hello")]
    for merge in merges:
        vocab["".join(merge)] = len(vocab)
    return vocab, merges


BPE_VOCAB_SIZE = len(_bpe_vocab()[0])


def bpe_tokenizer_folder(path: Path, config=None, add_prefix_space: bool = False) -> Path:
    """A RoBERTa-style byte-level BPE tokenizer built offline (no hub), with ``config`` (a
    transformers config, or none) saved beside it.

    Args:
        path: the folder to write; config: saved with ``save_pretrained`` when given;
        add_prefix_space: the tokenizer's own setting.
    """
    from transformers import RobertaTokenizer

    vocab, merges = _bpe_vocab()
    RobertaTokenizer(vocab=vocab, merges=merges, add_prefix_space=add_prefix_space).save_pretrained(path)
    if config is not None:
        config.save_pretrained(path)
    return Path(path)
