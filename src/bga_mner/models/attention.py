"""Multi-head attention over kept units: Eq. 3's mask M in {0, -inf}, with a gradient for the mask.

``softmax(S + M)`` with ``M = 0`` for kept and ``-inf`` for removed units equals
``keep * exp(S) / sum(keep * exp(S))`` when ``keep`` is 0/1. We compute the second form (as
DynamicViT's ``softmax_with_policy``, the sampler design the paper cites) so that a
straight-through Gumbel mask receives a gradient through the attention, while removed units get
exactly zero weight in the forward pass. Every row must keep at least one unit (the samplers
guarantee it); the maximum is taken over kept units only, so nothing overflows or underflows to 0/0.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def split_heads(x: torch.Tensor, heads: int) -> torch.Tensor:
    """(B, N, h*dh) -> (B, h, N, dh)."""
    return x.unflatten(-1, (heads, -1)).transpose(1, 2)


def merge_heads(x: torch.Tensor) -> torch.Tensor:
    """(B, h, N, dh) -> (B, N, h*dh)."""
    return x.transpose(1, 2).flatten(2)


def masked_softmax(scores: torch.Tensor, keep: torch.Tensor) -> torch.Tensor:
    """Softmax over the last axis restricted to kept units (exact zeros elsewhere).

    Args:
        scores: (B, h, Nq, Nk) attention logits.
        keep: (B, Nk) 0/1 mask, float (gradients flow into it) or bool.
    """
    keep_b = keep[:, None, None, :]  # (B, 1, 1, Nk)
    kept = keep_b > 0
    if not bool(kept.any(-1).all()):
        raise ValueError("attention row with no kept unit: every sample must keep at least one unit")
    row_max = scores.masked_fill(~kept, float("-inf")).amax(-1, keepdim=True).detach()
    # removed units may score above the kept maximum: clamp so exp() stays finite (their weight is 0)
    e = torch.exp((scores - row_max).clamp(max=30.0))
    e = e * keep_b.to(e.dtype)
    return e / e.sum(-1, keepdim=True)


def attend(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, keep: torch.Tensor, scale: float,
           dropout: float = 0.0, training: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """Scaled dot-product attention over kept keys.

    Args:
        q: (B, h, Nq, dh); k, v: (B, h, Nk, dh).
        keep: (B, Nk) 0/1 mask of the keys (see ``masked_softmax``).
        scale: the logit scale, usually dh ** -0.5.
        dropout: attention-weight dropout probability (training only).

    Returns:
        the context (B, h, Nq, dh) and the attention weights (B, h, Nq, Nk) before dropout.
    """
    weights = masked_softmax((q @ k.transpose(-2, -1)) * scale, keep)
    context = F.dropout(weights, dropout, training) @ v
    return context, weights
