"""``bga-mner test --ckpt CKPT [--config FILE] [key=value ...] [--json] [--out RUN_DIR [--replace]]``: P/R/F1 on
a test set (``bga_mner.evaluation``).

The checkpoint (``best.ckpt`` or the image-free ``inference.pt``) carries its config; ``--config``
and ``key=value`` are merged over it. ``--out RUN_DIR`` writes the evaluation as a run folder, which
the command owns (locks) from before the evaluation; a finished one is refused unless
``--replace`` (evaluation runs only: the make targets redo Tables 4 and 7 this way when the
trained run was redone).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from omegaconf import OmegaConf

from bga_mner.config import load_overrides


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--ckpt", required=True, help="checkpoints/best.ckpt or checkpoints/inference.pt")
    parser.add_argument("--config", help="a config file merged over the checkpoint's config "
                        "(an experiment's config.yaml also names the run's experiment)")
    parser.add_argument("--json", action="store_true", help="print the scores as JSON")
    parser.add_argument("--predictions", help="also write the predictions to this CoNLL file")
    parser.add_argument("--out", help="write a run folder (config.yaml, results.json, predictions/) "
                        "for the report")
    parser.add_argument("--replace", action="store_true",
                        help="replace the evaluation run already at --out (never a trained run)")
    parser.add_argument("overrides", nargs="*", metavar="key=value", help="config overrides")


def main(args: argparse.Namespace) -> int:
    from bga_mner.atomic import atomic_write
    from bga_mner.data.conll import write_conll
    from bga_mner.evaluation import claim_evaluation_dir, evaluate, write_evaluation_run
    from bga_mner.inference import scores_table

    overrides = load_overrides(args.config, args.overrides)  # checked before anything is created
    experiment = OmegaConf.select(overrides, "run.experiment")
    if experiment is None and args.config and Path(args.config).name == "config.yaml":
        experiment = Path(args.config).parent.name  # as load_config names a fit's experiment
    if args.replace and not args.out:
        print("bga-mner test: error: --replace replaces the run folder of --out; give --out",
              file=sys.stderr)
        return 2
    # before the work, not after: the folder is ours (or refused) before the evaluation starts
    lock = claim_evaluation_dir(args.out, replace=args.replace) if args.out else None
    try:
        evaluation = evaluate(args.ckpt, overrides)
        if not evaluation.is_global_zero:  # a DDP rank > 0: rank 0 writes and prints
            return 0
        if args.predictions:  # complete or absent (a full disk, a signal), never cut
            atomic_write(args.predictions, lambda tmp: write_conll(tmp, evaluation.predictions))
        scores = evaluation.scores
        print(json.dumps(scores, indent=2) if args.json else scores_table(scores))
        if args.out:
            results_path = write_evaluation_run(evaluation, args.ckpt, args.out, experiment,
                                                replace=args.replace)
            if not args.json:
                print(f"results: {results_path}")
        return 0
    finally:
        if lock is not None:
            lock.release()
