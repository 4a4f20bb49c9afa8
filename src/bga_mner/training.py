"""Training one run: train, keep the best dev-F1 epoch, test it once, write the run folder.

The run folder is docs/ARCHITECTURE.md's: ``config.yaml``, ``checkpoints/best.ckpt``,
``checkpoints/inference.pt`` (image-free), ``predictions/test.conll``, ``results.json``, and the
CSV and W&B (offline unless ``WANDB_MODE=online``) logs.

The run owns its folder (``run.claim_run_dir``: a lock taken before any work) and keeps
``checkpoints/last.ckpt`` at every epoch end while it is unfinished. ``run_fit(cfg, resume=True)``
(``bga-mner fit --resume``) continues an unfinished folder from it: weights, optimizer, scheduler,
loops and callbacks (Lightning), the random streams and the train loader's shuffling generator
(``build.ResumeState``), the dev history (``MNERSystem.on_save_checkpoint``) and the epoch times,
so the resumed run ends where the uninterrupted one would (same seed, CPU): same results, same
predictions. The logged rows of the lost partial epoch are dropped from ``csv/metrics.csv``.
Every checkpoint is read with ``weights_only=True`` (Lightning's resume and test included), and
the run's own files are found from its folder: a moved run folder resumes from its own
``best.ckpt`` (``build.RunCheckpoint``).

A signal (SIGTERM, SIGINT: ``errors.Interrupted``) stops the run where it is; ``last.ckpt`` stays
the end of the last finished epoch, the lock is released, and the exception names the run
(``run_name``) so that the command can say how to resume.
"""

from __future__ import annotations

import csv
import errno
import os
from pathlib import Path

import lightning as L
from lightning.pytorch.loggers import CSVLogger, Logger, WandbLogger
from lightning.pytorch.utilities import rank_zero_only
from omegaconf import DictConfig

from bga_mner.build import (EpochTimer, ResumeState, best_checkpoint, build_datamodule, build_trainer,
                            check_backbones_available, compile_network, decide_images, make_loggers,
                            wandb_dirs)
from bga_mner.devices import check_devices
from bga_mner.data.conll import Tweet, write_conll
from bga_mner.errors import Interrupted
from bga_mner.inference import CheckpointError, load_checkpoint_file, save_inference_checkpoint
from bga_mner.metrics import TWEET_COUNTS_FILE, tweet_counts_record
from bga_mner.atomic import atomic_write
from bga_mner.run import (LAST_CHECKPOINT, build_results, claim_run_dir, git_commit, resume_config, save_config,
                          write_json)
from bga_mner.system import MNERSystem

# Under ``strategy="ddp"`` Lightning starts ranks > 0 by re-running this command; they inherit the
# environment, so the run name chosen by rank 0 (timestamped by default) travels in it.
RUN_NAME_ENV = "BGA_MNER_RUN_NAME"


def run_fit(cfg: DictConfig, resume: bool = False) -> dict:
    """Train and test one run; returns ``{"results", "run_dir", "results_path", "wandb_dir"}``.

    Under DDP every process trains and tests its share; only rank 0 owns the folder (takes its
    lock) and writes the run's files (``results`` and the paths are then None on the other ranks).

    Args:
        cfg: the merged config (``config.load_config``).
        resume: continue the unfinished folder of ``run.name`` from its ``checkpoints/last.ckpt``
            (from the start when it has none yet, or when the folder is new). The command's config
            must be the run's (``run.resume_config``). Without it an unfinished folder is refused.

    Raises:
        run_lock.RunBusyError: another live run holds the folder (before any work).
        FileExistsError: the folder holds a finished run; or an unfinished one and not ``resume``.
        run_lock.NotWritableError: the runs folder cannot be written.
        UserError: a device the config names is not on this machine (before the folder exists);
            ``inference.CheckpointError``: an unreadable ``last.ckpt`` to resume from.
        errors.Interrupted: a signal stopped the run (its ``run_name`` set).
        OSError: a full disk or a read-only file system, naming the file, or the run folder
            where the writer (a logger) did not say which file.
    """
    check_backbones_available(cfg)  # a hub id that cannot be had: one line, before any run folder
    L.seed_everything(int(cfg.seed), workers=True)
    check_devices(cfg)  # before the run folder exists: a refused run leaves nothing behind
    cfg = decide_images(cfg, "fit")
    cfg.run.git_commit = git_commit()  # the code the run starts from (saved in config.yaml too)
    if not cfg.run.name and os.environ.get(RUN_NAME_ENV):
        cfg.run.name = os.environ[RUN_NAME_ENV]
    rank_zero = rank_zero_only.rank == 0
    if rank_zero:  # one owner per folder, from here to the end
        lock = claim_run_dir(cfg, resume=resume)
        run_dir = lock.run_dir
    else:  # a DDP process started by rank 0 inside trainer.fit: rank 0 owns the folder
        lock, run_dir = None, Path(cfg.paths.runs_dir) / str(cfg.run.name)
    os.environ[RUN_NAME_ENV] = str(cfg.run.name)  # for the DDP processes started by trainer.fit
    try:
        if resume and rank_zero:
            cfg = resume_config(cfg, run_dir)
        last = run_dir / LAST_CHECKPOINT
        with wandb_dirs(run_dir):  # W&B writes under the run folder only
            return _train_and_test(cfg, run_dir, last if resume and last.is_file() else None)
    except Interrupted as err:
        err.run_name = str(cfg.run.name)
        raise
    except OSError as err:  # a logger's write: name the run folder at least
        if err.filename is None and err.errno in (errno.ENOSPC, errno.EDQUOT, errno.EROFS):
            raise OSError(err.errno, err.strerror, str(run_dir)) from err
        raise
    finally:
        os.environ.pop(RUN_NAME_ENV, None)
        if lock is not None:
            lock.release()


def resume_epoch(ckpt: Path) -> int:
    """The last finished epoch that ``ckpt`` (a run's ``last.ckpt``) holds, read with
    ``weights_only=True`` before any work: an unreadable file is one line, not a traceback after
    the data and the model were built.

    Raises:
        inference.CheckpointError: not a checkpoint of a run, truncated or damaged.
    """
    hint = "; delete it, and `bga-mner fit --resume` starts the run over"
    blob = load_checkpoint_file(ckpt, hint=hint, mmap=True)
    if not isinstance(blob.get("epoch"), int) or "state_dict" not in blob:
        raise CheckpointError(f"{ckpt}: not a Lightning checkpoint of a run (no epoch or weights){hint}")
    return int(blob["epoch"])


def _logged_rows(run_dir: Path, epoch: int) -> tuple[list[str], list[dict]] | None:
    """Header and rows of the interrupted run's ``csv/metrics.csv`` up to the checkpoint's epoch
    (the rows of the lost partial epoch are logged again)."""
    path = run_dir / "csv" / "metrics.csv"
    if not path.is_file():
        return None
    with open(path, newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f)
        rows = [row for row in reader if row.get("epoch") and int(float(row["epoch"])) <= epoch]
        header = list(reader.fieldnames or [])
    return header, rows


def _restore_logged_rows(loggers: list[Logger], logged: tuple[list[str], list[dict]]) -> None:
    """Put the kept rows back: Lightning's CSV writer removes an existing ``metrics.csv`` when it
    is created; it then appends under the same header (rewritten if new keys come)."""
    header, rows = logged
    for logger in loggers:
        if isinstance(logger, CSVLogger):
            writer = logger.experiment  # created now (removes the old file)

            def write(tmp: Path) -> None:
                with open(tmp, "w", newline="", encoding="utf-8") as f:
                    out = csv.DictWriter(f, fieldnames=header)
                    out.writeheader()
                    out.writerows(rows)

            atomic_write(writer.metrics_file_path, write)
            writer.metrics_keys = list(header)


def _train_and_test(cfg: DictConfig, run_dir: Path, ckpt: Path | None = None) -> dict:
    rank_zero = rank_zero_only.rank == 0
    epoch = resume_epoch(ckpt) if ckpt is not None else None  # before any work
    if rank_zero:
        save_config(cfg, run_dir)
    datamodule = build_datamodule(cfg, run_dir)
    system = MNERSystem(cfg)
    compile_network(system.model, cfg)  # trainer.compile: the network's forward, in place
    checkpoint, timer = best_checkpoint(run_dir), EpochTimer()
    logged = _logged_rows(run_dir, epoch) if epoch is not None and rank_zero else None
    loggers = make_loggers(cfg, run_dir)
    if logged is not None:
        _restore_logged_rows(loggers, logged)
    trainer = build_trainer(cfg, default_root_dir=run_dir, logger=loggers,
                            callbacks=[checkpoint, timer, ResumeState()])
    # weights_only=True: checkpoints hold tensors and plain containers only (never unpickle code)
    trainer.fit(system, datamodule=datamodule, ckpt_path=ckpt, weights_only=True)
    if not checkpoint.best_model_path:
        raise RuntimeError(f"{run_dir}: no checkpoint was saved (did validation run?)")
    best = system.best_validation()
    # system.test_predictions: every process's tweets, gathered (MNERSystem.on_test_epoch_end)
    trainer.test(system, datamodule=datamodule, ckpt_path=checkpoint.best_model_path, verbose=False,
                 weights_only=True)
    if not trainer.is_global_zero:
        return {"results": None, "run_dir": run_dir, "results_path": None, "wandb_dir": None}

    tweets = [Tweet(i, list(w), list(t)) for i, w, t in system.test_predictions]
    atomic_write(run_dir / "predictions" / "test.conll", lambda tmp: write_conll(tmp, tweets))
    write_json(run_dir / TWEET_COUNTS_FILE, tweet_counts_record(datamodule.datasets["test"].tweets, tweets))
    save_inference_checkpoint(system, run_dir / "checkpoints" / "inference.pt")
    results = build_results(
        cfg, best_epoch=best["epoch"], dev=best["scores"], test=system.test_scores,
        seconds_per_epoch=timer.mean, truncated=datamodule.truncated_counts,
        missing_images=datamodule.missing_image_counts, image_counts=datamodule.image_counts,
        object_source=datamodule.object_source, label_versions=datamodule.label_versions)
    results_path = write_json(run_dir / "results.json", results)
    (run_dir / LAST_CHECKPOINT).unlink(missing_ok=True)  # finished: nothing left to resume

    wandb_dir = None
    for logger in loggers:
        if isinstance(logger, WandbLogger):
            logger.experiment.summary.update({"best_epoch": best["epoch"],
                                              "results_json": str(results_path)})
            wandb_dir = Path(logger.experiment.dir).parent
            logger.experiment.finish()
    return {"results": results, "run_dir": run_dir, "results_path": results_path,
            "wandb_dir": wandb_dir}
