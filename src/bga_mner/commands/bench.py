"""``bga-mner bench [--config FILE] [key=value ...] [--steps N] [--profile] [--compiled]``: training and image-free
inference throughput of BGA-MNER against BERT-CRF, one process (``bga_mner.benchmark``); ``--profile``
adds the time of one training step per part of the network and the FLOP ratio."""

from __future__ import annotations

import argparse
import json

from bga_mner.benchmark import STEPS, WARMUP, format_table, run_bench
from bga_mner.config import load_config


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", help="experiment config.yaml (overrides of the defaults in bga_mner.config)")
    parser.add_argument("--steps", type=int, default=STEPS,
                        help="timed steps per measurement (default %(default)s)")
    parser.add_argument("--warmup", type=int, default=WARMUP,
                        help="untimed steps before timing (default %(default)s)")
    parser.add_argument("--json", action="store_true", help="print the measurements as JSON")
    parser.add_argument("--profile", action="store_true",
                        help="also profile one training step per part of the network and count its FLOPs")
    parser.add_argument("--compiled", action="store_true",
                        help="also time BGA-MNER compiled (trainer.compile) against eager, steps interleaved, "
                             "with the seconds spent compiling")
    parser.add_argument("overrides", nargs="*", metavar="key=value", help="config overrides")


def main(args: argparse.Namespace) -> int:
    if args.steps < 1 or args.warmup < 0:
        raise SystemExit("bga-mner bench: --steps must be >= 1 and --warmup >= 0")
    result = run_bench(load_config(args.config, args.overrides), args.steps, args.warmup, args.profile,
                       args.compiled)
    print(json.dumps(result, indent=2) if args.json else format_table(result))
    return 0
