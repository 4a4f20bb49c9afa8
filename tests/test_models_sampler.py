"""Stage-refined Context Sampler (Eq. 1): hard masks, straight-through gradient, padding, never empty;
at evaluation the keep_ratio share of most probable units."""

from __future__ import annotations

import math

import pytest
import torch

from bga_mner.models.sampler import ContextSampler, keep_ratio_loss, top_share


def _inputs(B=3, N=7, d=16, seed=0):
    g = torch.Generator().manual_seed(seed)
    tokens = torch.randn(B, N, d, generator=g, requires_grad=True)
    valid = torch.ones(B, N, dtype=torch.bool)
    valid[1, 4:] = False
    return tokens, valid


def test_dynamicvit_widths_and_parameter_count():
    # DynamicViT's PredictorLG at d = 768: LN, 768->768, 768->384, 384->192, 192->2
    s = ContextSampler(768, hidden_ratio=0.5)
    widths = [m.out_features for m in s.modules() if isinstance(m, torch.nn.Linear)]
    assert widths == [768, 384, 192, 2]
    n = sum(p.numel() for p in s.parameters())
    assert n == 961_730
    # x 11 BGA layers = 10.58M; x 12 would be 11.54M, the paper's "11.5M" (docs/implementation_notes.md)
    assert round(11 * n / 1e6, 2) == 10.58 and round(12 * n / 1e6, 1) == 11.5


def test_training_masks_are_hard_with_straight_through_gradient():
    torch.manual_seed(0)
    s = ContextSampler(16).train()
    tokens, valid = _inputs()
    m = s(tokens, valid.float(), valid)
    assert set(m.detach().unique().tolist()) <= {0.0, 1.0}  # exactly 0/1 values
    assert not m[~valid].any()  # padding never kept
    (m * torch.arange(7.0)).sum().backward()
    assert tokens.grad is not None and tokens.grad.abs().sum() > 0  # gradient reaches the sampler input
    assert all(p.grad is not None for p in s.parameters())


def _top_units(scores, valid, share):
    """Reference: per row, the floor(share * n) (at least 1) valid positions of highest score, n the
    row's valid units (a loop over rows; ties in position order)."""
    out, scores = torch.zeros_like(valid), scores.detach()
    for b in range(valid.shape[0]):
        units = [j for j in range(valid.shape[1]) if valid[b, j]]
        k = max(1, math.floor(share * len(units) + 1e-9))
        for j in sorted(units, key=lambda j: (-float(scores[b, j]), j))[:k]:
            out[b, j] = True
    return out


def test_eval_keeps_the_keep_ratio_share_of_most_probable_units():
    s = ContextSampler(16, keep_ratio=0.7).eval()
    tokens, valid = _inputs()
    logits = s.logits(tokens, valid.float())
    m1, m2 = s(tokens, valid.float(), valid), s(tokens, valid.float(), valid)
    assert torch.equal(m1, m2)  # deterministic
    assert m1.sum(1).tolist() == [4.0, 2.0, 4.0]  # floor(0.7 * 7), floor(0.7 * 4)
    assert torch.equal(m1.bool(), _top_units(logits[..., 0], valid, 0.7))


@pytest.mark.parametrize("p_keep", [0.7, 0.3])
def test_eval_share_is_the_share_the_keep_ratio_loss_trains_whatever_the_probabilities(p_keep):
    """The keep-ratio loss trains the mean keep probability (the expected share of a training draw)
    to rho; it says nothing of how the probabilities sit around 0.5. Samplers that give every unit
    p_keep near 0.7 (what the demo's learnt) satisfy it exactly, and an argmax would then keep
    every unit at evaluation (near 0.3: one per row). Evaluation keeps the rho share instead."""
    torch.manual_seed(0)
    g = torch.Generator().manual_seed(2)
    B, N = 4, 200
    p = (p_keep + 0.05 * torch.rand(B, N, generator=g)).clamp(0.01, 0.99)  # every unit near p_keep
    logits = torch.stack([p, 1 - p], -1).log()
    valid = torch.ones(B, N, dtype=torch.bool)
    valid[1, 150:] = False
    s = ContextSampler(4, keep_ratio=0.7)
    drawn = s.train()(torch.zeros(B, N, 4), valid.float(), valid, logits=logits)
    kept = s.eval()(torch.zeros(B, N, 4), valid.float(), valid, logits=logits)
    assert abs(drawn[valid].mean().item() - p[valid].mean().item()) < 0.04  # training: about p_keep
    assert kept.sum(1).tolist() == [140.0, 105.0, 140.0, 140.0]  # evaluation: 0.7 of the real units
    assert torch.equal(kept.bool(), _top_units(p, valid, 0.7))


def test_top_share_rounds_down_keeps_one_and_never_padding():
    scores = torch.tensor([[0.0] * 30, [5.0, 1.0, 1.0, 9.0] + [0.0] * 26])
    valid = torch.ones(2, 30, dtype=torch.bool)
    valid[1, 3:] = False  # row 1: three real units; position 3 (highest score) is padding
    kept = top_share(scores, valid, 0.7)
    assert kept.sum(1).tolist() == [21, 2]  # floor(0.7 * 30), floor(0.7 * 3)
    assert kept[0, :21].all()  # equal scores: position order
    assert kept[1].tolist()[:4] == [True, True, False, False]
    assert top_share(scores, valid, 0.1).sum(1).tolist() == [3, 1]  # at least one unit
    hundred = torch.ones(1, 100, dtype=torch.bool)
    assert top_share(torch.zeros(1, 100), hundred, 0.53).sum().item() == 53  # 0.53 * 100: 52.99... in float32
    assert torch.equal(top_share(scores, valid, 1.0), valid)
    with pytest.raises(ValueError, match="keep_ratio"):
        ContextSampler(16, keep_ratio=0.0)


def test_global_context_uses_previous_mask():
    s = ContextSampler(16).eval()
    tokens, valid = _inputs()
    prev = valid.float().clone()
    prev[0, :3] = 0  # the previous layer removed three tokens of tweet 0
    a, b = s.logits(tokens, valid.float()), s.logits(tokens, prev)
    assert not torch.allclose(a[0], b[0])  # GAP over the kept tokens changed
    torch.testing.assert_close(a[1:], b[1:])


def test_removing_everything_keeps_the_most_probable_real_unit():
    """Training: a draw that keeps nothing keeps the real unit of highest keep probability.
    Evaluation keeps the keep_ratio share of most probable real units however low they score."""
    tokens, valid = _inputs()
    drop_all = torch.zeros(3, 7, 2)
    drop_all[..., 1] = 10.0  # every unit: drop
    drop_all[0, 5, 0] = 9.0  # tweet 0: unit 5 is the least unlikely to keep
    drop_all[1, 6, 0] = 50.0  # tweet 1: a padding position scores highest: never kept
    drop_all[1, 2, 0] = 8.0
    for mode, kept in (("train", [1.0, 1.0, 1.0]), ("eval", [4.0, 2.0, 4.0])):
        torch.manual_seed(0)
        s = getattr(ContextSampler(16), mode)()
        s.tau = 1e-3 if mode == "train" else s.tau  # Gumbel noise cannot overturn a 10-logit gap
        m = s(tokens, valid.float(), valid, logits=drop_all.log_softmax(-1))
        assert m.sum(1).tolist() == kept
        assert m[0, 5] == 1 and m[1, 2] == 1 and not m[~valid].any()
        assert torch.isfinite(m).all()


def test_keep_ratio_loss_is_summed_over_real_units_and_pulls_towards_the_target():
    valid = torch.tensor([[True] * 10, [True] * 5 + [False] * 5, [True] * 4 + [False] * 6])
    mask = valid.float().clone().requires_grad_(True)  # every real unit kept: share 1.0
    samples = torch.tensor([True, True, False])  # the third (no image) does not count
    loss = keep_ratio_loss(mask, valid, 0.7, samples)
    assert loss.item() == pytest.approx((10 * 0.3 ** 2 + 5 * 0.3 ** 2) / 2)
    loss.backward()
    assert (mask.grad[:2][valid[:2]] > 0).all()  # keeping fewer lowers it, by the same for each unit
    assert torch.allclose(mask.grad[0], mask.grad[0, 0].expand(10))
    assert (mask.grad[2] == 0).all() and (mask.grad[~valid] == 0).all()
    at_target = torch.tensor([[1.0] * 7 + [0.0] * 3])
    assert keep_ratio_loss(at_target, torch.ones(1, 10, dtype=torch.bool), 0.7, torch.tensor([True])) == 0
    assert keep_ratio_loss(mask, valid, 0.7, torch.zeros(3, dtype=torch.bool)) == 0


def test_logits_are_the_dynamicvit_predictor_written_out():
    """Eq. 1 by hand on the sampler's own weights: LayerNorm, Linear + GELU, split into the local and
    the global half, GAP of the global half over the units the previous layer kept, then
    Linear + GELU, Linear + GELU, Linear and a log-softmax over keep/drop."""
    torch.manual_seed(0)
    s = ContextSampler(16).eval()  # default hidden_ratio 0.5: h = 8
    linears = [m for m in s.modules() if isinstance(m, torch.nn.Linear)]
    norm = next(m for m in s.modules() if isinstance(m, torch.nn.LayerNorm))
    assert [m.out_features for m in linears] == [16, 8, 4, 2]
    tokens, valid = _inputs()
    prev = valid.float().clone()
    prev[0, [1, 4]] = 0.0  # the previous layer removed two units of tweet 0
    prev[2] = torch.nn.functional.one_hot(torch.tensor(3), 7).float()  # and kept one of tweet 2
    gelu = torch.nn.functional.gelu
    x = gelu(linears[0](norm(tokens)))  # (B, N, 2h)
    local, glob = x[..., :8], x[..., 8:]
    w = prev.unsqueeze(-1)
    glob = (glob * w).sum(1, keepdim=True) / w.sum(1, keepdim=True)  # (B, 1, h): mean over kept units
    h = torch.cat([local, glob.expand_as(local)], dim=-1)
    h = gelu(linears[2](gelu(linears[1](h))))
    expected = linears[3](h).log_softmax(-1)  # (B, N, 2)
    torch.testing.assert_close(s.logits(tokens, prev), expected, rtol=1e-5, atol=1e-6)


def _forced_logits() -> torch.Tensor:
    """(3, 7, 2) keep/drop log-probabilities; every unit of tweet 2 leans clearly to "drop"."""
    g = torch.Generator().manual_seed(1)
    logits = torch.randn(3, 7, 2, generator=g)
    logits[2, :, 1] += 6.0
    return logits.log_softmax(-1).detach().requires_grad_(True)


@pytest.mark.parametrize("tau", [None, 0.5])
def test_straight_through_gradient_is_the_gumbel_softmax_keep_probability(tau):
    """Training: the mask's gradient is that of the Gumbel-Softmax keep probability (temperature
    tau, 1 by default) under the same noise, for kept, removed and forced units alike; padding gets
    none. In particular a larger keep logit raises every real unit's mask."""
    s = (ContextSampler(16) if tau is None else ContextSampler(16, tau=tau)).train()
    tokens, valid = _inputs()
    logits = _forced_logits()
    torch.manual_seed(3)
    mask = s(tokens, valid.float(), valid, logits=logits)
    torch.manual_seed(3)  # the same Gumbel noise
    soft = torch.nn.functional.gumbel_softmax(logits, tau=1.0 if tau is None else tau)[..., 0]  # (B, N)
    assert mask[2].sum() == 1 and mask[:2].sum() > 1  # tweet 2 went through the "keep one" rule
    weights = torch.linspace(0.5, 1.5, 7)  # a different weight per unit
    grad = torch.autograd.grad((mask * weights).sum(), logits)[0]  # (B, N, 2)
    expected = torch.autograd.grad((soft * weights * valid).sum(), logits)[0]
    torch.testing.assert_close(grad, expected, rtol=1e-5, atol=1e-9)
    assert (grad[..., 0][valid] > 0).all() and (grad[~valid] == 0).all()


def test_keep_ratio_loss_of_a_one_word_tweet_in_a_batch_with_one_image():
    valid = torch.tensor([[True, False, False], [True, True, True]])
    mask = torch.tensor([[1.0, 0.0, 0.0], [1.0, 0.0, 0.0]])  # tweet 0 keeps its only real unit: share 1
    loss = keep_ratio_loss(mask, valid, 0.3, torch.tensor([True, False]))  # only tweet 0 counts
    assert loss.item() == pytest.approx(1 * (1.0 - 0.3) ** 2)  # n_0 = 1 unit, 1 sample
