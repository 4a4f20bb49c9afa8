"""``bga-mner fit --config FILE [--resume] [key=value ...]``: train, keep the best dev-F1 epoch, test
it once (``bga_mner.training.run_fit``; the run folder is docs/ARCHITECTURE.md's).

A run owns its folder while it runs: a second ``fit`` of the same ``run.name`` is refused at once.
A folder without ``results.json`` holds an unfinished (interrupted) run: ``--resume`` continues it
from its last finished epoch (``checkpoints/last.ckpt``) with the run's own config, and starts the
run when the folder is new, so a command with ``--resume`` can simply be repeated until it
finishes (the make targets do so). Without ``--resume`` an unfinished folder is refused.

SIGTERM (``kill``, SLURM, make) and SIGINT (Ctrl-C) stop the run at once with status 143 / 130 and
one line naming the command that continues it, e.g. ``bga-mner fit: interrupted by SIGTERM;
resume with: bga-mner fit --resume --config ... run.name=<the run's name>``."""

from __future__ import annotations

import argparse
import shlex

from bga_mner.config import load_config
from bga_mner.errors import Interrupted
from bga_mner.run import library_caches


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", help="experiment config.yaml (overrides of the defaults in bga_mner.config)")
    parser.add_argument("--resume", action="store_true",
                        help="continue the unfinished run folder of run.name from its last epoch "
                        "(checkpoints/last.ckpt), or start it if it is new; the config must be the "
                        "run's (paths.*, logging.* may differ)")
    parser.add_argument("overrides", nargs="*", metavar="key=value",
                        help="config overrides, e.g. data.name=twitter2017 seed=43 run.profile=smoke")


def resume_command(args: argparse.Namespace, run_name: str) -> str:
    """The command that continues an interrupted fit: this one with ``--resume`` and the run's
    name (the one made up when none was given)."""
    config = ["--config", args.config] if args.config else []
    overrides = [o for o in args.overrides if not o.startswith("run.name=")]
    return shlex.join(["bga-mner", "fit", "--resume", *config, *overrides, f"run.name={run_name}"])


def main(args: argparse.Namespace) -> int:
    cfg = load_config(args.config, args.overrides)  # checked before anything is imported or made
    library_caches(cfg.paths.cache_dir)  # before Lightning's imports write under the home folder
    from bga_mner.inference import scores_table
    from bga_mner.training import run_fit

    try:
        out = run_fit(cfg, resume=args.resume)
    except Interrupted as err:
        if err.run_name:  # the folder was claimed: it holds the run to continue
            err.hint = f"resume with: {resume_command(args, err.run_name)}"
        raise
    if out["results"] is None:  # a DDP rank > 0: rank 0 prints
        return 0
    test = out["results"]["test"]
    print(f"\ntest ({out['results']['test_dataset']}), best dev epoch {out['results']['best_epoch']}:")
    print(scores_table(test))
    print(f"results: {out['results_path']}")
    print(f"W&B run: {out['wandb_dir'] or 'off (logging.wandb=false)'}")
    print(f"test F1: {test['overall']['f1']:.2f}")
    return 0
