"""``bga-mner test --ckpt CKPT [--config FILE] [key=value ...] [--json] [--out RUN_DIR]``: P/R/F1 on
a test set.

The checkpoint (``best.ckpt`` or the image-free ``inference.pt``) carries its config; ``--config``
and ``key=value`` are merged over it, e.g. ``data.test_name=twitter2015`` (cross-domain),
``data.modality_missing=true`` (Table 7) or ``model.inference_visual=real`` (Table 4). Evaluation is
image-free unless ``model.inference_visual=real``.

``--out RUN_DIR`` makes the evaluation a run of its own, without retraining (Tables 4 and 7 score
the trained BGA-MNER runs this way): ``RUN_DIR/config.yaml`` (the merged config),
``predictions/test.conll`` and a ``results.json`` of the usual schema whose ``best_epoch``, ``dev``
and ``seconds_per_epoch`` are the source run's, plus ``"evaluated_from"``.
"""

from __future__ import annotations

import argparse
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import lightning as L
from omegaconf import DictConfig, OmegaConf

from bga_mner.data.conll import Tweet, write_conll
from bga_mner.inference import build_system, read_checkpoint, scores_table, wants_real_visual
from bga_mner.run import RESULTS_FILE, build_results, git_commit, make_run_dir, save_config, write_json


@dataclass
class Evaluation:
    """What :func:`evaluate` measured.

    Attributes:
        config: the evaluated config (the checkpoint's with the overrides merged).
        scores: span P/R/F1 in percent, overall and per type.
        predictions: the predicted tweets, in test-file order (every process's under DDP).
        truncated: tweets cut to ``data.max_length`` per split.
        missing_images: tweets without image per split (None: images not read).
        is_global_zero: False on DDP ranks > 0, which must not write or print.
    """

    config: DictConfig
    scores: dict[str, dict[str, float]]
    predictions: list[Tweet]
    truncated: dict[str, int]
    missing_images: dict[str, int | None]
    is_global_zero: bool


def evaluate(ckpt_path: str | Path, overrides: DictConfig | None = None) -> Evaluation:
    """Score a checkpoint on the test split of its (overridden) config.

    The Trainer takes the config's ``trainer:`` settings (accelerator, devices, strategy,
    num_nodes, precision, ...), so a multi-process test splits the test set across processes.

    Args:
        ckpt_path: a Lightning checkpoint or an ``inference.pt``.
        overrides: config merged over the checkpoint's.
    """
    from bga_mner.commands.fit import build_datamodule, trainer_kwargs
    from bga_mner.models.backbones import load_tokenizer

    system = build_system(read_checkpoint(ckpt_path), overrides)
    cfg = system.cfg.copy()
    if not wants_real_visual(cfg):
        cfg.data.use_images = False  # image-free inference: no image needs reading
    L.seed_everything(int(cfg.seed), workers=True, verbose=False)
    datamodule = build_datamodule(cfg, load_tokenizer(cfg.model.text_encoder))
    trainer = L.Trainer(**(trainer_kwargs(cfg) | {"logger": False, "enable_checkpointing": False,
                                                  "enable_model_summary": False}))
    trainer.test(system, datamodule=datamodule, verbose=False)
    return Evaluation(config=system.cfg,
                      scores=system.test_scores,
                      predictions=[Tweet(i, list(w), list(t)) for i, w, t in system.test_predictions],
                      truncated=dict(datamodule.truncated_counts),
                      missing_images=dict(datamodule.missing_image_counts),
                      is_global_zero=trainer.is_global_zero)


def source_run(ckpt_path: str | Path) -> tuple[Path | None, dict[str, Any]]:
    """The run folder a checkpoint was saved in (``<run>/checkpoints/<file>``) and its results,
    or ``(None, {})`` for a checkpoint outside a finished run folder."""
    run_dir = Path(ckpt_path).resolve().parent.parent
    results = run_dir / RESULTS_FILE
    if not results.is_file():
        return None, {}
    return run_dir, json.loads(results.read_text(encoding="utf-8"))


def write_evaluation_run(evaluation: Evaluation, ckpt_path: str | Path, out: str | Path,
                         experiment: str | None = None) -> Path:
    """Write ``out`` as a run folder of the evaluation: ``config.yaml``, ``results.json``,
    ``predictions/test.conll``. Returns the results path.

    Args:
        evaluation: from :func:`evaluate`.
        ckpt_path: the evaluated checkpoint; its run folder's ``results.json`` gives ``dev``,
            ``best_epoch`` and ``seconds_per_epoch`` (null when it has none).
        out: the new run folder (refused if it already holds a ``results.json``).
        experiment: ``run.experiment`` of the new run (default: the override's, else the source's).
    """
    out = Path(out)
    cfg = evaluation.config.copy()
    cfg.paths.runs_dir, cfg.run.name = str(out.parent), out.name
    cfg.run.git_commit = git_commit()  # the evaluating code (the source run's is in its results)
    if experiment is not None:
        cfg.run.experiment = experiment
    run_dir = make_run_dir(cfg)
    save_config(cfg, run_dir)
    predictions = run_dir / "predictions" / "test.conll"
    predictions.parent.mkdir(exist_ok=True)
    write_conll(predictions, evaluation.predictions)
    source_dir, source = source_run(ckpt_path)
    results = build_results(cfg, best_epoch=source.get("best_epoch"), dev=source.get("dev"),
                            test=evaluation.scores,
                            seconds_per_epoch=source.get("seconds_per_epoch"),
                            truncated=evaluation.truncated, missing_images=evaluation.missing_images)
    results["evaluated_from"] = str(source_dir or Path(ckpt_path).resolve())
    return write_json(run_dir / RESULTS_FILE, results)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--ckpt", required=True, help="checkpoints/best.ckpt or checkpoints/inference.pt")
    parser.add_argument("--config", help="a config file merged over the checkpoint's config "
                        "(an experiment's config.yaml also names the run's experiment)")
    parser.add_argument("--json", action="store_true", help="print the scores as JSON")
    parser.add_argument("--predictions", help="also write the predictions to this CoNLL file")
    parser.add_argument("--out", help="write a run folder (config.yaml, results.json, predictions/) "
                        "for the report")
    parser.add_argument("overrides", nargs="*", metavar="key=value", help="config overrides")


def main(args: argparse.Namespace) -> int:
    overrides = OmegaConf.load(args.config) if args.config else OmegaConf.create()
    overrides = OmegaConf.merge(overrides, OmegaConf.from_dotlist(list(args.overrides)))
    experiment = OmegaConf.select(overrides, "run.experiment")
    if experiment is None and args.config and Path(args.config).name == "config.yaml":
        experiment = Path(args.config).parent.name  # as load_config names a fit's experiment
    if args.out and (Path(args.out) / RESULTS_FILE).exists():  # before the work, not after
        raise FileExistsError(f"{args.out}: already holds a finished run ({RESULTS_FILE}); "
                              "choose another --out or delete the folder")
    evaluation = evaluate(args.ckpt, overrides)
    if not evaluation.is_global_zero:  # a DDP rank > 0: rank 0 writes and prints
        return 0
    if args.predictions:
        Path(args.predictions).parent.mkdir(parents=True, exist_ok=True)
        write_conll(args.predictions, evaluation.predictions)
    scores = evaluation.scores
    print(json.dumps(scores, indent=2) if args.json else scores_table(scores))
    if args.out:
        results_path = write_evaluation_run(evaluation, args.ckpt, args.out, experiment)
        if not args.json:
            print(f"results: {results_path}")
    return 0
