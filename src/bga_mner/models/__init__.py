"""The network of Sec. 3: ``build_model(model_cfg, num_labels)`` -> ``BGAMNER`` (BERT-CRF with use_mcg=false)."""

from __future__ import annotations

from typing import Mapping

import torch
from omegaconf import DictConfig, OmegaConf

from bga_mner.config import ModelConfig
from bga_mner.models.backbones import describe_visual_encoder, load_text_encoder, load_visual_encoder
from bga_mner.models.bga_mner import BGAMNER, BGAOutput, LayerLosses

__all__ = ["BGAMNER", "BGAOutput", "LayerLosses", "build_model", "load_network_weights", "strip_prefix"]


def build_model(model_cfg: ModelConfig | DictConfig, num_labels: int, build_visual: bool = True,
                pretrained: bool | None = None) -> BGAMNER:
    """Build the network from the ``model:`` section of the config.

    Args:
        model_cfg: a ``ModelConfig`` (or the merged ``cfg.model`` node, converted to one; its
            ``max_length``/``num_objects``/``crop_size`` interpolate ``data:``).
        num_labels: number of BIO labels.
        build_visual: False builds the image-free inference network only (no visual weights needed:
            load ``BGAMNER.inference_state_dict()`` into it).
        pretrained: None follows ``text_pretrained``/``visual_pretrained``; False builds both encoders
            with random init (when a checkpoint's state dict is loaded next).
    """
    cfg = model_cfg if isinstance(model_cfg, ModelConfig) else OmegaConf.to_object(model_cfg)
    text_pre = cfg.text_pretrained if pretrained is None else pretrained
    vis_pre = cfg.visual_pretrained if pretrained is None else pretrained
    text = load_text_encoder(cfg.text_encoder, pretrained=text_pre)
    visual, spec = None, None
    if cfg.use_mcg and build_visual:
        checkpoint = cfg.visual_checkpoint if vis_pre else None
        visual = load_visual_encoder(cfg.visual_encoder, pretrained=vis_pre, checkpoint=checkpoint)
    elif cfg.use_mcg:
        spec = describe_visual_encoder(cfg.visual_encoder)
    return BGAMNER(text, visual, num_labels, cfg, build_visual=build_visual, visual_spec=spec)


def load_network_weights(model: BGAMNER, state_dict: Mapping[str, torch.Tensor]) -> None:
    """Load a network state dict into ``model``, keeping only the keys it has (an image-free
    network takes the text-side weights of a full checkpoint); any of its own keys missing from
    ``state_dict`` is a ``KeyError``.

    Args:
        model: the network (``build_model``).
        state_dict: its weights (keys without Lightning's ``model.`` prefix).
    """
    own = model.state_dict()
    wanted = {k: v for k, v in state_dict.items() if k in own}
    missing = sorted(set(own) - set(wanted))
    if missing:
        raise KeyError(f"checkpoint lacks {len(missing)} weights of the network, e.g. {missing[:5]}")
    model.load_state_dict(wanted, strict=True)


def strip_prefix(state_dict: Mapping[str, torch.Tensor], prefix: str = "model.") -> dict:
    """The network's weights from a Lightning state dict (``model.`` keys, prefix removed)."""
    return {k[len(prefix):]: v for k, v in state_dict.items() if k.startswith(prefix)}
