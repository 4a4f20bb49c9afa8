"""Backbones: registered text/visual encoders offline, and the visual tokens (global image + K crops)."""

from __future__ import annotations

import pytest
import torch

from bga_mner.models.backbones import describe_visual_encoder, load_text_encoder, load_tokenizer, load_visual_encoder
from bga_mner.models.visual_embedding import VisualEmbedding


def test_bert_base_config_offline_is_exact():
    with torch.device("meta"):  # shapes only: no memory, no init time
        model = load_text_encoder("bert-base-uncased", pretrained=False)
    c = model.config
    assert (c.vocab_size, c.hidden_size, c.num_hidden_layers, c.num_attention_heads, c.intermediate_size,
            c.max_position_embeddings) == (30522, 768, 12, 12, 3072, 512)
    # BERT-base: 109,482,240 parameters with the pooler (the published count)
    assert sum(p.numel() for p in model.parameters()) == 109_482_240


def test_tiny_bert_and_bundled_minilm():
    tiny = load_text_encoder("tiny-bert", pretrained=True)  # always random: registered test model
    assert (tiny.config.hidden_size, tiny.config.num_hidden_layers, tiny.config.num_attention_heads,
            tiny.config.intermediate_size) == (48, 2, 2, 96)
    tok = load_tokenizer("tiny-bert")
    assert tok.convert_tokens_to_ids("[CLS]") == 101 and len(tok) == 30522
    assert tok.tokenize("Kevin Durant") == ["kevin", "duran", "##t"]  # uncased WordPiece


def test_visual_specs_and_tiny_vits():
    paper = describe_visual_encoder("vit_base_patch32_clip_224.openai")
    assert (paper.dim, paper.heads, paper.depth, paper.num_global_tokens, paper.patch_size) == (768, 12, 12, 50, 32)
    d2, d6 = load_visual_encoder("bga_test_vit_d2", pretrained=False), describe_visual_encoder("bga_test_vit_d6")
    assert (d2.embed_dim, len(d2.blocks), d2.blocks[0].attn.num_heads) == (64, 2, 2)
    assert d2.norm_pre.__class__.__name__ == "LayerNorm"  # pre_norm=True like CLIP
    assert (d6.dim, d6.depth, d6.heads) == (128, 6, 2)
    with pytest.raises(ValueError, match="no pretrained weights"):
        load_visual_encoder("bga_test_vit_d2", pretrained=True)
    with pytest.raises(FileNotFoundError, match="nope.safetensors"):
        load_visual_encoder("bga_test_vit_d2", checkpoint="nope.safetensors")


def test_visual_tokens_global_then_crops():
    vit = load_visual_encoder("bga_test_vit_d2", pretrained=False)
    embed = VisualEmbedding(vit, num_crops=3, crop_size=128)
    assert embed.num_tokens == 50 + 3 * 16
    image, crops = torch.randn(2, 3, 224, 224), torch.randn(2, 3, 3, 128, 128)
    tokens = embed(image, crops)
    assert tokens.shape == (2, 98, 64)
    # the global part is exactly the ViT's own embedding of the image
    expected = vit.norm_pre(vit._pos_embed(vit.patch_embed(image)))
    torch.testing.assert_close(tokens[:, :50], expected)
    # each crop has its own learned position embedding (same initial value, separate parameters)
    assert embed.crop_pos_embed.shape == (3, 16, 64)
    with torch.no_grad():
        embed.crop_pos_embed[1] += 1.0
    moved = embed(image, crops)
    torch.testing.assert_close(moved[:, :66], tokens[:, :66])
    torch.testing.assert_close(moved[:, 82:], tokens[:, 82:])
    assert not torch.allclose(moved[:, 66:82], tokens[:, 66:82])
    keep = embed.token_mask(torch.tensor([[True, False, True], [False, False, False]]))
    assert keep.shape == (2, 98) and keep[:, :50].all()
    assert keep[0, 50:66].all() and not keep[0, 66:82].any() and keep[0, 82:].all() and not keep[1, 50:].any()
    with pytest.raises(ValueError, match="224"):
        embed(torch.randn(1, 3, 256, 256), crops[:1])
