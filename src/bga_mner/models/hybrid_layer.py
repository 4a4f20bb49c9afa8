"""Feature extractor with hybrid attention (Sec. 3.5, Eq. 8), on pretrained text encoder layers and ViT blocks.

Queries come from the branch's own tokens; keys and values from [own tokens; generated tokens of
the other modality]:

    T^{l+1} = FFN(Softmax(T W^Q [T W^K; V_hat W^K]^T / sqrt(d_k)) [T W^V; V_hat W^V])

The wrappers REUSE the pretrained layer's modules and only re-run the attention over the longer key
sequence:

* ``HybridTextLayer`` wraps a BERT-family encoder layer from transformers -- ``BertLayer``,
  ``RobertaLayer`` or ``XLMRobertaLayer`` (model types ``bert``, ``roberta``, ``xlm-roberta``), which
  share one layout: ``attention.self.{query,key,value}``, ``attention.output`` (dense, dropout,
  add & LayerNorm), ``intermediate``, ``output``. The layer keeps its post-norm.
* ``HybridViTBlock`` wraps any timm ViT ``Block`` with timm's standard ``Attention`` (``norm1``,
  ``attn.qkv``, ``attn.q_norm``/``k_norm``, ``attn.norm``, ``attn.proj``, ``ls1``, ``norm2``, ``mlp``,
  ``ls2``): CLIP ViT-B/32 and ViT-L/14 alike (the patch size only matters to the embedding). The
  block keeps its pre-norm (``norm1`` is applied to the generated tokens too, as to any token
  entering the block).

Without extra tokens the wrapped layer's own ``forward`` runs (a plain encoder layer / ViT block).
Masked keys (padding, missing crops) get exactly zero attention weight. The masks are boolean (no
gradient), so the attention runs in ``F.scaled_dot_product_attention`` (``attention.attend``); the
weights are computed only when asked for (``return_attention``). The generated tokens are projected
to keys and values only (in the ViT block as well: their queries would be discarded), under the
profiler label ``hybrid extra keys``. A text layer may be handed the generated tokens at their own
width with the ``Linear`` that maps them in (``extra_proj``: ``visual_to_text`` at the demo's 128 ->
384); when it costs fewer multiply-adds, that map is composed into the key and value maps
(``W_k W_p``, once per call) instead of applied to every token (``folds_extra_projection``).

Anything else (DistilBERT's ``TransformerBlock``, ALBERT, GPT-2, a timm ``ResPostBlock`` or rotary
attention, ...) is a ``TypeError`` when it is wrapped.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from timm.models.vision_transformer import Block
from torch import nn
from transformers.models.bert.modeling_bert import BertLayer
from transformers.models.roberta.modeling_roberta import RobertaLayer
from transformers.models.xlm_roberta.modeling_xlm_roberta import XLMRobertaLayer

from bga_mner.models.attention import attend, compose_linear, merge_heads, split_heads
from bga_mner.models.backbones import SUPPORTED_TEXT, check_vit_block
from bga_mner.models.labels import label

# the transformers encoder layers HybridTextLayer wraps (one per supported text family)
TEXT_LAYER_TYPES: tuple[type[nn.Module], ...] = (BertLayer, RobertaLayer, XLMRobertaLayer)


def additive_mask(keep: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """(B, N) bool keep mask -> (B, 1, 1, N) additive mask (0 keep, -inf remove) for library layers."""
    return torch.zeros(keep.shape, dtype=dtype, device=keep.device).masked_fill(~keep, float("-inf"))[:, None, None]


class HybridTextLayer(nn.Module):
    """A pretrained BERT-family encoder layer whose self-attention can also attend to generated tokens.

    Args:
        layer: a transformers ``BertLayer``, ``RobertaLayer`` or ``XLMRobertaLayer`` (post-norm
            encoder layer, absolute positions, no cross-attention).

    Raises:
        TypeError: ``layer`` is of another class (DistilBERT, ALBERT, GPT-2, ...).
        ValueError: the layer is a decoder layer or its projections are not square.
    """

    def __init__(self, layer: nn.Module):
        super().__init__()
        if not isinstance(layer, TEXT_LAYER_TYPES):
            names = ", ".join(t.__name__ for t in TEXT_LAYER_TYPES)
            raise TypeError(f"text layer is a {type(layer).__name__}; the hybrid text layer wraps {names} "
                            f"({SUPPORTED_TEXT})")
        if layer.is_decoder or getattr(layer, "crossattention", None) is not None:
            raise ValueError(f"{type(layer).__name__} is a decoder layer; encoder layers only (no cross-attention)")
        sa = layer.attention.self
        d = layer.attention.output.dense.out_features
        for name in ("query", "key", "value"):
            proj = getattr(sa, name)
            if not isinstance(proj, nn.Linear) or proj.weight.shape != (d, d):
                raise ValueError(f"{type(layer).__name__}.attention.self.{name}: expected Linear({d}, {d}), got {proj}")
        if sa.num_attention_heads * sa.attention_head_size != d:
            raise ValueError(f"{type(layer).__name__}: {sa.num_attention_heads} heads x {sa.attention_head_size} "
                             f"!= hidden size {d}")
        self.layer = layer
        self.dim, self.heads = d, sa.num_attention_heads

    def folds_extra_projection(self, extra_proj: nn.Module, tokens: int) -> bool:
        """Whether composing ``extra_proj`` (m -> d) into the key and value maps (2 d^2 m once, then
        2 d m per token) costs fewer multiply-adds than mapping ``tokens`` tokens first (d m + 2 d^2 each)."""
        if not isinstance(extra_proj, nn.Linear):
            return False
        if torch.compiler.is_exporting():  # one graph for every batch size (ONNX): fold, the cheaper
            return True  # choice from a few tweets up (both give the same keys and values)
        m, d = extra_proj.in_features, self.dim
        return 2 * d * d * m + tokens * 2 * d * m < tokens * (d * m + 2 * d * d)

    def forward(self, hidden: torch.Tensor, keep: torch.Tensor, extra: torch.Tensor | None = None,
                extra_keep: torch.Tensor | None = None, return_attention: bool = False,
                extra_proj: nn.Module | None = None):
        """One layer.

        Args:
            hidden: (B, N, d) the branch's tokens; keep: (B, N) bool, real tokens.
            extra: (B, M, d) generated tokens of the other modality (None: the plain encoder layer),
                or (B, M, m) with ``extra_proj``.
            extra_keep: (B, M) bool, which extra tokens may be attended (default all).
            return_attention: also return the attention weights (B, h, N, N + M).
            extra_proj: the map of ``extra`` to the width d (an ``nn.Linear(m, d)`` or identity);
                None: ``extra`` is at width d.
        """
        if extra is None:
            assert not return_attention, "attention weights are only exposed for the hybrid path"
            return self.layer(hidden, attention_mask=additive_mask(keep, hidden.dtype))
        if extra_keep is None:
            extra_keep = torch.ones(extra.shape[:2], dtype=torch.bool, device=extra.device)
        sa = self.layer.attention.self
        q = split_heads(sa.query(hidden), self.heads)  # (B, h, N, dh)
        k, v = sa.key(hidden), sa.value(hidden)  # (B, N, d)
        with label("hybrid extra keys"):  # Eq. 8's [T W^K; V_hat W^K], [T W^V; V_hat W^V]
            fold = extra_proj is not None and self.folds_extra_projection(extra_proj, extra.shape[0] * extra.shape[1])
            if fold:
                (w_k, b_k), (w_v, b_v) = (compose_linear(m.weight, m.bias, extra_proj) for m in (sa.key, sa.value))
                k_x, v_x = F.linear(extra, w_k, b_k), F.linear(extra, w_v, b_v)  # (B, M, d)
            else:
                extra = extra if extra_proj is None else extra_proj(extra)  # (B, M, d)
                k_x, v_x = sa.key(extra), sa.value(extra)
            k = split_heads(torch.cat([k, k_x], dim=1), self.heads)  # (B, h, N + M, dh)
            v = split_heads(torch.cat([v, v_x], dim=1), self.heads)
        context, weights = attend(q, k, v, torch.cat([keep, extra_keep], 1), sa.scaling,
                                  sa.dropout.p, self.training, need_weights=return_attention)
        attn_out = self.layer.attention.output(merge_heads(context), hidden)  # dense, dropout, add & norm
        out = self.layer.feed_forward_chunk(attn_out)  # (B, N, d)
        return (out, weights) if return_attention else out


class HybridViTBlock(nn.Module):
    """A pretrained timm ViT ``Block`` (pre-norm) whose attention can also attend to generated tokens.

    Args:
        block: a timm ``vision_transformer.Block`` with timm's standard ``Attention`` (fused ``qkv``),
            of any ViT (patch 32 or 14, CLIP or original).

    Raises:
        TypeError: another block or attention class (``backbones.check_vit_block``).
        ValueError: gated attention or projections of unexpected shape.
    """

    def __init__(self, block: Block):
        super().__init__()
        check_vit_block(block)
        attn = block.attn
        d = block.norm1.normalized_shape[0]
        inner = attn.num_heads * attn.head_dim  # attn_dim: d unless attn_head_dim was set
        if not isinstance(attn.qkv, nn.Linear) or attn.qkv.weight.shape != (3 * inner, d):
            raise ValueError(f"Block.attn.qkv: expected Linear({d}, {3 * inner}), got {attn.qkv}")
        if attn.proj.weight.shape != (d, inner):
            raise ValueError(f"Block.attn.proj: expected Linear({inner}, {d}), got {attn.proj}")
        if getattr(attn, "gate", None) is not None:
            raise ValueError("gated timm attention (attn.gate) is not supported by the hybrid ViT block")
        self.block = block
        self.dim, self.heads = d, attn.num_heads

    def forward(self, x: torch.Tensor, keep: torch.Tensor, extra: torch.Tensor | None = None,
                extra_keep: torch.Tensor | None = None, return_attention: bool = False):
        """One block; arguments as in ``HybridTextLayer.forward`` (``x``: (B, Nv, d) visual tokens)."""
        b = self.block
        if extra is None:
            assert not return_attention, "attention weights are only exposed for the hybrid path"
            return b(x, attn_mask=additive_mask(keep, x.dtype))
        if extra_keep is None:
            extra_keep = torch.ones(extra.shape[:2], dtype=torch.bool, device=extra.device)
        attn = b.attn
        q, k, v = (split_heads(t, self.heads) for t in attn.qkv(b.norm1(x)).chunk(3, dim=-1))  # (B, h, N, dh)
        with label("hybrid extra keys"):  # keys and values of the generated tokens (no queries)
            inner = q.shape[1] * q.shape[-1]
            kv_x = F.linear(b.norm1(extra), attn.qkv.weight[inner:],
                            None if attn.qkv.bias is None else attn.qkv.bias[inner:])  # (B, M, 2 h dh)
            k_x, v_x = (split_heads(t, self.heads) for t in kv_x.chunk(2, dim=-1))  # (B, h, M, dh)
            k, v = torch.cat([k, k_x], dim=2), torch.cat([v, v_x], dim=2)  # (B, h, N + M, dh)
        q, k = attn.q_norm(q), attn.k_norm(k)  # queries: own tokens only
        context, weights = attend(q, k, v, torch.cat([keep, extra_keep], 1), attn.scale,
                                  attn.attn_drop.p, self.training, need_weights=return_attention)
        out = attn.proj_drop(attn.proj(attn.norm(merge_heads(context))))  # (B, N, d)
        x = x + b.drop_path1(b.ls1(out))
        x = x + b.drop_path2(b.ls2(b.mlp(b.norm2(x))))
        return (x, weights) if return_attention else x
