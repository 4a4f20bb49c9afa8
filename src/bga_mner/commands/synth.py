"""``bga-mner synth OUT_DIR``: write the synthetic multimodal NER set (see ``data/synthetic.py``).

Runs normally don't need this: with ``data.name=synthetic`` the data module generates the set into
the cache. Use it to look at the data, or to point ``data.root`` at a set of another size.
"""

from __future__ import annotations

import argparse
import sys
import time

from bga_mner.data.synthetic import SynthConfig

_DEFAULTS = SynthConfig()


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("out_dir", metavar="OUT_DIR", help="folder to write (created)")
    parser.add_argument("--train", type=int, default=_DEFAULTS.train, help="train tweets")
    parser.add_argument("--valid", type=int, default=_DEFAULTS.valid, help="dev tweets")
    parser.add_argument("--test", type=int, default=_DEFAULTS.test, help="test tweets")
    parser.add_argument("--seed", type=int, default=_DEFAULTS.seed, help="generation seed")


def main(args: argparse.Namespace) -> int:
    from bga_mner.data.synthetic import generate

    if min(args.train, args.valid, args.test) < 0:
        print("error: split sizes must be >= 0", file=sys.stderr)
        return 2
    cfg = SynthConfig(train=args.train, valid=args.valid, test=args.test, seed=args.seed)
    start = time.perf_counter()
    sizes = generate(args.out_dir, cfg)
    print(f"{args.out_dir}: {sizes['train']}/{sizes['valid']}/{sizes['test']} train/valid/test "
          f"tweets, images, objects.jsonl, meta.json in {time.perf_counter() - start:.1f}s")
    return 0
