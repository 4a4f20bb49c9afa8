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

What reads no input is computed once per forward pass (``CrossModalGenerator.precompute`` ->
``GeneratorCache``, passed to every call: N reconstruction and N cycle passes per generator):

* The first block. The first decoder layer's query self-attention and its norm
  (``x = norm1(Q + SelfAttn(Q))``), and the queries of its cross-attention (``x W_q``), read only the
  learnable queries and the query padding, never the memory. Under dropout this shares one dropout mask of that block per sample between the calls
  of a forward pass (each call drew its own before); a new mask is drawn every forward pass. In
  evaluation and without query padding it is computed for one row and broadcast over the batch.
* The memory projection folded into the keys and values. The memory enters a layer only through
  its key and value maps, so ``W_k (W_p m + b_p) + b_k = (W_k W_p) m + (W_k b_p + b_k)``: when the
  memory is narrower than the generator (v2t at the demo's widths: 128 -> 384), the products
  ``W_k W_p``, ``W_v W_p`` are formed once per forward pass and the memory tokens are mapped in one
  step, 3.5x fewer multiply-adds per token there (``folds_memory_projection``: whenever it is
  fewer; never at the paper's equal widths, where there is no projection).

Both give the outputs of the plain computation up to float rounding (tests/test_speed_equivalence.py).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from bga_mner.models.attention import attend, compose_linear, merge_heads, split_heads


@dataclass
class KeyValueMaps:
    """The key and value maps (weights (d, m), biases (d,)) a cross-attention applies to its memory."""

    w_k: torch.Tensor
    b_k: torch.Tensor
    w_v: torch.Tensor
    b_v: torch.Tensor


@dataclass
class GeneratorCache:
    """What a generator computes once per forward pass for all its calls (``precompute``).

    Attributes:
        query_states: (B or 1, Nq, dim) the first layer's self-attention block over the queries.
        cross_queries: (B or 1, h, Nq, dh) the first layer's cross-attention queries of them.
        maps: per decoder layer, the key/value maps composed with ``memory_proj`` (None: the memory
            is projected first).
    """

    query_states: torch.Tensor
    cross_queries: torch.Tensor
    maps: list[KeyValueMaps] | None


class GeneratorLayer(nn.Module):
    """One ``nn.TransformerDecoderLayer`` whose cross-attention runs over kept memory units (Eq. 3)."""

    def __init__(self, dim: int, heads: int, ffn_dim: int, dropout: float):
        super().__init__()
        self.layer = nn.TransformerDecoderLayer(dim, heads, dim_feedforward=ffn_dim, dropout=dropout,
                                                batch_first=True, norm_first=False)
        self.heads = heads

    def memory_maps(self, proj: nn.Module | None) -> KeyValueMaps:
        """The key and value maps of the cross-attention, composed with ``proj`` when it is a Linear
        (``W_k W_p``, ``W_k b_p + b_k``; module docstring), as they are when ``proj`` is the identity."""
        mha = self.layer.multihead_attn
        _, w_k, w_v = mha.in_proj_weight.chunk(3)
        _, b_k, b_v = mha.in_proj_bias.chunk(3)
        w_k, b_k = compose_linear(w_k, b_k, proj)  # (d, memory_dim), (d,)
        w_v, b_v = compose_linear(w_v, b_v, proj)
        return KeyValueMaps(w_k, b_k, w_v, b_v)

    def cross_queries(self, x: torch.Tensor) -> torch.Tensor:
        """The cross-attention's queries of ``x``: (B, Nq, d) -> (B, h, Nq, dh)."""
        mha = self.layer.multihead_attn
        d = x.shape[-1]
        return split_heads(F.linear(x, mha.in_proj_weight[:d], mha.in_proj_bias[:d]), self.heads)

    def cross_attention(self, x: torch.Tensor, memory: torch.Tensor, keep: torch.Tensor,
                        need_weights: bool = True, maps: KeyValueMaps | None = None,
                        q: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Eq. 3 with the ``multihead_attn`` weights: (B, Nq, d) queries over (B, Nm, d) kept memory.

        ``maps``: the key/value maps to apply to ``memory`` (``memory_maps``; default the layer's
        own, for memory at the layer's width); ``q``: ``cross_queries(x)`` when computed already
        (broadcast over the batch). Returns the output (B, Nq, d) and the weights
        (B, h, Nq, Nm) (None when not ``need_weights`` and the mask carries no gradient:
        ``attention.attend``).
        """
        mha = self.layer.multihead_attn
        maps = self.memory_maps(None) if maps is None else maps
        q = self.cross_queries(x) if q is None else q.expand(x.shape[0], -1, -1, -1)  # (B, h, Nq, dh)
        k = split_heads(F.linear(memory, maps.w_k, maps.b_k), self.heads)  # (B, h, Nm, dh)
        v = split_heads(F.linear(memory, maps.w_v, maps.b_v), self.heads)
        context, weights = attend(q, k, v, keep, q.shape[-1] ** -0.5, mha.dropout, self.training, need_weights)
        return mha.out_proj(merge_heads(context)), weights  # (B, Nq, d), (B, h, Nq, Nm)

    def self_attention_block(self, x: torch.Tensor, query_padding: torch.Tensor | None = None) -> torch.Tensor:
        """The post-norm self-attention block ``norm1(x + SelfAttn(x))`` over the queries: (B, Nq, d).

        Args:
            x: (B, Nq, d) queries; query_padding: (B, Nq) bool, True for padded queries (not keys).
        """
        L = self.layer
        sa = L.self_attn(x, x, x, key_padding_mask=query_padding, need_weights=False)[0]
        return L.norm1(x + L.dropout1(sa))

    def forward(self, x: torch.Tensor, memory: torch.Tensor, keep: torch.Tensor,
                query_padding: torch.Tensor | None = None, self_attended: bool = False,
                need_weights: bool = True, maps: KeyValueMaps | None = None, q: torch.Tensor | None = None
                ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Post-norm decoder layer: self-attention, masked cross-attention, FFN.

        Args:
            x: (B, Nq, d) queries; memory: (B, Nm, d) (or of ``maps``' input width); keep: (B, Nm) 0/1.
            query_padding: (B, Nq) bool, True for padded queries (excluded as self-attention keys).
            self_attended: ``x`` is already ``self_attention_block(x, query_padding)`` (computed once).
            need_weights: return the cross-attention weights (else they may be None).
            maps: the key/value maps for ``memory`` (``memory_maps``); default the layer's own.
            q: the cross-attention queries ``cross_queries(x)`` when computed already.
        """
        L = self.layer
        if not self_attended:
            x = self.self_attention_block(x, query_padding)
        ca, weights = self.cross_attention(x, memory, keep, need_weights, maps, q)
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

    def num_queries(self, num_queries: int | None = None) -> int:
        """The queries a call uses: ``num_queries`` (checked against the generator's) or all."""
        n = self.queries.shape[0] if num_queries is None else num_queries
        if n > self.queries.shape[0]:
            raise ValueError(f"{n} queries requested; the generator has {self.queries.shape[0]} "
                             "(model.max_length too small for the batch?)")
        return n

    def folds_memory_projection(self) -> bool:
        """Whether composing ``memory_proj`` into each layer's key/value maps costs fewer multiply-adds
        per memory token (2 L d m) than projecting first (d m + 2 L d^2): m < 2 L d / (2 L - 1)."""
        if not isinstance(self.memory_proj, nn.Linear):
            return False
        m, d, n = self.memory_proj.in_features, self.memory_proj.out_features, len(self.layers)
        return 2 * n * d * m < d * m + 2 * n * d * d

    def precompute(self, batch_size: int, num_queries: int | None = None,
                   query_padding: torch.Tensor | None = None) -> GeneratorCache:
        """What every call of one forward pass shares (module docstring): pass it to ``forward``.

        Args:
            batch_size: B of the calls (rows are per sample in training, where dropout is drawn
                per sample; one broadcast row in evaluation when there is no query padding).
            num_queries: as in ``forward``; query_padding: (B, Nq) bool, as in ``forward``.
        """
        n = self.num_queries(num_queries)
        rows = batch_size if self.training or query_padding is not None else 1
        x = self.queries[:n].unsqueeze(0).expand(rows, -1, -1)  # (B or 1, Nq, dim)
        maps = [layer.memory_maps(self.memory_proj) for layer in self.layers] \
            if self.folds_memory_projection() else None
        x = self.layers[0].self_attention_block(x, query_padding)  # (B or 1, Nq, dim)
        return GeneratorCache(x, self.layers[0].cross_queries(x), maps)

    def forward(self, memory: torch.Tensor, keep: torch.Tensor, num_queries: int | None = None,
                query_padding: torch.Tensor | None = None, return_attention: bool = False,
                cache: GeneratorCache | None = None):
        """Generate (B, Nq, dim) pseudo tokens of the other modality.

        Args:
            memory: (B, Nm, memory_dim) the conditioning branch's tokens (T^l or V^l).
            keep: (B, Nm) the sampled keep mask m^l (0/1, float with gradient or bool).
            num_queries: use the first Nq queries (the batch's text length for v2t); default all.
            query_padding: (B, Nq) bool, True where the aligned real token is padding.
            return_attention: also return the last layer's cross-attention weights (B, h, Nq, Nm).
            cache: ``precompute(B, num_queries, query_padding)`` of this forward pass; None computes
                it here.
        """
        n = self.num_queries(num_queries)
        if cache is None:
            cache = self.precompute(memory.shape[0], n, query_padding)
        if cache.maps is None:
            memory = self.memory_proj(memory)  # (B, Nm, dim)
        x = cache.query_states.expand(memory.shape[0], -1, -1)  # (B, Nq, dim)
        weights = None
        for i, layer in enumerate(self.layers):
            last = i == len(self.layers) - 1
            x, weights = layer(x, memory, keep, query_padding, self_attended=i == 0,
                               need_weights=return_attention and last,
                               maps=None if cache.maps is None else cache.maps[i],
                               q=cache.cross_queries if i == 0 else None)
        return (x, weights) if return_attention else x


def token_kl(generated: torch.Tensor, real: torch.Tensor) -> torch.Tensor:
    """D_KL(softmax(generated) || softmax(real)) per token, softmax over channels: (B, N, d) -> (B, N)."""
    log_p = F.log_softmax(generated.float(), dim=-1)  # float32 also under bf16 autocast (CPU keeps bf16)
    log_q = F.log_softmax(real.float(), dim=-1)
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
