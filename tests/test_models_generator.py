"""Cross-modal generator (Eqs. 2-4): masked cross-attention, parameter count; losses (Eqs. 5, 7)."""

from __future__ import annotations

import torch

from bga_mner.models.generator import CrossModalGenerator, masked_token_loss, token_kl


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
