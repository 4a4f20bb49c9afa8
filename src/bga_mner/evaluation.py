"""Evaluating a checkpoint on a test set, and writing that evaluation as a run folder.

``evaluate`` scores a checkpoint (``best.ckpt`` or the image-free ``inference.pt``) on the test split
of its config with overrides merged over it, e.g. ``data.test_name=twitter2015`` (cross-domain),
``data.modality_missing=true`` (Table 7) or ``model.inference_visual=real`` (Table 4). Evaluation is
image-free unless ``model.inference_visual=real``.

``write_evaluation_run`` makes the evaluation a run of its own, without retraining (Tables 4 and 7
score the trained BGA-MNER runs this way): ``config.yaml`` (the merged config),
``predictions/test.conll`` and a ``results.json`` of the usual schema whose ``best_epoch``, ``dev``
and ``seconds_per_epoch`` are the source run's, plus ``"evaluated_from"`` (the source run folder,
or the checkpoint, relative to the evaluation's folder: a runs folder moved as a whole keeps it
true). The command holds the
folder's lock from before the evaluation to the end (:func:`claim_evaluation_dir`); with
``replace`` an earlier evaluation in the folder is replaced (the make targets redo an evaluation
this way when its trained run was redone), never a trained run.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import lightning as L
from lightning.pytorch.utilities import rank_zero_only
from omegaconf import DictConfig

from bga_mner.build import build_datamodule, build_trainer, decide_images
from bga_mner.devices import check_devices
from bga_mner.data.conll import Tweet, write_conll
from bga_mner.inference import build_system, read_checkpoint
from bga_mner.metrics import TWEET_COUNTS_FILE, tweet_counts_record
from bga_mner.atomic import atomic_write
from bga_mner.run import RESULTS_FILE, build_results, create_dir, git_commit, make_run_dir, save_config, write_json
from bga_mner.run_lock import RunLock


@dataclass
class Evaluation:
    """What :func:`evaluate` measured.

    Attributes:
        config: the evaluated config (the checkpoint's with the overrides merged).
        scores: span P/R/F1 in percent, overall and per type.
        predictions: the predicted tweets, in test-file order (every process's under DDP).
        truncated: tweets cut to ``data.max_length`` per split.
        missing_images: tweets without image per split (None: images not read).
        image_counts: per split, the images' ``ImageCounts`` (missing and unreadable apart, boxes
            clipped and dropped; None: images not read).
        object_source: where the crops came from (None: images not read).
        label_versions: each split's label version (``data.label_versions``).
        is_global_zero: False on DDP ranks > 0, which must not write or print.
        tweet_counts: per-tweet span counts of the predictions (``metrics.tweet_counts_record``),
            written as ``predictions/test_counts.json`` for the report's statistics; None: not written.
    """

    config: DictConfig
    scores: dict[str, dict[str, float]]
    predictions: list[Tweet]
    truncated: dict[str, int]
    missing_images: dict[str, int | None]
    image_counts: dict[str, Any]
    is_global_zero: bool
    object_source: str | None = None
    label_versions: dict[str, str] | None = None
    tweet_counts: dict[str, Any] | None = None


def evaluate(ckpt_path: str | Path, overrides: DictConfig | None = None) -> Evaluation:
    """Score a checkpoint on the test split of its (overridden) config.

    The Trainer takes the config's ``trainer:`` settings (accelerator, devices, strategy,
    num_nodes, precision, ...), so a multi-process test splits the test set across processes.

    Args:
        ckpt_path: a Lightning checkpoint or an ``inference.pt``.
        overrides: config merged over the checkpoint's.
    """
    system = build_system(read_checkpoint(ckpt_path), overrides)
    cfg = decide_images(system.cfg, "test")  # image-free unless model.inference_visual=real
    check_devices(cfg)
    L.seed_everything(int(cfg.seed), workers=True, verbose=False)
    datamodule = build_datamodule(cfg)
    trainer = build_trainer(cfg, logger=False, enable_checkpointing=False, enable_model_summary=False)
    trainer.test(system, datamodule=datamodule, verbose=False)
    predictions = [Tweet(i, list(w), list(t)) for i, w, t in system.test_predictions]
    return Evaluation(config=system.cfg,
                      scores=system.test_scores,
                      predictions=predictions,
                      truncated=dict(datamodule.truncated_counts),
                      missing_images=dict(datamodule.missing_image_counts),
                      image_counts=dict(datamodule.image_counts),
                      is_global_zero=trainer.is_global_zero,
                      object_source=datamodule.object_source,
                      label_versions=dict(datamodule.label_versions),
                      tweet_counts=tweet_counts_record(datamodule.datasets["test"].tweets, predictions))


def source_run(ckpt_path: str | Path) -> tuple[Path | None, dict[str, Any]]:
    """The run folder a checkpoint was saved in (``<run>/checkpoints/<file>``) and its results,
    or ``(None, {})`` for a checkpoint outside a finished run folder."""
    run_dir = Path(ckpt_path).resolve().parent.parent
    results = run_dir / RESULTS_FILE
    if not results.is_file():
        return None, {}
    return run_dir, json.loads(results.read_text(encoding="utf-8"))


def _check_evaluation_dir(out: Path, replace: bool) -> None:
    """Refuse ``out`` unless it is new, an unfinished evaluation, or (``replace``) a finished one."""
    results = out / RESULTS_FILE
    if results.exists():
        if not replace:
            raise FileExistsError(f"{out}: already holds a finished run ({RESULTS_FILE}); choose "
                                  "another --out, delete the folder, or pass --replace")
        try:
            evaluated = "evaluated_from" in json.loads(results.read_text(encoding="utf-8"))
        except ValueError:
            evaluated = False
        if not evaluated:
            raise FileExistsError(f"{out}: holds a trained run, not an evaluation (bga-mner test "
                                  "--out); --replace replaces evaluation runs only")
    elif (out / "checkpoints").exists():
        raise FileExistsError(f"{out}: holds an unfinished trained run (checkpoints/); an "
                              "evaluation goes to another --out")


def claim_evaluation_dir(out: str | Path, replace: bool = False) -> RunLock | None:
    """Take the folder of an evaluation run before the evaluation: create it and lock it.

    Refused: a folder in use by a live run (``run_lock.RunBusyError``); one holding a finished run
    unless ``replace`` and it is an evaluation (``FileExistsError``); one holding a trained run's
    checkpoints. Returns the held lock, or None on DDP ranks > 0 (rank 0 owns the folder).
    """
    out = Path(out)
    if rank_zero_only.rank != 0:
        return None
    _check_evaluation_dir(out, replace)
    lock = RunLock(create_dir(out)).acquire()
    try:
        _check_evaluation_dir(out, replace)  # as it is now that we own it
    except BaseException:
        lock.release()
        raise
    return lock


def write_evaluation_run(evaluation: Evaluation, ckpt_path: str | Path, out: str | Path,
                         experiment: str | None = None, replace: bool = False) -> Path:
    """Write ``out`` as a run folder of the evaluation: ``config.yaml``, ``results.json``,
    ``predictions/test.conll`` and ``predictions/test_counts.json``, each atomically,
    ``results.json`` last. Returns the results path. The caller holds the folder
    (:func:`claim_evaluation_dir`).

    Args:
        evaluation: from :func:`evaluate`.
        ckpt_path: the evaluated checkpoint; its run folder's ``results.json`` gives ``dev``,
            ``best_epoch`` and ``seconds_per_epoch`` (null when it has none).
        out: the new run folder (refused if it already holds a ``results.json``, unless
            ``replace``).
        experiment: ``run.experiment`` of the new run (default: the override's, else the source's).
        replace: replace the evaluation run that ``out`` holds: its ``results.json`` goes first,
            so that until the new one is written the folder is an unfinished run, never a mix
            that looks finished. A trained run is never replaced.
    """
    out = Path(out)
    _check_evaluation_dir(out, replace)
    if replace:
        (out / RESULTS_FILE).unlink(missing_ok=True)
    cfg = evaluation.config.copy()
    cfg.paths.runs_dir, cfg.run.name = str(out.parent), out.name
    cfg.run.git_commit = git_commit()  # the evaluating code (the source run's is in its results)
    if experiment is not None:
        cfg.run.experiment = experiment
    run_dir = make_run_dir(cfg)
    save_config(cfg, run_dir)
    atomic_write(run_dir / "predictions" / "test.conll",
                 lambda tmp: write_conll(tmp, evaluation.predictions))
    if evaluation.tweet_counts is not None:
        write_json(run_dir / TWEET_COUNTS_FILE, evaluation.tweet_counts)
    source_dir, source = source_run(ckpt_path)
    results = build_results(cfg, best_epoch=source.get("best_epoch"), dev=source.get("dev"),
                            test=evaluation.scores,
                            seconds_per_epoch=source.get("seconds_per_epoch"),
                            truncated=evaluation.truncated, missing_images=evaluation.missing_images,
                            image_counts=evaluation.image_counts,
                            object_source=evaluation.object_source,
                            label_versions=evaluation.label_versions)
    source = source_dir or Path(ckpt_path).resolve()
    results["evaluated_from"] = os.path.relpath(source, run_dir.resolve())  # no absolute path inside a run
    return write_json(run_dir / RESULTS_FILE, results)


