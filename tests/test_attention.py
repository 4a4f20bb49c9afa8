"""masked_softmax (Eq. 3's mask): exact forward, bounded straight-through gradient for the keep mask.

The references here are written out independently of ``bga_mner.models.attention``: the forward is
``softmax(S + M)`` with M = -inf on removed units, the gradient for a kept unit is autograd of
``keep * exp(S) / sum(keep * exp(S))``, and the gradient for a removed unit is the change of a loss
linear in the weights when that unit is switched on (the straight-through estimate of the 0 -> 1 step).
"""

from __future__ import annotations

import os

import pytest
import torch

from bga_mner.models.attention import attend, masked_softmax

GAPS = (-50.0, -40.0, -20.0, -10.0, -5.0, 0.0, 5.0, 10.0, 20.0, 40.0, 50.0)
B, H, NQ, NK, DH = 2, 2, 3, 7, 4


def _reference_weights(scores: torch.Tensor, keep: torch.Tensor) -> torch.Tensor:
    """softmax(S + M), M = -inf on removed keys; float64."""
    return scores.double().masked_fill(~keep.bool()[:, None, None, :], float("-inf")).softmax(-1)


def _reference_loss(scores: torch.Tensor, keep: torch.Tensor, v: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
    """sum over rows of u . (w @ v): linear in the weights w; float64, keep 0/1 (float, any row non-empty)."""
    s = scores.double()
    k = keep.double()[:, None, None, :]
    e = k * torch.exp(s - s.amax(-1, keepdim=True))  # exact in float64 for |gaps| <= 50
    w = e / e.sum(-1, keepdim=True)
    return ((w @ v.double()) * u.double()).sum()


def _case(gap: float, seed: int = 0):
    """Scores where the removed units score `gap` above the kept ones (below for gap < 0)."""
    g = torch.Generator().manual_seed(seed)
    keep = torch.ones(B, NK)
    keep[0, [0, 3, 5]] = 0.0
    keep[1, [1, 2]] = 0.0
    scores = torch.randn(B, H, NQ, NK, generator=g)
    scores = scores + gap * (1.0 - keep)[:, None, None, :]
    v = torch.randn(B, H, NK, DH, generator=g)
    u = torch.randn(B, H, NQ, DH, generator=g)
    return scores, keep, v, u


def _run(scores: torch.Tensor, keep: torch.Tensor, v: torch.Tensor, u: torch.Tensor):
    scores = scores.clone().requires_grad_(True)
    keep = keep.clone().requires_grad_(True)
    weights = masked_softmax(scores, keep)
    ((weights @ v) * u).sum().backward()
    return weights, scores.grad, keep.grad


@pytest.mark.parametrize("gap", GAPS)
def test_forward_is_the_softmax_over_kept_units(gap: float) -> None:
    scores, keep, v, u = _case(gap)
    weights, _, _ = _run(scores, keep, v, u)
    removed = (keep == 0)[:, None, None, :].expand_as(weights)
    assert (weights[removed] == 0).all()  # exactly zero, not small
    torch.testing.assert_close(weights.double(), _reference_weights(scores, keep), rtol=1e-6, atol=1e-7)
    torch.testing.assert_close(weights.sum(-1), torch.ones(B, H, NQ))


@pytest.mark.parametrize("gap", GAPS)
def test_gradients_are_finite_and_bounded(gap: float) -> None:
    scores, keep, v, u = _case(gap)
    _, g_scores, g_keep = _run(scores, keep, v, u)
    assert torch.isfinite(g_scores).all() and torch.isfinite(g_keep).all()
    # per row |dL/dkeep_j| <= max_i |g_i - gbar| <= 2 max|g|; here |g| = |u . v_i| ~ 2, H * NQ = 6 rows
    assert g_keep.abs().max() < 10 * H * NQ
    # one row alone (what the old code blew up as exp(gap)): below 10
    _, _, g_row = _run(scores[:, :1, :1], keep, v[:, :1], u[:, :1, :1])
    assert g_row.abs().max() < 10


@pytest.mark.parametrize("gap", GAPS)
def test_gradients_match_the_straight_through_reference(gap: float) -> None:
    scores, keep, v, u = _case(gap, seed=1)
    _, g_scores, g_keep = _run(scores, keep, v, u)

    # scores and kept units: autograd of the plain formula
    s_ref = scores.double().requires_grad_(True)
    k_ref = keep.double().requires_grad_(True)
    _reference_loss(s_ref, k_ref, v, u).backward()
    torch.testing.assert_close(g_scores.double(), s_ref.grad, rtol=1e-4, atol=1e-6)
    kept = keep > 0
    torch.testing.assert_close(g_keep.double()[kept], k_ref.grad[kept], rtol=1e-4, atol=1e-6)

    # removed units: L(keep with j switched on) - L(keep), exact for a loss linear in the weights
    base = _reference_loss(scores, keep, v, u)
    for b, j in (~kept).nonzero().tolist():
        on = keep.clone()
        on[b, j] = 1.0
        step = _reference_loss(scores, on, v, u) - base
        torch.testing.assert_close(g_keep[b, j].double(), step, rtol=1e-4, atol=1e-6)


def test_removed_unit_gradient_is_the_exact_derivative_when_it_scores_far_below() -> None:
    scores, keep, v, u = _case(-12.0, seed=2)
    _, _, g_keep = _run(scores, keep, v, u)
    k_ref = keep.double().requires_grad_(True)
    _reference_loss(scores, k_ref, v, u).backward()
    removed = keep == 0
    torch.testing.assert_close(g_keep.double()[removed], k_ref.grad[removed], rtol=1e-4, atol=1e-9)


def test_old_gradient_blew_up_new_one_saturates() -> None:
    """The exact derivative at keep_j = 0 grows as exp(gap); ours tends to g_j - gbar."""
    scores, keep, v, u = _case(0.0, seed=3)
    row = (slice(0, 1), slice(0, 1), slice(0, 1))
    s, vv, uu = scores[row], v[:1, :1], u[:1, :1, :1]
    keep1 = keep[:1]
    j = 0  # removed in sample 0
    grads = []
    for gap in (0.0, 10.0, 20.0, 50.0):
        s_gap = s.clone()
        s_gap[..., j] += gap
        grads.append(_run(s_gap, keep1, vv, uu)[2][0, j].item())
        k_ref = keep1.double().requires_grad_(True)
        _reference_loss(s_gap, k_ref, vv, uu).backward()
        if gap >= 10:
            assert abs(k_ref.grad[0, j].item()) > 1e3 * abs(grads[-1])  # the old, unbounded derivative
    g = (uu.double() @ vv.double().transpose(-2, -1))[0, 0, 0]  # dL/dw, (NK,)
    w = _reference_weights(s, keep1)[0, 0, 0]
    assert grads[-1] == pytest.approx((g[j] - (w * g).sum()).item(), rel=1e-5)


def test_row_without_kept_units_gives_zero_weights_and_finite_gradients() -> None:
    scores, _, v, u = _case(0.0, seed=4)
    keep = torch.ones(B, NK)
    keep[1] = 0.0  # sample 1 keeps nothing
    weights, g_scores, g_keep = _run(scores, keep, v, u)
    assert (weights[1] == 0).all()
    torch.testing.assert_close(weights[0].double(), _reference_weights(scores, keep)[0])
    assert torch.isfinite(g_scores).all() and torch.isfinite(g_keep).all()
    assert (g_scores[1] == 0).all()
    # switching unit j on in an empty row gives it weight 1: dL/dkeep_j = sum over rows of u . v_j
    expected = (u[1] @ v[1].transpose(-2, -1)).sum((0, 1))
    torch.testing.assert_close(g_keep[1], expected)


def test_bool_and_float_keep_give_the_same_forward() -> None:
    scores, keep, _, _ = _case(20.0, seed=5)
    with_grad = masked_softmax(scores, keep.clone().requires_grad_(True))
    torch.testing.assert_close(with_grad, masked_softmax(scores, keep.bool()), rtol=0, atol=0)
    with torch.no_grad():
        torch.testing.assert_close(masked_softmax(scores, keep), with_grad.detach(), rtol=0, atol=0)


def test_attend_compiles_to_one_graph() -> None:
    """No data-dependent Python check: dynamo traces attend (and its backward inputs) without a break."""
    if "MUTANT_UNDER_TEST" in os.environ:  # set at run time by mutmut (make mutation)
        pytest.skip("mutmut's trampolines are not traceable by dynamo")
    g = torch.Generator().manual_seed(6)
    q, k, v = (torch.randn(B, H, NK, DH, generator=g) for _ in range(3))
    keep = torch.ones(B, NK)
    keep[0, :3] = 0.0
    keep.requires_grad_(True)
    compiled = torch.compile(attend, backend="eager", fullgraph=True)
    context, weights = compiled(q, k, v, keep, DH ** -0.5)
    ref_context, ref_weights = attend(q, k, v, keep, DH ** -0.5)
    torch.testing.assert_close(weights, ref_weights)
    context.sum().backward()
    assert torch.isfinite(keep.grad).all() and keep.grad.abs().sum() > 0


def test_each_row_is_shifted_by_its_own_maximum() -> None:
    """Rows 200 apart in score: a shared shift would underflow the lower rows to 0/0."""
    scores, keep, v, u = _case(10.0, seed=7)
    scores = scores + 200.0 * torch.arange(B * H * NQ, dtype=torch.float).view(B, H, NQ, 1)
    weights, g_scores, g_keep = _run(scores, keep, v, u)
    torch.testing.assert_close(weights.double(), _reference_weights(scores, keep), rtol=1e-6, atol=1e-7)
    assert torch.isfinite(g_scores).all() and torch.isfinite(g_keep).all()


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float64])
def test_weights_have_the_dtype_of_the_scores(dtype: torch.dtype) -> None:
    scores, keep, _, _ = _case(5.0, seed=8)
    weights = masked_softmax(scores.to(dtype), keep.clone().requires_grad_(True))  # float32 keep
    assert weights.dtype == dtype
    tol = dict(rtol=2e-2, atol=2e-3) if dtype == torch.bfloat16 else dict(rtol=1e-6, atol=1e-7)
    torch.testing.assert_close(weights.double(), _reference_weights(scores.to(dtype), keep), **tol)


def test_attend_defaults_to_no_dropout_and_evaluation() -> None:
    g = torch.Generator().manual_seed(9)
    q, k, v = (torch.randn(B, H, NK, DH, generator=g) for _ in range(3))
    keep = torch.ones(B, NK)
    keep[1, 2:4] = 0.0
    context, weights = attend(q, k, v, keep, DH ** -0.5)
    torch.testing.assert_close(weights.double(), _reference_weights(q @ k.transpose(-2, -1) * DH ** -0.5, keep))
    torch.testing.assert_close(context, weights @ v)
    torch.manual_seed(0)
    torch.testing.assert_close(attend(q, k, v, keep, DH ** -0.5, training=True)[0], context)  # dropout 0
    torch.testing.assert_close(attend(q, k, v, keep, DH ** -0.5, dropout=0.9)[0], context)  # not training
    torch.manual_seed(0)
    dropped, w_dropped = attend(q, k, v, keep, DH ** -0.5, dropout=0.5, training=True)
    torch.testing.assert_close(w_dropped, weights)  # the weights are returned before dropout
    assert not torch.allclose(dropped, context)
