"""Multi-level Cross-modal Generator (MCG, Sec. 3.4, Eqs. 2-7).

``CrossModalGenerator`` is a transformer decoder whose learnable, position-aligned queries
(Nv visual queries for text->image, Nt = max_length textual queries for image->text) cross-attend to
the other branch's tokens; the sampled keep mask is the cross-attention mask (Eq. 3). One t2v and
one v2t generator are shared by all BGA layers. Each decoder layer is a
``torch.nn.TransformerDecoderLayer`` (post-norm, query self-attention, FFN 2048 by default): its
modules are reused as they are, only the cross-attention's softmax is computed over kept units
(``attention.masked_softmax``) so removed units get exactly zero weight and the sampler receives a
gradient. With query self-attention and PyTorch's default FFN width 2048, one layer at d = 768 has
7.88M parameters (+ 98 x 768 queries = 7.95M), against the paper's 7.9M for G_t2v; without query
self-attention it would be 5.5M, with a 3072-wide FFN 9.5M.

The generator works at the width of the modality it generates; when the other branch is narrower
or wider (e.g. MiniLM 384 + a 128-wide ViT) its tokens are first projected (``memory_proj``).

Losses (Eqs. 5 and 7): ``token_kl`` is D_KL(generated || real) per token with the softmax over
channels, ``masked_token_loss`` weights it with the keep mask (Eq. 5) and sums over units.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from bga_mner.models.attention import attend, merge_heads, split_heads


class GeneratorLayer(nn.Module):
    """One ``nn.TransformerDecoderLayer`` whose cross-attention runs over kept memory units (Eq. 3)."""

    def __init__(self, dim: int, heads: int, ffn_dim: int, dropout: float):
        super().__init__()
        self.layer = nn.TransformerDecoderLayer(dim, heads, dim_feedforward=ffn_dim, dropout=dropout,
                                                batch_first=True, norm_first=False)
        self.heads = heads

    def cross_attention(self, x: torch.Tensor, memory: torch.Tensor, keep: torch.Tensor
                        ) -> tuple[torch.Tensor, torch.Tensor]:
        """Eq. 3 with the ``multihead_attn`` weights: (B, Nq, d) queries over (B, Nm, d) kept memory."""
        mha = self.layer.multihead_attn
        w_q, w_k, w_v = mha.in_proj_weight.chunk(3)
        b_q, b_k, b_v = mha.in_proj_bias.chunk(3)
        q = split_heads(F.linear(x, w_q, b_q), self.heads)  # (B, h, Nq, dh)
        k = split_heads(F.linear(memory, w_k, b_k), self.heads)  # (B, h, Nm, dh)
        v = split_heads(F.linear(memory, w_v, b_v), self.heads)
        context, weights = attend(q, k, v, keep, q.shape[-1] ** -0.5, mha.dropout, self.training)
        return mha.out_proj(merge_heads(context)), weights  # (B, Nq, d), (B, h, Nq, Nm)

    def forward(self, x: torch.Tensor, memory: torch.Tensor, keep: torch.Tensor,
                query_padding: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Post-norm decoder layer: self-attention, masked cross-attention, FFN.

        Args:
            x: (B, Nq, d) queries; memory: (B, Nm, d); keep: (B, Nm) 0/1.
            query_padding: (B, Nq) bool, True for padded queries (excluded as self-attention keys).
        """
        L = self.layer
        sa = L.self_attn(x, x, x, key_padding_mask=query_padding, need_weights=False)[0]
        x = L.norm1(x + L.dropout1(sa))
        ca, weights = self.cross_attention(x, memory, keep)
        x = L.norm2(x + L.dropout2(ca))
        ff = L.linear2(L.dropout(L.activation(L.linear1(x))))
        return L.norm3(x + L.dropout3(ff)), weights


class CrossModalGenerator(nn.Module):
    """G_t2v or G_v2t (Eq. 2 / Eq. 4): learnable queries cross-attending to sampled content.

    Args:
        num_queries: Nv (t2v) or the maximal Nt (v2t); a shorter text uses the first Nt queries.
        dim: width of the generated modality.
        memory_dim: width of the conditioning modality (projected to ``dim`` when different).
        heads: attention heads; ffn_dim: FFN width; layers: decoder depth; dropout: dropout rate.
    """

    def __init__(self, num_queries: int, dim: int, memory_dim: int, heads: int, ffn_dim: int = 2048,
                 layers: int = 1, dropout: float = 0.1):
        super().__init__()
        if dim % heads:
            raise ValueError(f"generator width {dim} is not divisible by {heads} heads")
        self.queries = nn.Parameter(torch.randn(num_queries, dim) * 0.02)  # Q_v or Q_t
        self.memory_proj = nn.Linear(memory_dim, dim) if memory_dim != dim else nn.Identity()
        self.layers = nn.ModuleList(GeneratorLayer(dim, heads, ffn_dim, dropout) for _ in range(layers))

    def forward(self, memory: torch.Tensor, keep: torch.Tensor, num_queries: int | None = None,
                query_padding: torch.Tensor | None = None, return_attention: bool = False):
        """Generate (B, Nq, dim) pseudo tokens of the other modality.

        Args:
            memory: (B, Nm, memory_dim) the conditioning branch's tokens (T^l or V^l).
            keep: (B, Nm) the sampled keep mask m^l (0/1, float with gradient or bool).
            num_queries: use the first Nq queries (the batch's text length for v2t); default all.
            query_padding: (B, Nq) bool, True where the aligned real token is padding.
            return_attention: also return the last layer's cross-attention weights (B, h, Nq, Nm).
        """
        n = self.queries.shape[0] if num_queries is None else num_queries
        if n > self.queries.shape[0]:
            raise ValueError(f"{n} queries requested; the generator has {self.queries.shape[0]} "
                             "(model.max_length too small for the batch?)")
        memory = self.memory_proj(memory)  # (B, Nm, dim)
        x = self.queries[:n].unsqueeze(0).expand(memory.shape[0], -1, -1)  # (B, Nq, dim)
        weights = None
        for layer in self.layers:
            x, weights = layer(x, memory, keep, query_padding)
        return (x, weights) if return_attention else x


def token_kl(generated: torch.Tensor, real: torch.Tensor) -> torch.Tensor:
    """D_KL(softmax(generated) || softmax(real)) per token, softmax over channels: (B, N, d) -> (B, N)."""
    log_p = F.log_softmax(generated, dim=-1)
    log_q = F.log_softmax(real, dim=-1)
    return F.kl_div(log_q, log_p, reduction="none", log_target=True).sum(-1)


def masked_token_loss(generated: torch.Tensor, real: torch.Tensor, mask: torch.Tensor,
                      samples: torch.Tensor) -> torch.Tensor:
    """Eq. 5 / Eq. 7 term: sum_i D_KL(gen_i || real_i) * m_i, averaged over the selected samples.

    Args:
        generated, real: (B, N, d).
        mask: (B, N) 0/1 weights (the keep mask; zero on padding).
        samples: (B,) bool, the samples that take part (those with an image); the others give
            exactly zero loss and zero gradient. With none selected the result is 0.
    """
    per_token = token_kl(generated, real) * mask.to(generated.dtype)  # (B, N)
    per_sample = torch.where(samples, per_token.sum(1), torch.zeros_like(per_token[:, 0]))  # (B,)
    return per_sample.sum() / samples.sum().clamp(min=1)
