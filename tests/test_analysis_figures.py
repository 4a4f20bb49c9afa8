"""Figs. 3 and 4 of bga_mner.analysis: the sampled masks behind Fig. 4, keep rates, recall@k per
layer, and the figures drawn from them (without pyplot: the backend is left alone)."""

from __future__ import annotations

import io

import matplotlib
import pytest
import torch
from PIL import Image

from bga_mner.analysis import (KeepRates, TweetMasks, draw_keep_rates, draw_masks, draw_retrieval,
                               draw_similarity, greyed, keep_rates, retrieval_from_features, sampled_masks,
                               collect_masks)
from models_batch import make_batch, tiny_model


def _png(fig) -> Image.Image:
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    return Image.open(io.BytesIO(buf.getvalue()))


def _masks(seed: int = 0) -> TweetMasks:
    """One tweet by hand: 2 layers, [CLS] Kawhi ##s in Toronto [SEP], 2x2 global patches, 2 crops."""
    return TweetMasks(
        image_id="t0", pieces=["[CLS]", "kawhi", "##s", "in", "toronto", "[SEP]"],
        entity=[None, "PER", "PER", None, "LOC", None], special=[True, False, False, False, False, True],
        text_keep=torch.tensor([[1, 1, 1, 1, 1, 1], [1, 1, 0, 0, 1, 0]], dtype=torch.bool),
        cls_keep=torch.tensor([True, False]),
        global_keep=torch.tensor([[[1, 1], [1, 1]], [[1, 0], [0, 0]]], dtype=torch.bool),
        crop_keep=torch.tensor([[[[1, 1], [1, 0]], [[0, 0], [0, 0]]],
                                [[[1, 0], [0, 0]], [[0, 0], [0, 0]]]], dtype=torch.bool),
        crop_present=torch.tensor([True, False]),
        image=torch.rand(3, 8, 8, generator=torch.Generator().manual_seed(seed)),
        crops=torch.rand(2, 3, 4, 4, generator=torch.Generator().manual_seed(seed + 1)))


def test_keep_rates_per_layer_split_entities_from_filler():
    m = _masks()
    assert m.text_keep_rate() == pytest.approx([1.0, 3 / 6])
    assert m.text_keep_rate("entity") == pytest.approx([1.0, 2 / 3])  # kawhi, ##s, toronto
    assert m.text_keep_rate("filler") == pytest.approx([1.0, 0.0])    # "in" (not [CLS]/[SEP])
    assert m.visual_keep_rate("global") == pytest.approx([1.0, 0.25])
    assert m.visual_keep_rate("crops") == pytest.approx([0.75, 0.25])  # the missing crop is no unit
    assert m.visual_keep_rate() == pytest.approx([8 / 9, 2 / 9])       # cls + 4 global + 4 crop patches
    pooled = keep_rates([m, m])
    assert pooled.tweets == 2 and pooled.entity == pytest.approx([1.0, 2 / 3])
    assert "| 2 | 50.0% | 66.7% | 0.0% | 22.2% | 25.0% | 25.0% |" in pooled.table()


def test_greyed_leaves_kept_patches_alone_and_fades_dropped_ones():
    image = torch.rand(3, 8, 8, generator=torch.Generator().manual_seed(0))
    out = torch.from_numpy(greyed(image, torch.tensor([[True, False], [False, False]])))
    assert out.shape == (8, 8, 3)
    assert torch.equal(out[:4, :4], image.permute(1, 2, 0)[:4, :4])        # kept: unchanged
    dropped = out[4:, 4:]
    assert torch.allclose(dropped[..., 0], dropped[..., 1]) and torch.allclose(dropped[..., 1], dropped[..., 2])
    assert not torch.allclose(dropped, image.permute(1, 2, 0)[4:, 4:])     # dropped: grey


def test_sampled_masks_follow_the_model_and_mark_gold_entities():
    model = tiny_model()
    batch = make_batch(has_image=(True, False, True), crops=((1, 1, 1), (0, 0, 0), (1, 0, 0)))
    batch["tags"][0] = ["B-PER", "I-PER", "O", "O", "O", "B-LOC"]
    masks = sampled_masks(model, batch)
    assert [m.image_id for m in masks] == ["t0", "t2"]  # tweets with an image
    m = masks[0]
    n = model.num_bga_layers
    assert m.text_keep.shape == (n, 12) and len(m.pieces) == len(m.entity) == 12
    assert m.special == [True] + [False] * 10 + [True]
    # word w starts at piece w + 1; the last word runs up to [SEP]
    assert m.entity[1:7] == ["PER", "PER", None, None, None, "LOC"] and m.entity[7:11] == ["LOC"] * 4
    with torch.no_grad():
        out = model.eval()(batch, visual=True)
    assert torch.equal(m.text_keep, torch.stack(out.text_masks)[:, 0, :12])
    ve = model.visual_embed
    g = ve.image_size // ve.patch_embed.patch_size[0]
    assert m.global_keep.shape == (n, g, g) and m.crop_keep.shape[:2] == (n, ve.num_crops)
    assert torch.equal(m.global_keep.reshape(n, -1), torch.stack(out.visual_masks)[:, 0, 1:1 + g * g])
    assert masks[1].crop_present.tolist() == [True, False, False]
    assert not masks[1].crop_keep[:, 1:].any()  # a missing crop is never kept
    assert 0.0 <= m.image.min() and m.image.max() <= 1.0


def test_collect_masks_keeps_the_pixels_of_the_tweets_to_draw_only():
    model = tiny_model()
    batches = [make_batch(has_image=(True, False, True)), make_batch(has_image=(False, False, False)),
               make_batch(has_image=(True, True, True), seed=1)]
    masks = collect_masks(model, batches, pixels=2)
    assert len(masks) == 5 and [m.image.numel() > 0 for m in masks] == [True, True, False, False, False]
    assert keep_rates(masks).tweets == 5 and len(collect_masks(model, batches, limit=3)) == 3


def test_sampled_masks_need_the_visual_branch():
    with pytest.raises(ValueError, match="visual branch"):
        sampled_masks(tiny_model("model.use_mcg=false"), make_batch())


def test_recall_curve_per_layer_and_chance():
    g = torch.Generator().manual_seed(0)
    real = torch.randn(12, 2, 8, generator=g)
    generated = torch.stack([real[:, 0], torch.randn(12, 8, generator=g)], 1)  # layer 1 aligned, 2 not
    res = retrieval_from_features(generated, real, [f"i{k}" for k in range(12)])
    assert res.layer_similarity.shape == (2, 12, 12)
    assert res.recall_curve([1, 12], layer=0) == [1.0, 1.0]
    assert res.recall_curve([1], layer=1)[0] == pytest.approx(res.per_layer[1])
    assert res.recall_curve([12], layer=1) == [1.0]
    assert res.chance_curve([1, 6, 20]) == pytest.approx([1 / 12, 0.5, 1.0])


def test_figures_draw_without_touching_the_backend():
    backend = matplotlib.get_backend()
    m = _masks()
    g = torch.Generator().manual_seed(0)
    real = torch.randn(10, 2, 8, generator=g)
    res = retrieval_from_features(real + 0.1 * torch.randn(10, 2, 8, generator=g), real,
                                  [f"i{k}" for k in range(10)])
    figures = [draw_masks(m, layer=1, text="Kawhi in Toronto"),
               draw_keep_rates(keep_rates([m])),
               draw_retrieval(res, max_k=5),
               draw_similarity(res, rows=4, texts={"i0": "a tweet"})]
    for fig in figures:
        png = _png(fig)
        assert png.width > 300 and png.height > 150
    assert matplotlib.get_backend() == backend
    texts = [t.get_text() for t in figures[0].findobj(matplotlib.text.Text)]
    assert "layer 2\nkeeps 50%" in texts and "kawhi" in texts
    assert any("1/4 patches kept" in t for t in texts) and "crop 2: no object" in texts
    assert isinstance(keep_rates([m]), KeepRates)
