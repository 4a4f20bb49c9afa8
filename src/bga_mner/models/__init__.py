"""The network of Sec. 3: ``build_model(cfg.model, num_labels)`` -> ``BGAMNER`` (or BERT-CRF with use_mcg=false)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from bga_mner.models.backbones import describe_visual_encoder, load_text_encoder, load_visual_encoder
from bga_mner.models.bga_mner import BGAMNER, BGAOutput

__all__ = ["BGAMNER", "BGAOutput", "build_model"]


def build_model(model_cfg: Mapping[str, Any], num_labels: int, build_visual: bool = True,
                pretrained: bool | None = None) -> BGAMNER:
    """Build the network from the ``model:`` section of the config.

    Args:
        model_cfg: ``cfg.model`` (its ``max_length``/``num_objects``/``crop_size`` interpolate ``data:``).
        num_labels: number of BIO labels.
        build_visual: False builds the image-free inference network only (no visual weights needed:
            load ``BGAMNER.inference_state_dict()`` into it).
        pretrained: None follows ``text_pretrained``/``visual_pretrained``; False builds both encoders
            with random init (when a checkpoint's state dict is loaded next).
    """
    cfg = dict(model_cfg)
    use_mcg = bool(cfg.get("use_mcg", True))
    text_pre = bool(cfg.get("text_pretrained", True)) if pretrained is None else pretrained
    vis_pre = bool(cfg.get("visual_pretrained", True)) if pretrained is None else pretrained
    text = load_text_encoder(cfg["text_encoder"], pretrained=text_pre)
    visual, spec = None, None
    if use_mcg and build_visual:
        checkpoint = cfg.get("visual_checkpoint") if vis_pre else None
        visual = load_visual_encoder(cfg["visual_encoder"], pretrained=vis_pre, checkpoint=checkpoint)
    elif use_mcg:
        spec = describe_visual_encoder(cfg["visual_encoder"])
    return BGAMNER(
        text, visual, num_labels, use_mcg=use_mcg, use_scs=bool(cfg.get("use_scs", True)),
        use_cycle=bool(cfg.get("use_cycle", True)),
        inference_visual=str(cfg.get("inference_visual", "generated")), build_visual=build_visual,
        visual_spec=spec, max_length=int(cfg.get("max_length", 128)),
        num_objects=int(cfg.get("num_objects", 3)), crop_size=int(cfg.get("crop_size", 128)),
        generator_layers=int(cfg.get("generator_layers", 1)),
        generator_ffn_dim=int(cfg.get("generator_ffn_dim", 2048)),
        sampler_hidden_ratio=float(cfg.get("sampler_hidden_ratio", 0.5)),
        gumbel_tau=float(cfg.get("gumbel_tau", 1.0)), dropout=float(cfg.get("dropout", 0.1)),
        detach_targets=bool(cfg.get("detach_targets", True)),
        keep_ratio=float(cfg.get("keep_ratio", 0.7)), ratio_weight=float(cfg.get("ratio_weight", 10.0)),
    )
