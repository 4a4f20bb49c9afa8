"""Input embedding of the visual branch (Sec. 3.2): a global image and its K object crops -> visual tokens.

``VisualEmbedding`` turns a global image and its K object crops into the visual tokens of Sec. 3.2:
the ViT's patch embedding on the global image (cls + pos embed: 50 tokens at 224 px for B/32, 257
for L/14) and on each crop (``data.crop_size`` px -> (crop_size / patch)^2 tokens), each crop with its
own learned position embedding initialised from the ViT's patch-grid position embedding resampled to
the crop grid; Nv = global tokens + K x crop tokens.

Crop side. The paper uses 128-px crops with patch 32: 4 x 4 = 16 tokens per crop (Nv = 50 + 16 K).
The side must be a multiple of the patch size, and 128 is not one of 14. For patch-14 models we use
**126 px** (``experiments/large``): the multiple of 14 nearest the paper's 128 px, so a crop keeps
the paper's pixel resolution (-1.6 %) and its size relative to the 224-px global image (9 / 16 of the
global grid against the paper's 4 / 7), i.e. 9 x 9 = 81 tokens per crop (Nv = 257 + 81 K = 500 for
K = 3). 112 px (8 x 8 = 64 tokens) would be cheaper but downsamples each object crop by 12 %.
"""

from __future__ import annotations

import torch
from timm.layers import resample_abs_pos_embed
from timm.models import VisionTransformer
from torch import nn

from bga_mner.models.backbones import check_visual_encoder


class VisualEmbedding(nn.Module):
    """Visual tokens of a global image and its K crops, through the ViT's own patch embedding.

    Args:
        vit: the timm ViT whose ``patch_embed``, ``cls_token``, ``pos_embed`` and ``norm_pre`` are reused.
        num_crops: K, the number of object crops per image.
        crop_size: side of a crop in pixels (a multiple of the patch size: 128 for patch 32, 126 for 14).
    """

    def __init__(self, vit: VisionTransformer, num_crops: int, crop_size: int):
        super().__init__()
        check_visual_encoder(vit, type(vit).__name__)
        patch = vit.patch_embed.patch_size[0]
        if crop_size % patch:
            nearest = max(patch, round(crop_size / patch) * patch)
            raise ValueError(f"crop_size {crop_size} is not a multiple of the patch size {patch} "
                             f"(data.crop_size={nearest} is the nearest one)")
        self.patch_embed = vit.patch_embed
        self.patch_embed.strict_img_size = False  # the same patch embedding also embeds the crops
        self.image_size = vit.patch_embed.img_size[0]
        self.cls_token, self.pos_embed = vit.cls_token, vit.pos_embed
        self.pos_drop, self.norm_pre = vit.pos_drop, vit.norm_pre
        self.num_crops, self.crop_size = num_crops, crop_size
        crop_grid = crop_size // patch  # 4 for 128 px / patch 32, 9 for 126 px / patch 14
        self.crop_tokens = crop_grid * crop_grid
        self.num_global_tokens = vit.pos_embed.shape[1]  # 1 + (G / patch)^2: 50 for B/32, 257 for L/14
        # one learned position embedding per crop, initialised from the patch-grid part resampled
        # (bicubic) from the global grid (7 x 7 or 16 x 16) to the crop grid
        with torch.no_grad():
            grid = resample_abs_pos_embed(vit.pos_embed[:, 1:], new_size=[crop_grid, crop_grid],
                                          old_size=list(vit.patch_embed.grid_size), num_prefix_tokens=0)
        self.crop_pos_embed = nn.Parameter(grid.repeat(num_crops, 1, 1).clone())  # (K, g*g, d)

    @property
    def num_tokens(self) -> int:
        """Nv = global tokens + K x crop tokens."""
        return self.num_global_tokens + self.num_crops * self.crop_tokens

    def token_mask(self, crop_mask: torch.Tensor) -> torch.Tensor:
        """(B, K) crop-present mask -> (B, Nv) bool mask of real visual tokens."""
        glob = crop_mask.new_ones(crop_mask.shape[0], self.num_global_tokens)
        return torch.cat([glob, crop_mask.repeat_interleave(self.crop_tokens, dim=1)], dim=1).bool()

    def _patches(self, pixels: torch.Tensor) -> torch.Tensor:
        """(n, 3, H, W) -> (n, H/p * W/p, d) patch tokens (dynamic-size ViTs return NHWC: flattened)."""
        x = self.patch_embed(pixels)
        return x.flatten(1, 2) if x.ndim == 4 else x

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
        glob = self._patches(image)  # (B, (G/p)^2, d): 49 for B/32, 256 for L/14
        glob = torch.cat([self.cls_token.expand(B, -1, -1), glob], dim=1) + self.pos_embed  # (B, 1 + (G/p)^2, d)
        crop = self._patches(crops.flatten(0, 1)).unflatten(0, (B, K))  # (B, K, g*g, d)
        crop = (crop + self.crop_pos_embed).flatten(1, 2)  # (B, K*g*g, d)
        tokens = torch.cat([glob, crop], dim=1)  # (B, Nv, d)
        return self.norm_pre(self.pos_drop(tokens))
