"""Feature extractor with hybrid attention (Sec. 3.5, Eq. 8), on pretrained BERT layers and ViT blocks.

Queries come from the branch's own tokens; keys and values from [own tokens; generated tokens of
the other modality]:

    T^{l+1} = FFN(Softmax(T W^Q [T W^K; V_hat W^K]^T / sqrt(d_k)) [T W^V; V_hat W^V])

The wrappers REUSE the pretrained layer's modules (BERT: ``attention.self.{query,key,value}``,
``attention.output``, ``intermediate``, ``output``; timm ViT ``Block``: ``norm1``, ``attn.qkv``,
``attn.proj``, ``ls1``, ``norm2``, ``mlp``, ``ls2``) and only re-run the attention over the longer
key sequence, so the BERT layer keeps its post-norm and the ViT block its pre-norm (``norm1`` is
applied to the generated tokens too, as to any token entering the block). Without extra tokens the
wrapped layer's own ``forward`` runs (a plain BERT layer / ViT block). Masked keys (padding, missing
crops) get exactly zero attention weight.
"""

from __future__ import annotations

import torch
from timm.models.vision_transformer import Block
from torch import nn

from bga_mner.models.attention import attend, merge_heads, split_heads


def additive_mask(keep: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """(B, N) bool keep mask -> (B, 1, 1, N) additive mask (0 keep, -inf remove) for library layers."""
    return torch.zeros(keep.shape, dtype=dtype, device=keep.device).masked_fill(~keep, float("-inf"))[:, None, None]


class HybridBertLayer(nn.Module):
    """A pretrained ``BertLayer`` whose self-attention can also attend to generated tokens.

    Args:
        layer: a transformers ``BertLayer`` (post-norm encoder layer, absolute positions).
    """

    def __init__(self, layer: nn.Module):
        super().__init__()
        sa = layer.attention.self
        d = layer.attention.output.dense.out_features
        for name in ("query", "key", "value"):
            proj = getattr(sa, name)
            assert isinstance(proj, nn.Linear) and proj.weight.shape == (d, d), \
                f"BertLayer.attention.self.{name}: expected Linear({d}, {d}), got {proj}"
        assert sa.num_attention_heads * sa.attention_head_size == d
        assert getattr(layer, "crossattention", None) is None, "encoder layers only (no cross-attention)"
        self.layer = layer
        self.dim, self.heads = d, sa.num_attention_heads

    def forward(self, hidden: torch.Tensor, keep: torch.Tensor, extra: torch.Tensor | None = None,
                extra_keep: torch.Tensor | None = None, return_attention: bool = False):
        """One layer.

        Args:
            hidden: (B, N, d) the branch's tokens; keep: (B, N) bool, real tokens.
            extra: (B, M, d) generated tokens of the other modality (None: plain BERT layer).
            extra_keep: (B, M) bool, which extra tokens may be attended (default all).
            return_attention: also return the attention weights (B, h, N, N + M).
        """
        if extra is None:
            assert not return_attention, "attention weights are only exposed for the hybrid path"
            return self.layer(hidden, attention_mask=additive_mask(keep, hidden.dtype))
        if extra_keep is None:
            extra_keep = torch.ones(extra.shape[:2], dtype=torch.bool, device=extra.device)
        sa = self.layer.attention.self
        kv = torch.cat([hidden, extra], dim=1)  # (B, N + M, d)
        q = split_heads(sa.query(hidden), self.heads)  # (B, h, N, dh)
        k = split_heads(sa.key(kv), self.heads)  # (B, h, N + M, dh)
        v = split_heads(sa.value(kv), self.heads)
        context, weights = attend(q, k, v, torch.cat([keep, extra_keep], 1), sa.scaling,
                                  sa.dropout.p, self.training)
        attn_out = self.layer.attention.output(merge_heads(context), hidden)  # dense, dropout, add & norm
        out = self.layer.feed_forward_chunk(attn_out)  # (B, N, d)
        return (out, weights) if return_attention else out


class HybridViTBlock(nn.Module):
    """A pretrained timm ViT ``Block`` (pre-norm) whose attention can also attend to generated tokens.

    Args:
        block: a timm ``vision_transformer.Block`` with a fused ``attn.qkv``.
    """

    def __init__(self, block: Block):
        super().__init__()
        attn = block.attn
        d = block.norm1.normalized_shape[0]
        assert isinstance(block, Block), f"expected a timm vision_transformer.Block, got {type(block).__name__}"
        assert isinstance(attn.qkv, nn.Linear) and attn.qkv.weight.shape == (3 * d, d), \
            f"Block.attn.qkv: expected Linear({d}, {3 * d}), got {attn.qkv}"
        assert attn.proj.weight.shape == (d, d), f"Block.attn.proj: expected Linear({d}, {d})"
        assert getattr(attn, "gate", None) is None, "gated attention is not supported"
        self.block = block
        self.dim, self.heads = d, attn.num_heads

    def forward(self, x: torch.Tensor, keep: torch.Tensor, extra: torch.Tensor | None = None,
                extra_keep: torch.Tensor | None = None, return_attention: bool = False):
        """One block; arguments as in ``HybridBertLayer.forward`` (``x``: (B, Nv, d) visual tokens)."""
        b = self.block
        if extra is None:
            assert not return_attention, "attention weights are only exposed for the hybrid path"
            return b(x, attn_mask=additive_mask(keep, x.dtype))
        if extra_keep is None:
            extra_keep = torch.ones(extra.shape[:2], dtype=torch.bool, device=extra.device)
        attn, n = b.attn, x.shape[1]
        qkv = attn.qkv(b.norm1(torch.cat([x, extra], dim=1)))  # (B, N + M, 3d)
        q, k, v = (split_heads(t, self.heads) for t in qkv.chunk(3, dim=-1))  # (B, h, N + M, dh)
        q, k = attn.q_norm(q[:, :, :n]), attn.k_norm(k)  # queries: own tokens only
        context, weights = attend(q, k, v, torch.cat([keep, extra_keep], 1), attn.scale,
                                  attn.attn_drop.p, self.training)
        out = attn.proj_drop(attn.proj(attn.norm(merge_heads(context))))  # (B, N, d)
        x = x + b.drop_path1(b.ls1(out))
        x = x + b.drop_path2(b.ls2(b.mlp(b.norm2(x))))
        return (x, weights) if return_attention else x
