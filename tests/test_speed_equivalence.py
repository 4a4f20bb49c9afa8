"""The speed changes of issue 11 compute what the plain form computes (dropout off, fixed batch).

Each optimised path is checked against the straightforward computation written out here, with
the modules' own weights: the generators' first block computed once per forward and their memory
projection composed into the key/value maps (``generator.py``), SDPA where the keep mask carries no
gradient (``attention.attend``), the hybrid layers' key/value-only projection of the generated
tokens and the composed ``visual_to_text`` (``hybrid_layer.py``), and fused AdamW (``system.adamw``).
The whole network is compared on losses, emissions and every parameter's gradient.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from bga_mner.models.attention import attend, masked_softmax, merge_heads, split_heads
from bga_mner.models.bga_mner import BGAMNER, LayerLosses
from bga_mner.models.generator import CrossModalGenerator, masked_token_loss
from bga_mner.models.hybrid_layer import HybridTextLayer, HybridViTBlock
from bga_mner.models.sampler import keep_ratio_loss
from bga_mner.system import adamw, parameter_groups
from models_batch import make_batch, tiny_cfg, tiny_model

pytestmark = pytest.mark.usefixtures("one_thread")
CLOSE = dict(rtol=1e-5, atol=1e-6)


def no_dropout(model: nn.Module) -> nn.Module:
    """Every dropout of the network set to 0 (the modules stay in their mode)."""
    for m in model.modules():
        if isinstance(m, nn.Dropout):
            m.p = 0.0
        if isinstance(m, nn.MultiheadAttention):
            m.dropout = 0.0
    return model


# ------------------------------------------------------------------------------------ plain forms
def plain_attention(q, k, v, keep, scale):
    """Eq. 3 written out: masked softmax of the scaled scores, times the values."""
    return masked_softmax(q @ k.transpose(-2, -1) * scale, keep) @ v


def plain_generator(g: CrossModalGenerator, memory, keep, n=None, pad=None):
    """Eqs. 2-4 as first written: project the memory, then every decoder layer whole per call."""
    n = g.queries.shape[0] if n is None else n
    memory = g.memory_proj(memory)  # (B, Nm, d)
    x = g.queries[:n].unsqueeze(0).expand(memory.shape[0], -1, -1)
    for layer in g.layers:
        L, h = layer.layer, layer.heads
        x = L.norm1(x + L.self_attn(x, x, x, key_padding_mask=pad, need_weights=False)[0])
        w = L.multihead_attn.in_proj_weight.chunk(3)
        b = L.multihead_attn.in_proj_bias.chunk(3)
        q, k, v = (split_heads(F.linear(t, wi, bi), h) for t, wi, bi in zip((x, memory, memory), w, b))
        ca = L.multihead_attn.out_proj(merge_heads(plain_attention(q, k, v, keep, q.shape[-1] ** -0.5)))
        x = L.norm2(x + ca)
        x = L.norm3(x + L.linear2(L.activation(L.linear1(x))))
    return x


def plain_text_layer(wrapper: HybridTextLayer, hidden, keep, extra=None, extra_keep=None):
    """Eq. 8 on a BERT layer as first written: keys/values of [T; V_hat] at the text width."""
    layer = wrapper.layer
    if extra is None:
        return layer(hidden, attention_mask=torch.zeros(keep.shape).masked_fill(~keep, float("-inf"))[:, None, None])
    extra_keep = torch.ones(extra.shape[:2], dtype=torch.bool) if extra_keep is None else extra_keep
    sa, kv = layer.attention.self, torch.cat([hidden, extra], 1)
    q, k, v = (split_heads(f(t), wrapper.heads) for f, t in ((sa.query, hidden), (sa.key, kv), (sa.value, kv)))
    context = plain_attention(q, k, v, torch.cat([keep, extra_keep], 1), sa.scaling)
    return layer.feed_forward_chunk(layer.attention.output(merge_heads(context), hidden))


def plain_vit_block(wrapper: HybridViTBlock, x, keep, extra=None, extra_keep=None):
    """Eq. 8 on a timm block as first written: qkv of norm1([V; T_hat]), the first N queries kept."""
    b = wrapper.block
    if extra is None:
        return b(x, attn_mask=torch.zeros(keep.shape).masked_fill(~keep, float("-inf"))[:, None, None])
    attn, n = b.attn, x.shape[1]
    q, k, v = (split_heads(t, wrapper.heads) for t in attn.qkv(b.norm1(torch.cat([x, extra], 1))).chunk(3, -1))
    context = plain_attention(attn.q_norm(q[:, :, :n]), attn.k_norm(k), v, torch.cat([keep, extra_keep], 1), attn.scale)
    x = x + b.ls1(attn.proj(attn.norm(merge_heads(context))))
    return x + b.ls2(b.mlp(b.norm2(x)))


def plain_forward(model: BGAMNER, batch: dict) -> tuple[torch.Tensor, list[LayerLosses]]:
    """``BGAMNER.forward`` in training, as written before issue 11 (emissions, per-layer terms)."""
    keep_t = batch["attention_mask"].bool()
    T = model.text_layers[0](model.text_embeddings(input_ids=batch["input_ids"]), keep_t)
    keep_v = model.visual_embed.token_mask(batch["crop_mask"])
    V = plain_vit_block(model.visual_layers[0], model.visual_embed(batch["image"], batch["crops"]), keep_v)
    has_image, m_t, m_v, Nt, losses = batch["has_image"], keep_t.float(), keep_v.float(), keep_t.shape[1], []
    for l in range(model.num_bga_layers):
        m_t = model.text_samplers[l](T, m_t, keep_t)
        V_hat = plain_generator(model.t2v, T, m_t)
        m_v = model.visual_samplers[l](V, m_v, keep_v)
        T_hat = plain_generator(model.v2t, V, m_v, Nt, ~keep_t)
        V_bar = plain_generator(model.t2v, T_hat, keep_t)
        T_bar = plain_generator(model.v2t, V_hat, torch.ones_like(keep_v), Nt, ~keep_t)
        Vt, Tt = V.detach(), T.detach()
        losses.append(LayerLosses(
            masked_token_loss(V_hat, Vt, m_v, has_image), masked_token_loss(T_hat, Tt, m_t, has_image),
            masked_token_loss(V_bar, Vt, m_v, has_image), masked_token_loss(T_bar, Tt, m_t, has_image),
            keep_ratio_loss(m_t, keep_t, model.keep_ratio, has_image),
            keep_ratio_loss(m_v, keep_v, model.keep_ratio, has_image)))
        T_next = plain_text_layer(model.text_layers[l + 1], T, keep_t, model.visual_to_text(V_hat))
        if l < model.num_bga_layers - 1:
            V = plain_vit_block(model.visual_layers[l + 1], V, keep_v, model.text_to_visual(T_hat), keep_t)
        T = T_next
    idx = batch["word_starts"].unsqueeze(-1).expand(-1, -1, T.shape[-1])
    return model.crf_head(T.gather(1, idx)), losses


def total(emissions: torch.Tensor, losses: list[LayerLosses]) -> torch.Tensor:
    """A scalar that reads every output: emissions and each raw term of each layer."""
    terms = [t for layer in losses for t in vars(layer).values()]
    return emissions.square().sum() + sum(terms)


# ------------------------------------------------------------------------------------ the network
def test_training_forward_and_gradients_equal_the_plain_form():
    model = no_dropout(tiny_model()).train()
    batch = make_batch()
    tokens = batch["image"].shape[0] * model.num_visual_tokens
    # the tiny pair takes every optimised path: both generators and the text layers compose projections
    assert model.t2v.folds_memory_projection() and model.v2t.folds_memory_projection()
    assert model.text_layers[1].folds_extra_projection(model.visual_to_text, tokens)
    params = dict(model.named_parameters())
    torch.manual_seed(3)  # the Gumbel draws of the samplers
    out = model(batch)
    fast_grads = torch.autograd.grad(total(out.emissions, out.layer_losses), list(params.values()), allow_unused=True)
    torch.manual_seed(3)
    emissions, losses = plain_forward(model, batch)
    plain_grads = torch.autograd.grad(total(emissions, losses), list(params.values()), allow_unused=True)
    torch.testing.assert_close(out.emissions, emissions, **CLOSE)
    assert len(out.layer_losses) == len(losses) == model.num_bga_layers
    for fast, plain in zip(out.layer_losses, losses):
        for name, value in vars(plain).items():
            torch.testing.assert_close(getattr(fast, name), value, **CLOSE, msg=name)
    for name, f, p in zip(params, fast_grads, plain_grads):
        assert (f is None) == (p is None), name
        if p is not None:
            torch.testing.assert_close(f, p, rtol=1e-4, atol=1e-6, msg=name)


@pytest.mark.parametrize("inference_visual", ["generated", "real"])
def test_evaluation_emissions_equal_the_plain_form(inference_visual):
    model = tiny_model(f"model.inference_visual={inference_visual}").eval()
    batch = make_batch()
    with torch.no_grad():
        out = model(batch)
        keep_t = batch["attention_mask"].bool()
        T = model.text_layers[0](model.text_embeddings(input_ids=batch["input_ids"]), keep_t)
        if inference_visual == "real":
            keep_v = model.visual_embed.token_mask(batch["crop_mask"])
            V = plain_vit_block(model.visual_layers[0], model.visual_embed(batch["image"], batch["crops"]), keep_v)
        m_t, m_v = keep_t.float(), (keep_v.float() if inference_visual == "real" else None)
        for l in range(model.num_bga_layers):
            m_t = model.text_samplers[l](T, m_t, keep_t)
            V_hat = plain_generator(model.t2v, T, m_t)
            torch.testing.assert_close(out.generated_visual[l], V_hat, **CLOSE)
            if inference_visual == "real":
                m_v = model.visual_samplers[l](V, m_v, keep_v)
                T_hat = plain_generator(model.v2t, V, m_v, keep_t.shape[1], ~keep_t)
                T_next = plain_text_layer(model.text_layers[l + 1], T, keep_t, model.visual_to_text(V), keep_v)
                if l < model.num_bga_layers - 1:
                    V = plain_vit_block(model.visual_layers[l + 1], V, keep_v, model.text_to_visual(T_hat), keep_t)
                T = T_next
            else:
                T = plain_text_layer(model.text_layers[l + 1], T, keep_t, model.visual_to_text(V_hat))
        idx = batch["word_starts"].unsqueeze(-1).expand(-1, -1, T.shape[-1])
        torch.testing.assert_close(out.emissions, model.crf_head(T.gather(1, idx)), **CLOSE)


def test_each_generator_precomputes_once_per_forward(monkeypatch):
    """The first block (and its dropout masks) is drawn once per forward and shared by the 2N calls."""
    model = tiny_model().train()  # dropout on
    calls = {"t2v": 0, "v2t": 0, "precompute": 0}
    original = CrossModalGenerator.precompute

    def counting(self, *args, **kwargs):
        calls["precompute"] += 1
        return original(self, *args, **kwargs)

    monkeypatch.setattr(CrossModalGenerator, "precompute", counting)
    model.t2v.register_forward_hook(lambda *a: calls.__setitem__("t2v", calls["t2v"] + 1))
    model.v2t.register_forward_hook(lambda *a: calls.__setitem__("v2t", calls["v2t"] + 1))
    model(make_batch())
    assert calls == {"t2v": 2 * model.num_bga_layers, "v2t": 2 * model.num_bga_layers, "precompute": 2}


# ------------------------------------------------------------------------------------ the parts
@pytest.mark.parametrize("training", [True, False])
@pytest.mark.parametrize("widths", [(16, 24), (16, 16), (24, 8)])
def test_generator_with_its_cache_equals_the_plain_generator(training, widths):
    dim, memory_dim = widths
    torch.manual_seed(0)
    g = no_dropout(CrossModalGenerator(num_queries=7, dim=dim, memory_dim=memory_dim, heads=2, ffn_dim=32, layers=2))
    g.train(training)
    memory = torch.randn(3, 5, memory_dim)
    keep = torch.tensor([[1, 0, 1, 1, 0], [0, 0, 0, 1, 0], [1, 1, 1, 1, 1]], dtype=torch.float)
    keep.requires_grad_(training)  # a sampled mask carries a gradient in training only
    pad = torch.tensor([[False] * 6 + [True], [False] * 4 + [True] * 3, [False] * 7])
    cache = g.precompute(3, 7, pad)
    assert g.folds_memory_projection() == (memory_dim != dim and memory_dim < 2 * 2 * dim / 3)  # m < 2Ld/(2L-1)
    for args in ((memory, keep, 7, pad), (memory, keep)):
        fast = g(*args, cache=cache if len(args) == 4 else g.precompute(3))
        torch.testing.assert_close(fast, plain_generator(g, *args), **CLOSE)
    out, weights = g(memory, keep, return_attention=True)
    torch.testing.assert_close(out, g(memory, keep), **CLOSE)  # the weights path gives the same output
    assert weights.shape == (3, 2, 7, 5) and (weights[keep.detach()[:, None, None].expand_as(weights) == 0] == 0).all()


def test_hybrid_text_layer_with_its_projection_composed_equals_the_plain_layer():
    torch.manual_seed(0)
    model = tiny_model()  # tiny-bert-l3: width 48; generated visual tokens 64 wide
    layer, proj = model.text_layers[1].eval(), nn.Linear(64, 48)
    hidden, extra = torch.randn(2, 5, 48), torch.randn(2, 300, 64)
    keep = torch.tensor([[True] * 5, [True] * 3 + [False] * 2])
    extra_keep = torch.rand(2, 300) > 0.3
    assert layer.folds_extra_projection(proj, 600) and not layer.folds_extra_projection(proj, 1)
    plain = plain_text_layer(layer, hidden, keep, proj(extra), extra_keep)
    torch.testing.assert_close(layer(hidden, keep, extra, extra_keep, extra_proj=proj), plain, **CLOSE)
    torch.testing.assert_close(layer(hidden, keep, proj(extra), extra_keep), plain, **CLOSE)
    out, weights = layer(hidden, keep, extra, extra_keep, return_attention=True, extra_proj=proj)
    torch.testing.assert_close(out, plain, **CLOSE)
    assert weights.shape == (2, layer.heads, 5, 305) and (weights[..., 3:5][1] == 0).all()
    torch.testing.assert_close(weights.sum(-1), torch.ones(2, layer.heads, 5))


def test_hybrid_vit_block_projects_generated_tokens_to_keys_and_values_only():
    model = tiny_model()
    block = model.visual_layers[1].eval()
    x, extra = torch.randn(2, 6, 64), torch.randn(2, 4, 64)
    keep = torch.tensor([[True] * 6, [True] * 4 + [False] * 2])
    extra_keep = torch.tensor([[True, True, False, False], [True] * 4])
    plain = plain_vit_block(block, x, keep, extra, extra_keep)
    torch.testing.assert_close(block(x, keep, extra, extra_keep), plain, **CLOSE)
    out, weights = block(x, keep, extra, extra_keep, return_attention=True)
    torch.testing.assert_close(out, plain, **CLOSE)
    assert weights.shape == (2, block.heads, 6, 10) and (weights[0, ..., 8:] == 0).all()


@pytest.mark.parametrize("keep_dtype", [torch.bool, torch.float])
def test_attend_without_mask_gradient_equals_the_masked_softmax(keep_dtype):
    g = torch.Generator().manual_seed(0)
    q, k, v = (torch.randn(2, 3, n, 8, generator=g, requires_grad=True) for n in (4, 8, 8))
    keep = torch.tensor([[1, 1, 0, 1, 0, 0, 1, 1], [0, 0, 0, 0, 0, 0, 0, 0]]).to(keep_dtype)
    context, weights = attend(q, k, v, keep, 0.3, need_weights=False)  # SDPA
    assert weights is None
    plain = plain_attention(q, k, v, keep, 0.3)
    torch.testing.assert_close(context, plain, **CLOSE)
    assert (context[1] == 0).all()  # a row with no kept unit: context 0, as masked_softmax gives
    grads = torch.autograd.grad(context.square().sum(), (q, k, v))
    for got, want in zip(grads, torch.autograd.grad(plain.square().sum(), (q, k, v))):
        torch.testing.assert_close(got, want, **CLOSE)


def test_fused_adamw_takes_the_plain_adamw_step():
    model = tiny_model()
    cfg = tiny_cfg().optim
    for p in model.parameters():
        p.grad = torch.randn_like(p)
    fused = adamw(parameter_groups(model, cfg), float(cfg.lr))
    assert fused.defaults["fused"] and not adamw(parameter_groups(model, cfg), 1e-3, fused=False).defaults["fused"]
    plain_model = tiny_model()
    for p, q in zip(plain_model.parameters(), model.parameters()):
        p.grad = q.grad.clone()
    plain = torch.optim.AdamW(parameter_groups(plain_model, cfg), lr=float(cfg.lr), foreach=False)
    for _ in range(2):
        fused.step()
        plain.step()
    for (name, p), q in zip(model.named_parameters(), plain_model.parameters()):
        torch.testing.assert_close(p, q, rtol=1e-5, atol=1e-7, msg=name)
