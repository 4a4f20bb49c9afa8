"""``bga-mner fit --config FILE [key=value ...]``: train, keep the best dev-F1 epoch, test it once.

Writes the run folder of docs/ARCHITECTURE.md: ``config.yaml``, ``checkpoints/best.ckpt``,
``checkpoints/inference.pt`` (image-free), ``predictions/test.conll``, ``results.json``, and the
CSV and W&B (offline unless ``WANDB_MODE=online``) logs.
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path
from typing import Any

import lightning as L
from lightning.pytorch.callbacks import Callback, ModelCheckpoint
from lightning.pytorch.loggers import CSVLogger, Logger, WandbLogger
from lightning.pytorch.utilities import rank_zero_only
from omegaconf import DictConfig, OmegaConf

from bga_mner.config import load_config
from bga_mner.data.conll import Tweet, write_conll
from bga_mner.inference import save_inference_checkpoint, scores_table
from bga_mner.run import build_results, git_commit, make_run_dir, model_name, save_config, write_json
from bga_mner.system import MNERSystem


class EpochTimer(Callback):
    """Wall-clock seconds of each training epoch (its training steps and its dev evaluation)."""

    def __init__(self) -> None:
        self.seconds: list[float] = []
        self._start = 0.0

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._start = time.perf_counter()

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.seconds.append(time.perf_counter() - self._start)

    @property
    def mean(self) -> float:
        return sum(self.seconds) / len(self.seconds) if self.seconds else 0.0


def wandb_tags(cfg: DictConfig) -> list[str]:
    """Data set, seed, profile, model and every switch that departs from the full model."""
    tags = [str(cfg.data.name), f"seed{cfg.seed}", str(cfg.run.profile), model_name(cfg)]
    bga = bool(cfg.model.use_mcg)  # the BGA switches mean nothing for BERT-CRF
    switches = {"no-scs": bga and not cfg.model.use_scs,
                "no-cycle": bga and not cfg.model.use_cycle,
                "inference-real-visual": bga and cfg.model.inference_visual == "real",
                "modality-missing": bool(cfg.data.modality_missing),
                "text-only-data": not cfg.data.use_images}
    tags += [name for name, on in switches.items() if on]
    if cfg.data.train_limit:
        tags.append(f"train-limit-{cfg.data.train_limit}")
    if cfg.data.test_name:
        tags.append(f"test-{cfg.data.test_name}")
    return sorted(set(tags) | {str(t) for t in cfg.logging.tags})


def make_loggers(cfg: DictConfig, run_dir: Path) -> list[Logger]:
    """CSV always; W&B unless ``logging.wandb=false`` (mode: env ``WANDB_MODE``, else config)."""
    loggers: list[Logger] = [CSVLogger(save_dir=run_dir, name="csv", version="")]
    if cfg.logging.wandb:
        config = OmegaConf.to_container(cfg, resolve=True)
        config["git_commit"] = cfg.run.get("git_commit") or git_commit()
        loggers.append(WandbLogger(
            name=str(cfg.run.name), save_dir=str(run_dir), project=str(cfg.logging.wandb_project),
            group=str(cfg.logging.group or cfg.run.experiment or cfg.data.name),
            tags=wandb_tags(cfg), config=config,
            mode=os.environ.get("WANDB_MODE") or str(cfg.logging.wandb_mode)))
    return loggers


def build_datamodule(cfg: DictConfig, tokenizer: Any, run_dir: Path | None = None) -> L.LightningDataModule:
    """The data module of a config (``data:`` with the ``paths:`` it resolves against)."""
    from bga_mner.data.datamodule import MNERDataModule

    return MNERDataModule.from_config(cfg, tokenizer, run_dir=run_dir)


def skip_unused_images(cfg: DictConfig) -> None:
    """BERT-CRF (``model.use_mcg=false``) never looks at an image: set ``data.use_images=false`` so
    that its runs read none (the saved config.yaml then says so)."""
    if not cfg.model.use_mcg and cfg.data.use_images:
        cfg.data.use_images = False


def trainer_kwargs(cfg: DictConfig) -> dict:
    """``L.Trainer`` keyword arguments from the ``trainer:`` section."""
    return dict(OmegaConf.to_container(cfg.trainer, resolve=True))


# Under ``strategy="ddp"`` Lightning starts ranks > 0 by re-running this command; they inherit the
# environment, so the run name chosen by rank 0 (timestamped by default) travels in it.
RUN_NAME_ENV = "BGA_MNER_RUN_NAME"


def run_fit(cfg: DictConfig) -> dict:
    """Train and test one run; returns ``{"results", "run_dir", "results_path", "wandb_dir"}``.

    Under DDP every process trains and tests its share; only rank 0 writes the run's files
    (``results`` and the paths are then None on the other ranks).
    """
    L.seed_everything(int(cfg.seed), workers=True)
    cfg.run.git_commit = git_commit()  # the code the run starts from (saved in config.yaml too)
    skip_unused_images(cfg)
    if not cfg.run.name and os.environ.get(RUN_NAME_ENV):
        cfg.run.name = os.environ[RUN_NAME_ENV]
    run_dir = make_run_dir(cfg)
    os.environ[RUN_NAME_ENV] = str(cfg.run.name)  # for the DDP processes started by trainer.fit
    try:
        return _train_and_test(cfg, run_dir)
    finally:
        os.environ.pop(RUN_NAME_ENV, None)


def _train_and_test(cfg: DictConfig, run_dir: Path) -> dict:
    from bga_mner.models.backbones import load_tokenizer

    if rank_zero_only.rank == 0:
        save_config(cfg, run_dir)
    tokenizer = load_tokenizer(cfg.model.text_encoder)
    datamodule = build_datamodule(cfg, tokenizer, run_dir)
    system = MNERSystem(cfg)
    checkpoint = ModelCheckpoint(dirpath=run_dir / "checkpoints", filename="best", monitor="val/f1",
                                 mode="max", save_top_k=1, auto_insert_metric_name=False,
                                 enable_version_counter=False)  # always best.ckpt
    timer = EpochTimer()
    loggers = make_loggers(cfg, run_dir)
    trainer = L.Trainer(**trainer_kwargs(cfg), default_root_dir=run_dir, logger=loggers,
                        callbacks=[checkpoint, timer])
    trainer.fit(system, datamodule=datamodule)
    if not checkpoint.best_model_path:
        raise RuntimeError(f"{run_dir}: no checkpoint was saved (did validation run?)")
    best = system.best_validation()
    # system.test_predictions: every process's tweets, gathered (MNERSystem.on_test_epoch_end)
    trainer.test(system, datamodule=datamodule, ckpt_path=checkpoint.best_model_path, verbose=False)
    if not trainer.is_global_zero:
        return {"results": None, "run_dir": run_dir, "results_path": None, "wandb_dir": None}

    predictions = run_dir / "predictions" / "test.conll"
    predictions.parent.mkdir(exist_ok=True)
    write_conll(predictions, [Tweet(i, list(w), list(t)) for i, w, t in system.test_predictions])
    save_inference_checkpoint(system, run_dir / "checkpoints" / "inference.pt")
    results = build_results(
        cfg, best_epoch=best["epoch"], dev=best["scores"], test=system.test_scores,
        seconds_per_epoch=timer.mean, truncated=getattr(datamodule, "truncated_counts", {}),
        missing_images=getattr(datamodule, "missing_image_counts", {}))
    results_path = write_json(run_dir / "results.json", results)

    wandb_dir = None
    for logger in loggers:
        if isinstance(logger, WandbLogger):
            logger.experiment.summary.update({"best_epoch": best["epoch"],
                                              "results_json": str(results_path)})
            wandb_dir = Path(logger.experiment.dir).parent
            logger.experiment.finish()
    return {"results": results, "run_dir": run_dir, "results_path": results_path,
            "wandb_dir": wandb_dir}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", help="experiment config.yaml (overrides of conf/base.yaml)")
    parser.add_argument("overrides", nargs="*", metavar="key=value",
                        help="config overrides, e.g. data.name=twitter2017 seed=43 run.profile=smoke")


def main(args: argparse.Namespace) -> int:
    cfg = load_config(args.config, args.overrides)
    out = run_fit(cfg)
    if out["results"] is None:  # a DDP rank > 0: rank 0 prints
        return 0
    test = out["results"]["test"]
    print(f"\ntest ({out['results']['test_dataset']}), best dev epoch {out['results']['best_epoch']}:")
    print(scores_table(test))
    print(f"results: {out['results_path']}")
    print(f"W&B run: {out['wandb_dir'] or 'off (logging.wandb=false)'}")
    print(f"test F1: {test['overall']['f1']:.2f}")
    return 0
