"""``bga-mner test --ckpt CKPT [--config FILE] [key=value ...] [--json]``: P/R/F1 on a test set.

The checkpoint (``best.ckpt`` or the image-free ``inference.pt``) carries its config; ``--config``
and ``key=value`` are merged over it, e.g. ``data.test_name=twitter2015`` (cross-domain) or
``data.modality_missing=true``. Evaluation is image-free unless ``model.inference_visual=real``.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import lightning as L
from omegaconf import DictConfig, OmegaConf

from bga_mner.data.conll import Tweet, write_conll
from bga_mner.inference import build_system, read_checkpoint, scores_table, wants_real_visual


def evaluate(ckpt_path: str | Path, overrides: DictConfig | None = None,
             predictions: str | Path | None = None) -> dict:
    """Span P/R/F1 (percent) of a checkpoint on the test split of its (overridden) config.

    Args:
        ckpt_path: a Lightning checkpoint or an ``inference.pt``.
        overrides: config merged over the checkpoint's.
        predictions: if given, write the predicted tags there as CoNLL.
    """
    from bga_mner.commands.fit import build_datamodule
    from bga_mner.models.backbones import load_tokenizer

    system = build_system(read_checkpoint(ckpt_path), overrides)
    cfg = system.cfg.copy()
    if not wants_real_visual(cfg):
        cfg.data.use_images = False  # image-free inference: no image needs reading
    L.seed_everything(int(cfg.seed), workers=True, verbose=False)
    datamodule = build_datamodule(cfg, load_tokenizer(cfg.model.text_encoder))
    trainer = L.Trainer(accelerator=cfg.trainer.accelerator, devices=cfg.trainer.devices,
                        precision=cfg.trainer.precision, logger=False, enable_checkpointing=False,
                        enable_progress_bar=cfg.trainer.enable_progress_bar,
                        limit_test_batches=cfg.trainer.limit_test_batches, enable_model_summary=False)
    trainer.test(system, datamodule=datamodule, verbose=False)
    if predictions is not None:
        Path(predictions).parent.mkdir(parents=True, exist_ok=True)
        write_conll(predictions, [Tweet(i, list(w), list(t)) for i, w, t in system.test_predictions])
    return system.test_scores


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--ckpt", required=True, help="checkpoints/best.ckpt or checkpoints/inference.pt")
    parser.add_argument("--config", help="a config file merged over the checkpoint's config")
    parser.add_argument("--json", action="store_true", help="print the scores as JSON")
    parser.add_argument("--predictions", help="also write the predictions to this CoNLL file")
    parser.add_argument("overrides", nargs="*", metavar="key=value", help="config overrides")


def main(args: argparse.Namespace) -> int:
    overrides = OmegaConf.load(args.config) if args.config else OmegaConf.create()
    overrides = OmegaConf.merge(overrides, OmegaConf.from_dotlist(list(args.overrides)))
    scores = evaluate(args.ckpt, overrides, args.predictions)
    print(json.dumps(scores, indent=2) if args.json else scores_table(scores))
    return 0
