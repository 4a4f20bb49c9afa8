"""Hybrid-attention feature extractors (Eq. 8) on the pretrained layers' own weights."""

from __future__ import annotations

import torch

from bga_mner.models.backbones import load_text_encoder, load_visual_encoder
from bga_mner.models.hybrid_layer import HybridTextLayer, HybridViTBlock, additive_mask


def _bert_layer():
    torch.manual_seed(0)
    return load_text_encoder("tiny-bert").eval().encoder.layer[1]


def test_bert_hybrid_reuses_the_layer_and_masks_exactly():
    layer = _bert_layer()
    hybrid = HybridTextLayer(layer).eval()
    assert all(p is q for p, q in zip(hybrid.parameters(), layer.parameters()))  # wrapped, not copied
    hidden, extra = torch.randn(2, 5, 48), torch.randn(2, 7, 48)
    keep = torch.tensor([[1, 1, 1, 1, 1], [1, 1, 1, 0, 0]], dtype=torch.bool)
    plain = layer(hidden, attention_mask=additive_mask(keep, hidden.dtype))
    # with every generated token masked out, the hybrid layer is the plain BERT layer
    none = torch.zeros(2, 7, dtype=torch.bool)
    torch.testing.assert_close(hybrid(hidden, keep, extra, none), plain)
    torch.testing.assert_close(hybrid(hidden, keep), plain)
    out, weights = hybrid(hidden, keep, extra, return_attention=True)
    assert out.shape == (2, 5, 48) and weights.shape == (2, 2, 5, 12)
    assert (weights[1, :, :, 3:5] == 0).all() and (weights[:, :, :, 5:] > 0).all()
    assert not torch.allclose(out, plain)  # the generated tokens are attended


def test_vit_hybrid_reuses_the_block_and_masks_exactly():
    torch.manual_seed(0)
    block = load_visual_encoder("bga_test_vit_d2", pretrained=False).eval().blocks[1]
    hybrid = HybridViTBlock(block).eval()
    assert all(p is q for p, q in zip(hybrid.parameters(), block.parameters()))
    x, extra = torch.randn(2, 6, 64), torch.randn(2, 4, 64)
    keep = torch.tensor([[1, 1, 1, 1, 0, 0], [1, 1, 1, 1, 1, 1]], dtype=torch.bool)
    plain = block(x, attn_mask=additive_mask(keep, x.dtype))
    torch.testing.assert_close(hybrid(x, keep, extra, torch.zeros(2, 4, dtype=torch.bool)), plain)
    extra_keep = torch.tensor([[1, 1, 0, 1], [1, 1, 1, 1]], dtype=torch.bool)
    out, weights = hybrid(x, keep, extra, extra_keep, return_attention=True)
    assert weights.shape == (2, 2, 6, 10)
    assert (weights[0, :, :, 4:6] == 0).all() and (weights[0, :, :, 8] == 0).all()
    changed = extra.clone()
    changed[0, 2] = 1e3
    torch.testing.assert_close(hybrid(x, keep, changed, extra_keep)[0], out[0], rtol=0, atol=0)


def test_vit_hybrid_attends_every_extra_token_by_default():
    torch.manual_seed(0)
    block = load_visual_encoder("bga_test_vit_d2", pretrained=False).eval().blocks[1]
    hybrid = HybridViTBlock(block).eval()
    x, extra = torch.randn(2, 6, 64), torch.randn(2, 4, 64)
    keep = torch.tensor([[1, 1, 1, 1, 0, 0], [1, 1, 1, 1, 1, 1]], dtype=torch.bool)
    everything = torch.ones(2, 4, dtype=torch.bool)
    torch.testing.assert_close(hybrid(x, keep, extra), hybrid(x, keep, extra, everything), rtol=0, atol=0)


def _differs_per_training_pass(layer, *args) -> bool:
    layer.train()
    return not torch.allclose(layer(*args), layer(*args))


def test_attention_dropout_acts_in_training_only():
    """The hybrid attention keeps the wrapped layer's attention-probability dropout: a new mask per
    training pass (here the only dropout left on), none at evaluation or at rate 0."""
    torch.manual_seed(0)
    text = HybridTextLayer(_bert_layer())
    text.layer.attention.output.dropout.p = text.layer.output.dropout.p = 0.0  # hidden dropout off
    block = load_visual_encoder("bga_test_vit_d2", pretrained=False).blocks[1]
    vit = HybridViTBlock(block)  # the tiny ViT has no other dropout
    cases = [(text, text.layer.attention.self.dropout, 48), (vit, block.attn.attn_drop, 64)]
    for hybrid, attn_dropout, d in cases:
        hidden, extra = torch.randn(2, 5, d), torch.randn(2, 3, d)
        keep = torch.tensor([[1, 1, 1, 1, 1], [1, 1, 1, 0, 0]], dtype=torch.bool)
        attn_dropout.p = 0.5
        assert _differs_per_training_pass(hybrid, hidden, keep, extra)
        hybrid.eval()
        assert torch.equal(hybrid(hidden, keep, extra), hybrid(hidden, keep, extra))
        attn_dropout.p = 0.0
        assert not _differs_per_training_pass(hybrid, hidden, keep, extra)
        torch.testing.assert_close(hybrid(hidden, keep, extra), hybrid.eval()(hidden, keep, extra))
