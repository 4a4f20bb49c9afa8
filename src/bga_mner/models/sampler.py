"""Stage-refined Context Sampler (SCS, Sec. 3.3, Eq. 1): which tokens/patches to keep for generation.

Modelled on DynamicViT's ``PredictorLG`` (the paper cites it for the Gumbel-Softmax decision):

    x  = GELU(Linear(LayerNorm(T)))             # (B, N, 2h), h = sampler_hidden_ratio * d
    z  = x[..., :h]                             # local feature, MLP_phi(T)          (Eq. 1)
    g  = GAP(x[..., h:] * m^{l-1})              # global content of the units kept by the
                                                # previous layer, MLP_psi(T)          (Eq. 1)
    p  = Softmax(MLP_Phi([z, g]))               # (B, N, 2): keep / drop probabilities
    m^l = GumbelSoftmax(log p) [..., keep]      # hard 0/1, straight-through gradient

With ``sampler_hidden_ratio = 0.5`` the widths are DynamicViT's exactly (d -> d, then d -> d/2 ->
d/4 -> 2). Decisions the paper leaves open:

* Training samples with ``F.gumbel_softmax`` (temperature ``gumbel_tau``) and uses the hard
  one-hot with a straight-through gradient written as ``hard + (soft - soft.detach())`` so kept
  units are exactly 1.0 and removed ones exactly 0.0.
* Evaluation keeps, per sample, the ``floor(rho * n)`` real units (at least one) of highest keep
  probability, rho = ``model.keep_ratio``: DynamicViT's inference rule, deterministic. The keep-ratio
  loss (:func:`keep_ratio_loss`) trains the *expected* share of a training draw, the mean keep
  probability, to rho, not where the probabilities sit around 0.5: an argmax (keep where p >= 0.5)
  keeps every unit of samplers that give each unit p ~ rho, as the demo's learn to
  (docs/implementation_notes.md, "Keep-ratio loss").
* ``m^{l-1}`` enters only the GAP, as in Eq. 1; it does not gate ``m^l`` (DynamicViT's monotone
  pruning multiplies them). Each level chooses its own matched content.
* Padding (or a missing crop) is never kept. If a sample would keep nothing, its real unit with the
  highest keep probability is kept, so every generator attention row has a unit to attend to.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class ContextSampler(nn.Module):
    """One SCS (one branch, one BGA layer).

    Args:
        dim: token width d.
        hidden_ratio: h / d (DynamicViT: 0.5).
        tau: Gumbel-Softmax temperature.
        keep_ratio: rho, the share of each sample's real units kept at evaluation (DynamicViT: 0.7).
    """

    KEEP = 0  # index of the "keep" class, as in DynamicViT

    def __init__(self, dim: int, hidden_ratio: float = 0.5, tau: float = 1.0, keep_ratio: float = 0.7):
        super().__init__()
        if not 0.0 < keep_ratio <= 1.0:
            raise ValueError(f"keep_ratio={keep_ratio}: expected a share in (0, 1]")
        hidden = max(2, round(dim * hidden_ratio))
        self.tau, self.keep_ratio = tau, keep_ratio
        self.in_mlp = nn.Sequential(nn.LayerNorm(dim), nn.Linear(dim, 2 * hidden), nn.GELU())  # phi | psi
        self.out_mlp = nn.Sequential(  # Phi
            nn.Linear(2 * hidden, hidden), nn.GELU(),
            nn.Linear(hidden, max(1, hidden // 2)), nn.GELU(),
            nn.Linear(max(1, hidden // 2), 2),
        )

    def logits(self, tokens: torch.Tensor, prev_mask: torch.Tensor) -> torch.Tensor:
        """Keep/drop log-probabilities (B, N, 2) of Eq. 1.

        Args:
            tokens: (B, N, d) the branch's tokens at this layer.
            prev_mask: (B, N) float 0/1 mask of the previous layer (all real units at the first).
        """
        x = self.in_mlp(tokens)  # (B, N, 2h)
        local, glob = x.chunk(2, dim=-1)  # (B, N, h) each
        w = prev_mask.unsqueeze(-1).to(x.dtype)  # (B, N, 1)
        glob = (glob * w).sum(1, keepdim=True) / w.sum(1, keepdim=True).clamp(min=1.0)  # (B, 1, h) GAP
        x = torch.cat([local, glob.expand_as(local)], dim=-1)  # (B, N, 2h)
        return F.log_softmax(self.out_mlp(x), dim=-1)

    def forward(self, tokens: torch.Tensor, prev_mask: torch.Tensor, valid: torch.Tensor,
                logits: torch.Tensor | None = None) -> torch.Tensor:
        """The keep mask m^l (B, N), float 0/1: a Gumbel-Softmax draw with a straight-through gradient
        in training, the ``keep_ratio`` share of most probable real units at evaluation.

        Args:
            tokens: (B, N, d).
            prev_mask: (B, N) m^{l-1}.
            valid: (B, N) bool, real units (not padding, not a missing crop).
            logits: precomputed (B, N, 2) log-probabilities (tests force them).
        """
        if logits is None:
            logits = self.logits(tokens, prev_mask)
        if self.training:
            soft = F.gumbel_softmax(logits, tau=self.tau, hard=False)[..., self.KEEP]  # (B, N)
            hard = (soft > 0.5).to(soft.dtype)  # argmax of the 2-way sample
        else:
            soft = logits.softmax(-1)[..., self.KEEP]
            hard = top_share(logits[..., self.KEEP], valid, self.keep_ratio).to(soft.dtype)
        straight = soft - soft.detach()  # exactly 0 in value, d soft in gradient
        mask = torch.where(valid, hard + straight, torch.zeros_like(soft))
        # keep at least one real unit: the one with the highest keep probability
        empty = (mask.detach() * valid).sum(1) == 0  # (B,)
        best = logits[..., self.KEEP].masked_fill(~valid, float("-inf")).argmax(1)  # (B,)
        units = torch.arange(mask.shape[1], device=mask.device)  # (N,)
        force = (units == best.unsqueeze(1)) & empty.unsqueeze(1)  # one-hot of best (no fixed N: ONNX export)
        return torch.where(force, 1.0 + straight, mask)


def top_share(scores: torch.Tensor, valid: torch.Tensor, share: float) -> torch.Tensor:
    """Per sample, the ``floor(share * n)`` valid units (at least one) of highest score, n its valid
    units (DynamicViT's inference rule); equal scores are taken in position order.

    Args:
        scores: (B, N) keep scores (log-probabilities).
        valid: (B, N) bool, real units.
        share: the share to keep, in (0, 1].

    Returns:
        (B, N) bool.
    """
    n = valid.sum(1, keepdim=True).float()  # (B, 1), float32 whatever the precision of the scores
    k = (n * share + 1e-4).floor().clamp(min=1.0)  # (B, 1); 1e-4: a product just below an integer
    # rank of unit i = the units ahead of it: a higher score, or an equal one at an earlier position
    # (a stable descending sort's rank, by comparisons: no sort, which the ONNX export lacks)
    s = scores.masked_fill(~valid, float("-inf"))  # (B, N)
    pos = torch.arange(scores.shape[1], device=scores.device)  # (N,)
    ahead = (s.unsqueeze(1) > s.unsqueeze(2)) | (
        (s.unsqueeze(1) == s.unsqueeze(2)) & (pos.view(1, 1, -1) < pos.view(1, -1, 1)))  # (B, N, N): [b, i, j] j ahead of i
    rank = ahead.sum(2)  # (B, N) 0 = highest score
    return (rank < k) & valid


def keep_ratio_loss(mask: torch.Tensor, valid: torch.Tensor, target: float,
                    samples: torch.Tensor) -> torch.Tensor:
    """DynamicViT's ratio loss, summed over units like Eq. 5: n_i (kept share - target)^2 per sample
    (n_i real units), averaged over the selected samples.

    Args:
        mask: (B, N) the sampled keep mask (straight-through gradient).
        valid: (B, N) bool, real units.
        target: the keep ratio rho in (0, 1].
        samples: (B,) bool, the samples that count (those with an image); none selected gives 0.
    """
    w = valid.to(mask.dtype)  # (B, N)
    n = w.sum(1)  # (B,) real units
    share = (mask * w).sum(1) / n.clamp(min=1.0)  # (B,)
    per_sample = torch.where(samples, n * (share - target) ** 2, torch.zeros_like(share))
    return per_sample.sum() / samples.sum().clamp(min=1)
