"""Cross-modal generator (Eqs. 2-4): masked cross-attention, parameter count; losses (Eqs. 5, 7)."""

from __future__ import annotations

import pytest
import torch

from bga_mner.models.generator import CrossModalGenerator, GeneratorLayer, masked_token_loss, token_kl


def test_paper_sized_generator_parameter_count():
    with torch.device("meta"):
        g = CrossModalGenerator(num_queries=98, dim=768, memory_dim=768, heads=12)
    layer = sum(p.numel() for p in g.layers.parameters())
    assert layer == 7_877_888  # nn.TransformerDecoderLayer(768, ffn 2048): self + cross attention + FFN
    assert sum(p.numel() for p in g.parameters()) == layer + 98 * 768  # + queries: 7.95M (paper: 7.9M)


def test_removed_units_get_exactly_zero_weight_and_change_nothing():
    torch.manual_seed(0)
    g = CrossModalGenerator(num_queries=5, dim=16, memory_dim=24, heads=2, ffn_dim=32).eval()
    memory = torch.randn(2, 6, 24)
    keep = torch.tensor([[1, 0, 1, 0, 0, 1], [0, 0, 0, 1, 0, 0]], dtype=torch.float)
    out, weights = g(memory, keep, return_attention=True)
    assert out.shape == (2, 5, 16) and weights.shape == (2, 2, 5, 6)
    assert (weights[keep[:, None, None, :].expand_as(weights) == 0] == 0).all()
    torch.testing.assert_close(weights.sum(-1), torch.ones(2, 2, 5))
    changed = memory.clone()
    changed[keep == 0] = 1e4 * torch.randn(int((keep == 0).sum()), 24)
    assert torch.equal(g(changed, keep), out)  # removed units cannot influence the output


def test_mask_gradient_flows_through_attention():
    torch.manual_seed(0)
    g = CrossModalGenerator(num_queries=4, dim=8, memory_dim=8, heads=2, ffn_dim=16).eval()
    keep = torch.tensor([[1.0, 1.0, 0.0, 1.0]], requires_grad=True)
    g(torch.randn(1, 4, 8), keep).square().sum().backward()
    assert keep.grad is not None and (keep.grad != 0).all()  # also the removed unit: "would it help?"


def test_textual_queries_are_position_aligned_and_padding_free():
    torch.manual_seed(0)
    g = CrossModalGenerator(num_queries=10, dim=8, memory_dim=8, heads=2, ffn_dim=16).eval()
    memory, keep = torch.randn(1, 3, 8), torch.ones(1, 3)
    short = g(memory, keep, num_queries=4)
    pad = torch.tensor([[False] * 4 + [True] * 3])
    longer = g(memory, keep, num_queries=7, query_padding=pad)
    torch.testing.assert_close(longer[:, :4], short)  # padding queries do not disturb real ones


def test_kl_direction_generated_to_real():
    gen, real = torch.randn(2, 3, 5), torch.randn(2, 3, 5)
    p, q = gen.softmax(-1), real.softmax(-1)
    torch.testing.assert_close(token_kl(gen, real), (p * (p.log() - q.log())).sum(-1))
    assert (token_kl(real, real).abs() < 1e-6).all()


def test_masked_loss_weights_units_and_excludes_imageless_samples():
    gen = torch.randn(3, 4, 5, requires_grad=True)
    real = torch.randn(3, 4, 5)
    mask = torch.tensor([[1, 0, 1, 1], [1, 1, 0, 0], [1, 1, 1, 1]], dtype=torch.float)
    has_image = torch.tensor([True, True, False])
    loss = masked_token_loss(gen, real, mask, has_image)
    kl = token_kl(gen, real)
    torch.testing.assert_close(loss, ((kl[0] * mask[0]).sum() + (kl[1] * mask[1]).sum()) / 2)
    loss.backward()
    assert (gen.grad[2] == 0).all() and (gen.grad[0, 1] == 0).all() and gen.grad[0, 0].abs().sum() > 0
    # no sample with an image: exactly zero, and a zero gradient (no NaN from an empty mean)
    gen.grad = None
    none = masked_token_loss(gen, real, mask, torch.zeros(3, dtype=torch.bool))
    none.backward()
    assert none.item() == 0.0 and torch.equal(gen.grad, torch.zeros_like(gen))


# ------------------------------------------------------- against the library's own decoder layer
def _randomise_biases(module: torch.nn.Module, seed: int = 1) -> None:
    """nn.MultiheadAttention starts its projection biases at 0 (and LayerNorm at 1/0): give every bias
    and norm weight a random value, so that a dropped bias or a swapped norm shows in the output."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in module.named_parameters():
            if name.endswith("bias") or "norm" in name:
                centre = 1.0 if "norm" in name and name.endswith("weight") else 0.0
                p.copy_(centre + 0.5 * torch.randn(p.shape, generator=g))


@pytest.mark.parametrize("padded", [False, True])
def test_generator_equals_the_library_decoder_layers_on_kept_memory(padded):
    """Eqs. 2-4: with hard 0/1 keep masks the generator is exactly a stack of the wrapped
    nn.TransformerDecoderLayer's own forward, the removed units as memory_key_padding_mask (Eq. 3's
    -inf) and the padded queries as tgt_key_padding_mask."""
    torch.manual_seed(0)
    # 2 heads of width 8 (a scale of heads ** -0.5 or any other exponent would differ), 2 layers
    g = CrossModalGenerator(num_queries=7, dim=16, memory_dim=12, heads=2, ffn_dim=24, layers=2,
                            dropout=0.1).eval()
    _randomise_biases(g)
    memory = torch.randn(2, 6, 12)
    keep = torch.tensor([[1, 1, 0, 1, 1, 0], [1, 1, 1, 1, 1, 1]], dtype=torch.float)
    pad = torch.tensor([[False] * 5, [False] * 3 + [True] * 2]) if padded else None
    out, weights = g(memory, keep, num_queries=5, query_padding=pad, return_attention=True)

    x = g.queries[:5].unsqueeze(0).expand(2, -1, -1)  # (B, Nq, d)
    mem = g.memory_proj(memory)  # (B, Nm, d)
    for layer in g.layers:
        x = layer.layer(x, mem, tgt_key_padding_mask=pad, memory_key_padding_mask=keep == 0)
    torch.testing.assert_close(out, x, rtol=1e-5, atol=1e-5)
    assert weights.shape == (2, 2, 5, 6) and (weights[0, :, :, [2, 5]] == 0).all()


def test_generator_layer_sizes_follow_its_arguments():
    d, f, layers = 16, 24, 3
    g = CrossModalGenerator(num_queries=4, dim=d, memory_dim=d, heads=2, ffn_dim=f, layers=layers, dropout=0.0)
    assert len(g.layers) == layers
    # per layer: self- and cross-attention (4 d x d + 4 d each), FFN d -> f -> d, three LayerNorms
    per_layer = 2 * (4 * d * d + 4 * d) + (d * f + f + f * d + d) + 3 * 2 * d
    assert sum(p.numel() for p in g.layers.parameters()) == layers * per_layer
    assert sum(p.numel() for p in g.parameters()) == layers * per_layer + 4 * d  # + queries, no projection


def _only_cross_attention_dropout(g: CrossModalGenerator, p: float) -> None:
    """Silence every dropout of the decoder layers but the cross-attention weights' (rate p)."""
    for layer in g.layers:
        L = layer.layer
        for m in (L.dropout1, L.dropout2, L.dropout3, L.dropout):
            m.p = 0.0
        L.self_attn.dropout = 0.0
        L.multihead_attn.dropout = p


def test_dropout_acts_in_training_only_and_in_the_cross_attention():
    torch.manual_seed(0)
    memory, keep = torch.randn(2, 6, 16), torch.ones(2, 6)
    # dropout=0 reaches the layers: training then gives the evaluation output (no other randomness)
    g = CrossModalGenerator(num_queries=5, dim=16, memory_dim=16, heads=2, ffn_dim=24, dropout=0.0)
    torch.testing.assert_close(g.train()(memory, keep), g.eval()(memory, keep))
    # the cross-attention's weight dropout draws a new mask per training pass, none at evaluation
    _only_cross_attention_dropout(g, 0.5)
    g.train()
    assert not torch.allclose(g(memory, keep), g(memory, keep))
    g.eval()
    assert torch.equal(g(memory, keep), g(memory, keep))
    _only_cross_attention_dropout(g, 0.0)
    g.train()
    torch.testing.assert_close(g(memory, keep), g.eval()(memory, keep))


def test_masked_loss_of_a_batch_with_one_image_is_that_samples_sum():
    gen, real = torch.randn(2, 3, 4), torch.randn(2, 3, 4)
    mask = torch.tensor([[1.0, 0.0, 1.0], [1.0, 1.0, 1.0]])
    loss = masked_token_loss(gen, real, mask, torch.tensor([True, False]))
    torch.testing.assert_close(loss, (token_kl(gen, real)[0] * mask[0]).sum())  # divided by 1 sample, not more


def test_generator_layer_runs_its_own_self_attention_by_default():
    """Called as a plain layer (no precomputed first block), ``GeneratorLayer`` is the wrapped
    ``nn.TransformerDecoderLayer`` (eval, every memory unit kept)."""
    torch.manual_seed(0)
    layer = GeneratorLayer(16, 2, 32, 0.0).eval()
    for p in layer.parameters():  # non-zero biases everywhere
        torch.nn.init.normal_(p, std=0.3)
    x, memory = torch.randn(2, 5, 16), torch.randn(2, 7, 16)
    out, _ = layer(x, memory, torch.ones(2, 7))
    torch.testing.assert_close(out, layer.layer(x, memory), rtol=1e-5, atol=1e-5)
