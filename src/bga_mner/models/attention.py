"""Multi-head attention over kept units: Eq. 3's mask M in {0, -inf}, with a gradient for the mask.

``softmax(S + M)`` with ``M = 0`` for kept and ``-inf`` for removed units equals
``keep * exp(S) / sum(keep * exp(S))`` when ``keep`` is 0/1. We compute the second form (as
DynamicViT's ``softmax_with_policy``, the sampler design the paper cites) so that a
straight-through Gumbel mask receives a gradient through the attention, while removed units get
exactly zero weight in the forward pass.

The sampler's gradient is bounded. The exact derivative of that form in the keep value of a
removed unit j is ``exp(S_j) / sum_kept exp(S) * (g_j - gbar)`` (``g = dL/dw``, ``gbar = sum_i w_i g_i``):
it grows as exp(score gap) when j scores above the kept units (1e2 at a gap of 5, 1e13 at 30+), and
under global-norm clipping one such step shrinks every parameter's update to about zero. No choice
of the softmax shift changes that ratio; DynamicViT's eps (``(exp * policy + eps/N) / (sum + eps)``,
max over all units) only caps it at about 1/eps = 1e6 and, when every kept unit is far below the
maximum, gives the removed units eps/N each and the kept ones about 0. So ``masked_softmax``
keeps the forward exact (shift by the maximum over the *kept* units: the kept sum is >= 1, removed
units never enter ``exp``) and replaces only that one derivative by ``c_j * (g_j - gbar)`` with
``c_j = exp(S_j) / (exp(S_j) + sum_kept exp(S))``: the weight j would get if it were kept. That is
the exact change of a loss linear in the weights when j is switched on (the straight-through
estimate of the 0 -> 1 step; the derivative at 0 is its tangent), the same as the exact derivative
when j scores far below the kept units, and never more than ``max|g_i - g_k|``. Kept units keep
their exact derivative ``w_j * (g_j - gbar)``, and the scores their exact softmax gradient.

A row with no kept unit gets all-zero weights (context 0) instead of an error: no data-dependent
check, so ``torch.compile`` traces one graph. The samplers keep at least one unit per sample anyway.

Two kernels, one result (``attend``): where the keep mask carries a gradient (a sampled mask in
training: the generators' reconstruction passes, Eqs. 2-4), the attention is computed through
``masked_softmax`` so the sampler gets its bounded straight-through gradient. Everywhere else (the
hybrid layers' boolean masks of Eq. 8, the cycle passes' fixed masks of Eq. 6, evaluation,
``use_scs=false``) there is no gradient to give, and ``F.scaled_dot_product_attention`` with the
boolean mask computes the same context (removed units get exactly zero weight; a row with no kept
unit gets context 0, as above) with fewer passes over memory. Its weights are never materialised;
``need_weights=True`` computes them separately with ``masked_softmax`` (the analyses' path).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def split_heads(x: torch.Tensor, heads: int) -> torch.Tensor:
    """(B, N, h*dh) -> (B, h, N, dh)."""
    return x.unflatten(-1, (heads, -1)).transpose(1, 2)


def merge_heads(x: torch.Tensor) -> torch.Tensor:
    """(B, h, N, dh) -> (B, N, h*dh)."""
    return x.transpose(1, 2).flatten(2)


def masked_softmax(scores: torch.Tensor, keep: torch.Tensor) -> torch.Tensor:
    """Softmax over the last axis restricted to kept units (exact zeros elsewhere).

    Forward: ``keep * exp(S) / sum(keep * exp(S))``, shifted by the maximum over the kept units (so
    the kept sum is >= 1 and nothing overflows or underflows, whatever the removed units score).
    Backward: exact in ``scores``; in ``keep``, exact for kept units and, for a removed unit j,
    ``c_j * (g_j - sum_i w_i g_i)`` with ``c_j = sigmoid(S_j - logsumexp_kept(S))``, the weight j
    would get if it were kept (``g = dL/dw``): bounded by ``max|g_i - g_k|``, see the module docstring.
    A row with no kept unit gets all-zero weights (its context is 0).

    Args:
        scores: (B, h, Nq, Nk) attention logits.
        keep: (B, Nk) 0/1 mask, float (gradients flow into it) or bool.
    """
    dtype = scores.dtype
    scores = scores.float()  # the exp/sum in float32, also under bf16 autocast (weights returned in dtype)
    k = keep[:, None, None, :].to(scores.dtype)  # (B, 1, 1, Nk)
    kept = k.detach() > 0
    shift = scores.detach().masked_fill(~kept, float("-inf")).amax(-1, keepdim=True)
    shift = torch.where(torch.isfinite(shift), shift, torch.zeros_like(shift))  # no kept unit: any shift
    e = torch.exp((scores - shift).masked_fill(~kept, float("-inf")))  # kept <= 1 (1 at the max), removed 0
    num = k * e
    total = num.sum(-1, keepdim=True)  # >= 1 where the row keeps a hard 0/1 unit, 0 where it keeps none
    weights = num / (total + (total == 0).to(total.dtype))
    if not (k.requires_grad and torch.is_grad_enabled()):
        return weights.to(dtype)
    # Removed units: exp(S_j) * keep_j has a zero derivative in keep_j above (e_j = 0); give them the
    # bounded straight-through one instead, through a term that is exactly 0 in value.
    with torch.no_grad():
        c = torch.sigmoid(scores - shift - torch.log(total)).masked_fill(kept, 0.0)  # total 0 -> c = 1
    dk = k - k.detach()  # 0 in value, d/dkeep = 1
    cdk = c * dk
    return (weights + (cdk - weights.detach() * cdk.sum(-1, keepdim=True))).to(dtype)


def compose_linear(weight: torch.Tensor, bias: torch.Tensor | None, inner: nn.Module | None
                   ) -> tuple[torch.Tensor, torch.Tensor | None]:
    """The affine map ``x -> weight @ inner(x) + bias`` as one (weight, bias) when ``inner`` is a
    Linear (``W Wi``, ``W bi + b``); unchanged when it is the identity.

    Args:
        weight: (d_out, d); bias: (d_out,) or None.
        inner: an ``nn.Linear(m, d)``, ``nn.Identity`` or None (the identity).
    """
    if not isinstance(inner, nn.Linear):
        return weight, bias
    if inner.bias is not None:
        bias = weight @ inner.bias if bias is None else torch.addmv(bias, weight, inner.bias)  # (d_out,)
    return weight @ inner.weight, bias  # (d_out, m)


def keep_has_gradient(keep: torch.Tensor) -> bool:
    """Whether a keep mask passes a gradient back (a sampled mask in training): ``masked_softmax`` then."""
    return keep.requires_grad and torch.is_grad_enabled()


def attend(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, keep: torch.Tensor, scale: float,
           dropout: float = 0.0, training: bool = False, need_weights: bool = True
           ) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Scaled dot-product attention over kept keys (Eq. 3's mask; module docstring: which kernel).

    Args:
        q: (B, h, Nq, dh); k, v: (B, h, Nk, dh).
        keep: (B, Nk) 0/1 mask of the keys (see ``masked_softmax``).
        scale: the logit scale, usually dh ** -0.5.
        dropout: attention-weight dropout probability (training only).
        need_weights: also return the weights; False lets a mask without gradient skip them.

    Returns:
        the context (B, h, Nq, dh) and the attention weights (B, h, Nq, Nk) before dropout (None
        when ``need_weights`` is False and the mask carries no gradient).
    """
    p = dropout if training else 0.0
    if keep_has_gradient(keep):  # the sampler learns through the weights
        weights = masked_softmax((q @ k.transpose(-2, -1)) * scale, keep)  # (B, h, Nq, Nk)
        return F.dropout(weights, p, training) @ v, weights
    kept = (keep if keep.dtype == torch.bool else keep > 0)[:, None, None, :]  # (B, 1, 1, Nk)
    context = F.scaled_dot_product_attention(q, k, v, attn_mask=kept, dropout_p=p, scale=scale)
    weights = masked_softmax((q @ k.transpose(-2, -1)) * scale, keep) if need_weights else None
    return context, weights
