"""``bga-mner params``: parameter counts by component at train and inference time (the paper's Table 5).

Encoders are built with random init (``pretrained=False``): nothing is downloaded, and known
configs (``bert-base-uncased``) need no hub. Inference time is image-free inference: no ViT, no
visual samplers, no image->text generator, no crop position embeddings.
"""

from __future__ import annotations

import argparse
import json

COMPONENT_ORDER = ("text encoder", "visual encoder", "text samplers", "visual samplers", "t2v generator",
                   "v2t generator", "crop pos/projections", "CRF head")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", default=None, help="experiment config.yaml (default: the config defaults)")
    parser.add_argument("overrides", nargs="*", help="key=value config overrides")
    parser.add_argument("--json", action="store_true", help="print the counts as JSON")


def count_parameters(cfg) -> dict:
    """``{"train": {component: n, ..., "total": n}, "inference": {...}}`` for a merged config."""
    from bga_mner.data.conll import LABELS
    from bga_mner.models import build_model

    model = build_model(cfg.model, len(LABELS), pretrained=False)
    result = {}
    for stage, inference in (("train", False), ("inference", True)):
        counts = model.parameter_counts(inference=inference)
        row = {name: counts.get(name, 0) for name in COMPONENT_ORDER}
        row["total"] = sum(row.values())
        result[stage] = row
    return result


def main(args: argparse.Namespace) -> int:
    from bga_mner.config import load_config

    cfg = load_config(args.config, args.overrides)
    counts = count_parameters(cfg)
    if args.json:
        print(json.dumps({"text_encoder": cfg.model.text_encoder, "visual_encoder": cfg.model.visual_encoder,
                          **counts}, indent=2))
        return 0
    print(f"text encoder {cfg.model.text_encoder}, visual encoder {cfg.model.visual_encoder} "
          f"(use_mcg={cfg.model.use_mcg}, use_scs={cfg.model.use_scs})")
    print(f"| {'component':<22} | {'train':>14} | {'inference':>14} |")
    print(f"|{'-' * 24}|{'-' * 16}|{'-' * 16}|")
    for name in (*COMPONENT_ORDER, "total"):
        train, inf = counts["train"][name], counts["inference"][name]
        print(f"| {name:<22} | {train:>14,} | {inf:>14,} |")
    print(f"total: {counts['train']['total'] / 1e6:.1f}M to train, "
          f"{counts['inference']['total'] / 1e6:.1f}M at image-free inference")
    return 0
