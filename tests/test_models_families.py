"""Text-encoder families (BERT, RoBERTa, XLM-R) and ViTs (patch 32, patch 14) through the whole network.

The hybrid layers are checked against the wrapped library layer (no extra tokens: exactly) and
against a reference attention written out here from the layer's own weights (extra tokens).
"""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from models_batch import BPE_VOCAB_SIZE, NUM_LABELS, bpe_tokenizer_folder, make_batch, tiny_cfg
from timm.models.vision_transformer import ResPostBlock
from torch import nn
from transformers import (AlbertConfig, AutoTokenizer, DistilBertConfig, DistilBertModel, GPT2Config,
                          RobertaConfig)
from transformers.models.bert.modeling_bert import BertLayer
from transformers.models.roberta.modeling_roberta import RobertaLayer
from transformers.models.xlm_roberta.modeling_xlm_roberta import XLMRobertaLayer

from bga_mner.data.encode import encode_words
from bga_mner.models import build_model
from bga_mner.models.backbones import describe_visual_encoder, load_text_encoder, load_tokenizer, load_visual_encoder
from bga_mner.models.hybrid_layer import HybridTextLayer, HybridViTBlock, additive_mask
from bga_mner.models.visual_embedding import VisualEmbedding

TEXT = {"tiny-bert": BertLayer, "tiny-roberta": RobertaLayer, "tiny-xlm-roberta": XLMRobertaLayer}
VITS = {"bga_test_vit_d2": 128, "bga_test_vit_p14_d2": 126}  # timm name -> crop side it divides
SUPPORTED = "bert, roberta, xlm-roberta"


def _masked_softmax_ref(q: torch.Tensor, k: torch.Tensor, keep: torch.Tensor) -> torch.Tensor:
    """softmax(q k^T / sqrt(dh) + M), M = -inf on removed keys: (B, h, N, dh), (B, h, L, dh), (B, L)."""
    scores = q @ k.transpose(-2, -1) / math.sqrt(q.shape[-1])
    return scores.masked_fill(~keep[:, None, None, :], float("-inf")).softmax(-1)  # (B, h, N, L)


def _text_reference(layer: nn.Module, hidden: torch.Tensor, keep: torch.Tensor, extra: torch.Tensor,
                    extra_keep: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Eq. 8 on a post-norm BERT-family layer, written out from its weights (eval mode: no dropout)."""
    sa, so = layer.attention.self, layer.attention.output
    B, N, d = hidden.shape
    h = sa.num_attention_heads

    def heads(x: torch.Tensor) -> torch.Tensor:  # (B, L, d) -> (B, h, L, d/h)
        return x.view(B, x.shape[1], h, d // h).transpose(1, 2)

    kv = torch.cat([hidden, extra], dim=1)
    q = heads(F.linear(hidden, sa.query.weight, sa.query.bias))
    k, v = heads(F.linear(kv, sa.key.weight, sa.key.bias)), heads(F.linear(kv, sa.value.weight, sa.value.bias))
    weights = _masked_softmax_ref(q, k, torch.cat([keep, extra_keep], 1))
    context = (weights @ v).transpose(1, 2).reshape(B, N, d)
    ln1, ln2 = so.LayerNorm, layer.output.LayerNorm
    x = F.layer_norm(F.linear(context, so.dense.weight, so.dense.bias) + hidden, (d,), ln1.weight, ln1.bias, ln1.eps)
    inner = F.gelu(F.linear(x, layer.intermediate.dense.weight, layer.intermediate.dense.bias))
    out = F.layer_norm(F.linear(inner, layer.output.dense.weight, layer.output.dense.bias) + x, (d,),
                       ln2.weight, ln2.bias, ln2.eps)
    return out, weights


def _vit_reference(block: nn.Module, x: torch.Tensor, keep: torch.Tensor, extra: torch.Tensor,
                   extra_keep: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Eq. 8 on a pre-norm timm ViT block, written out from its weights (eval mode)."""
    attn, B, N, d = block.attn, *x.shape
    h = attn.num_heads
    n1, n2 = block.norm1, block.norm2
    tokens = F.layer_norm(torch.cat([x, extra], dim=1), (d,), n1.weight, n1.bias, n1.eps)  # (B, N + M, d)
    qkv = F.linear(tokens, attn.qkv.weight, attn.qkv.bias).view(B, tokens.shape[1], 3, h, d // h)
    q, k, v = qkv.permute(2, 0, 3, 1, 4)  # each (B, h, N + M, d/h)
    weights = _masked_softmax_ref(q[:, :, :N], k, torch.cat([keep, extra_keep], 1))
    context = (weights @ v).transpose(1, 2).reshape(B, N, d)
    x = x + F.linear(context, attn.proj.weight, attn.proj.bias)
    mlp = block.mlp
    hidden = F.gelu(F.linear(F.layer_norm(x, (d,), n2.weight, n2.bias, n2.eps), mlp.fc1.weight, mlp.fc1.bias))
    return x + F.linear(hidden, mlp.fc2.weight, mlp.fc2.bias), weights


def _masks(B: int, N: int, M: int) -> tuple[torch.Tensor, torch.Tensor]:
    keep = torch.ones(B, N, dtype=torch.bool)
    keep[1, N - 2:] = False  # padding / missing crops
    extra_keep = torch.ones(B, M, dtype=torch.bool)
    extra_keep[0, 1] = False
    return keep, extra_keep


@pytest.mark.parametrize("name", TEXT)
def test_hybrid_text_layer_of_each_family(name: str) -> None:
    torch.manual_seed(0)
    encoder = load_text_encoder(name).eval()
    assert encoder.config.hidden_act == "gelu"  # the reference's activation
    layer = encoder.encoder.layer[1]
    assert type(layer) is TEXT[name]
    hybrid = HybridTextLayer(layer).eval()
    assert all(p is q for p, q in zip(hybrid.parameters(), layer.parameters()))  # wrapped, not copied
    hidden, extra = torch.randn(2, 7, 48), torch.randn(2, 5, 48)
    keep, extra_keep = _masks(2, 7, 5)
    with torch.no_grad():
        plain = layer(hidden, attention_mask=additive_mask(keep, hidden.dtype))
        torch.testing.assert_close(hybrid(hidden, keep), plain, rtol=0, atol=0)  # no extra: the layer itself
        out, weights = hybrid(hidden, keep, extra, extra_keep, return_attention=True)
        ref_out, ref_weights = _text_reference(layer, hidden, keep, extra, extra_keep)
    torch.testing.assert_close(weights, ref_weights)
    torch.testing.assert_close(out, ref_out)
    assert (weights[1, :, :, 5:7] == 0).all() and (weights[0, :, :, 8] == 0).all()


@pytest.mark.parametrize("vit_name", VITS)
def test_hybrid_vit_block_on_the_visual_tokens(vit_name: str) -> None:
    torch.manual_seed(0)
    vit = load_visual_encoder(vit_name, pretrained=False).eval()
    crop, patch = VITS[vit_name], vit.patch_embed.patch_size[0]
    grid = 224 // patch
    embed = VisualEmbedding(vit, num_crops=3, crop_size=crop)
    assert embed.num_tokens == 1 + grid * grid + 3 * (crop // patch) ** 2  # 98 for patch 32, 500 for 14
    image, crops = torch.randn(2, 3, 224, 224), torch.randn(2, 3, 3, crop, crop)
    with torch.no_grad():
        x = embed(image, crops)  # (B, Nv, 64)
        torch.testing.assert_close(x[:, :1 + grid * grid], vit.norm_pre(vit._pos_embed(vit.patch_embed(image))),
                                   rtol=0, atol=0)  # the ViT's own embedding of the global image
    block = vit.blocks[1]
    for name in ("ls1", "ls2", "drop_path1", "drop_path2"):  # what the reference leaves out
        assert isinstance(getattr(block, name), nn.Identity)
    assert isinstance(block.attn.q_norm, nn.Identity) and isinstance(block.attn.norm, nn.Identity)
    assert isinstance(block.mlp.act, nn.GELU) and block.mlp.act.approximate == "none"
    hybrid = HybridViTBlock(block).eval()
    keep, extra_keep = _masks(2, x.shape[1], 6)
    extra = torch.randn(2, 6, 64)
    with torch.no_grad():
        torch.testing.assert_close(hybrid(x, keep), block(x, attn_mask=additive_mask(keep, x.dtype)), rtol=0, atol=0)
        out, weights = hybrid(x, keep, extra, extra_keep, return_attention=True)
        ref_out, ref_weights = _vit_reference(block, x, keep, extra, extra_keep)
    torch.testing.assert_close(weights, ref_weights)
    torch.testing.assert_close(out, ref_out)
    with pytest.raises(ValueError, match=f"multiple of the patch size {patch}"):
        VisualEmbedding(vit, num_crops=3, crop_size=crop + 1)


def _generation_loss(out) -> torch.Tensor:
    """Every generation term of the output, summed (``gen_loss`` or the per-layer ``layer_losses``)."""
    if hasattr(out, "gen_loss"):
        return out.gen_loss
    terms = [getattr(ll, f.name) for ll in out.layer_losses for f in dataclasses.fields(ll)]
    return sum(t for t in terms if t is not None)


@pytest.mark.parametrize("text", TEXT)
@pytest.mark.parametrize("vit_name", VITS)
def test_build_model_trains_every_parameter(text: str, vit_name: str) -> None:
    crop = VITS[vit_name]
    cfg = tiny_cfg(f"model.text_encoder={text}", f"model.visual_encoder={vit_name}", f"data.crop_size={crop}")
    torch.manual_seed(0)
    model = build_model(cfg.model, NUM_LABELS).train()
    assert all(type(h.layer) is TEXT[text] for h in model.text_layers)
    batch = make_batch()
    batch["crops"] = torch.randn(3, 3, 3, crop, crop) * batch["crop_mask"][:, :, None, None, None]
    out = model(batch)
    assert out.emissions.shape == (3, 6, NUM_LABELS)
    gen = _generation_loss(out)
    loss = model.crf_head.nll(out.emissions, batch["labels"], batch["word_mask"]) + gen
    assert torch.isfinite(loss) and gen > 0
    loss.backward()
    missing = [n for n, p in model.named_parameters()
               if p.requires_grad and (p.grad is None or not torch.isfinite(p.grad).all())]
    assert missing == []


def test_published_text_configs_offline() -> None:
    expected = {  # (vocab, hidden, layers, heads, ffn), parameters with the pooler (published counts)
        "roberta-base": ("RobertaModel", (50265, 768, 12, 12, 3072), 124_645_632),
        "xlm-roberta-base": ("XLMRobertaModel", (250002, 768, 12, 12, 3072), 278_043_648),
        "xlm-roberta-large": ("XLMRobertaModel", (250002, 1024, 24, 16, 4096), 559_890_432),
    }
    for name, (cls, shape, count) in expected.items():
        with torch.device("meta"):
            model = load_text_encoder(name, pretrained=False)
        c = model.config
        assert type(model).__name__ == cls
        assert (c.vocab_size, c.hidden_size, c.num_hidden_layers, c.num_attention_heads, c.intermediate_size) == shape
        assert (c.max_position_embeddings, c.type_vocab_size, c.pad_token_id, c.layer_norm_eps) == (514, 1, 1, 1e-5)
        assert sum(p.numel() for p in model.parameters()) == count
    large = describe_visual_encoder("vit_large_patch14_clip_224.openai")
    assert (large.dim, large.heads, large.depth, large.num_global_tokens, large.patch_size) == (1024, 16, 24, 257, 14)


@pytest.mark.parametrize("name", ["tiny-roberta", "tiny-xlm-roberta"])
def test_tiny_roberta_family_uses_the_minilm_vocabulary(name: str) -> None:
    model, tok, bert_tok = load_text_encoder(name), load_tokenizer(name), load_tokenizer("tiny-bert")
    assert model.config.pad_token_id == tok.pad_token_id == 0  # RoBERTa's position ids count from it
    assert model.config.max_position_embeddings >= 512 + 2
    assert encode_words(tok, ["Kevin", "Durant"]) == encode_words(bert_tok, ["Kevin", "Durant"])
    ids = torch.tensor([[101, 2000, 3000, 102, 0, 0]])
    positions = model.embeddings.create_position_ids_from_input_ids(ids, model.config.pad_token_id)
    assert positions.tolist() == [[1, 2, 3, 4, 0, 0]]
    with torch.no_grad():
        model.embeddings(input_ids=torch.randint(1000, 5000, (1, 512)))  # max_length 512 fits


def _bpe_folder(path: Path) -> Path:
    """The offline BPE tokenizer with a tiny RoBERTa config beside it."""
    return bpe_tokenizer_folder(path, RobertaConfig(vocab_size=BPE_VOCAB_SIZE, hidden_size=48, num_hidden_layers=2,
                                                    num_attention_heads=2, intermediate_size=96))


def test_roberta_bpe_tokenizer_gets_a_prefix_space_for_pre_split_words(tmp_path: Path) -> None:
    folder = _bpe_folder(tmp_path)
    plain = AutoTokenizer.from_pretrained(folder)
    # without a prefix space the first word is the sentence-initial form, unlike the same word later
    assert plain(["Hello", "Hello"], is_split_into_words=True, add_special_tokens=False).tokens() == ["Hello", "Hello"]
    tok = load_tokenizer(str(folder))
    assert tok.add_prefix_space
    enc = encode_words(tok, ["Hello", "Hello"], max_length=8)
    ghello = tok.convert_tokens_to_ids("ĠHello")
    assert enc.input_ids == [tok.cls_token_id, ghello, ghello, tok.sep_token_id] and enc.word_starts == [1, 2]


@pytest.mark.parametrize("config", [DistilBertConfig(n_layers=1, dim=32, hidden_dim=64, n_heads=2),
                                    AlbertConfig(num_hidden_layers=1, hidden_size=32, num_attention_heads=2),
                                    GPT2Config(n_layer=1, n_embd=32, n_head=2)], ids=lambda c: c.model_type)
def test_unsupported_text_encoders_fail_early(config, tmp_path: Path) -> None:
    config.save_pretrained(tmp_path)  # a config only: the error comes before any weight is read
    for pretrained in (False, True):
        with pytest.raises(ValueError, match=f"{config.model_type}.*{SUPPORTED}") as err:
            load_text_encoder(str(tmp_path), pretrained=pretrained)
        assert "\n" not in str(err.value)
    with pytest.raises(ValueError, match=SUPPORTED):
        build_model(tiny_cfg(f"model.text_encoder={tmp_path}").model, NUM_LABELS)


def test_unsupported_layers_and_visual_encoders_fail_early() -> None:
    distil = DistilBertModel(DistilBertConfig(n_layers=1, dim=32, hidden_dim=64, n_heads=2))
    with pytest.raises(TypeError, match="BertLayer, RobertaLayer, XLMRobertaLayer.*bert, roberta, xlm-roberta"):
        HybridTextLayer(distil.transformer.layer[0])
    with pytest.raises(TypeError, match="ResPostBlock.*VisionTransformer with one class token"):
        HybridViTBlock(ResPostBlock(dim=32, num_heads=2))
    cases = {"resnet18": (TypeError, "is a ResNet"),  # not a ViT
             "vit_medium_patch16_gap_256": (ValueError, "no class token"),  # global average pooling
             "vit_small_patch14_reg4_dinov2": (ValueError, "4 register token")}  # cls + 4 registers
    for name, (error, what) in cases.items():
        with pytest.raises(error, match=f"{what}.*one class token.*absolute") as err:
            describe_visual_encoder(name)
        assert "\n" not in str(err.value)
    with pytest.raises(TypeError, match="is a ResNet"):
        load_visual_encoder("resnet18", pretrained=True)  # before any download is tried
    with pytest.raises(ValueError, match="no class token"):
        build_model(tiny_cfg("model.visual_encoder=vit_medium_patch16_gap_256").model, NUM_LABELS)
    p14 = describe_visual_encoder("bga_test_vit_p14_d2")
    assert (p14.dim, p14.heads, p14.depth, p14.num_global_tokens, p14.patch_size) == (64, 2, 2, 257, 14)
