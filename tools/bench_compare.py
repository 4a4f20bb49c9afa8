"""Before/after throughput of two source trees in ONE process, steps alternated (issue 11).

    OMP_NUM_THREADS=1 python tools/bench_compare.py --before /work/before11/src --after src \
        [--rounds 5 --steps 2] [--config experiments/demo/config.yaml] [key=value ...]

Each tree's ``bga_mner`` is imported in turn (``sys.modules`` is cleared between them), and each
builds its own BGA-MNER and BERT-CRF systems and AdamW the way its own ``bga-mner bench`` does
(the after tree's ``system.adamw`` when it has one, else ``torch.optim.AdamW``'s default). All
four models see the same batch (the first training batch of the before tree's data module). Then,
round after round, each tree times ``--steps`` training steps of each model and ``--infer-steps``
image-free inference batches, so a load from other processes on a shared machine hits both trees
alike. It prints the median per-step throughput as a markdown table: samples/s, after / before,
and each tree's BGA-MNER / BERT-CRF ratios.
"""

from __future__ import annotations

import argparse
import importlib
import statistics
import sys
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any, Callable

import torch

ROOT = Path(__file__).resolve().parents[1]
IMAGE_KEYS = ("image", "crops", "crop_mask", "has_image")


def load_tree(src: Path) -> SimpleNamespace:
    """Import ``bga_mner`` (config, build, system) from the tree ``src``, forgetting any other one."""
    for name in [m for m in sys.modules if m == "bga_mner" or m.startswith("bga_mner.")]:
        del sys.modules[name]
    sys.path.insert(0, str(src.resolve()))
    try:
        mods = {m: importlib.import_module(f"bga_mner.{m}") for m in ("config", "build", "system")}
        importlib.import_module("bga_mner.models")
    finally:
        sys.path.remove(str(src.resolve()))
    return SimpleNamespace(src=src, **mods)


def build_steps(tree: SimpleNamespace, cfg: Any, batch: dict) -> dict[str, Callable[[], None]]:
    """Training-step and inference closures of both models, built with the tree's own code."""
    import lightning as L

    steps = {}
    text_batch = {k: v for k, v in batch.items() if k not in IMAGE_KEYS}
    for name, use_mcg in (("bga-mner", True), ("bert-crf", False)):
        model_cfg = cfg.copy()
        model_cfg.model.use_mcg = use_mcg
        L.seed_everything(int(cfg.seed), verbose=False)
        system = tree.system.MNERSystem(model_cfg)
        groups = tree.system.parameter_groups(system.model, model_cfg.optim)
        lr = float(model_cfg.optim.lr)
        make = getattr(tree.system, "adamw", None)
        optimizer = make(groups, lr) if make is not None else torch.optim.AdamW(groups, lr=lr)

        def train(system=system, optimizer=optimizer) -> None:
            system.train()
            loss, _ = system.objective(batch)
            loss.backward()
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)

        def infer(system=system) -> None:
            system.eval()
            with torch.inference_mode():
                system.decode_batch(text_batch)

        steps[f"{name} train"], steps[f"{name} infer"] = train, infer
    return steps


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--before", type=Path, default=Path("/work/before11/src"))
    parser.add_argument("--after", type=Path, default=ROOT / "src")
    parser.add_argument("--config", type=Path, default=ROOT / "experiments" / "demo" / "config.yaml")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--steps", type=int, default=2, help="timed training steps per model, tree and round")
    parser.add_argument("--infer-steps", type=int, default=8, help="timed inference batches per model, tree and round")
    parser.add_argument("overrides", nargs="*", metavar="key=value")
    args = parser.parse_args()

    trees, batch = {}, None
    for name, src in (("before", args.before), ("after", args.after)):
        tree = load_tree(src)
        cfg = tree.config.load_config(args.config, args.overrides)
        if batch is None:
            dm = tree.build.build_datamodule(cfg)
            dm.prepare_data()
            dm.setup("fit")
            batch = next(iter(dm.train_dataloader()))
        trees[name] = build_steps(tree, cfg, batch)
    size = int(batch["input_ids"].shape[0])
    times: dict[tuple[str, str], list[float]] = {}
    for name, steps in trees.items():  # warm-up: one untimed call each
        for fn in steps.values():
            fn()
    for r in range(args.rounds):
        for name, steps in trees.items():
            for kind, fn in steps.items():
                for _ in range(args.steps if kind.endswith("train") else args.infer_steps):
                    start = time.perf_counter()
                    fn()
                    times.setdefault((name, kind), []).append(time.perf_counter() - start)
        print(f"round {r + 1}/{args.rounds}: " + ", ".join(
            f"{n} {k} {size / statistics.median(v):.2f}/s" for (n, k), v in times.items()), flush=True)

    rate = {key: size / statistics.median(v) for key, v in times.items()}  # samples (tweets) per second
    print(f"\n{torch.get_num_threads()} thread(s), batch {size} x {batch['input_ids'].shape[1]} tokens, "
          f"{args.rounds} rounds x ({args.steps} training steps, {args.infer_steps} inference batches) per model "
          f"and tree, medians, config {args.config.name}\n")
    print("| per second (median step) | before | after | after / before |\n|---|---:|---:|---:|")
    for kind in trees["before"]:
        b, a = rate[("before", kind)], rate[("after", kind)]
        print(f"| {kind} | {b:.2f} | {a:.2f} | {a / b:.2f}x |")
    for label, kind in (("training step time, BGA-MNER / BERT-CRF", "train"),
                        ("image-free inference speed, BGA-MNER / BERT-CRF", "infer")):
        ratio = {n: rate[(n, f"bert-crf {kind}")] / rate[(n, f"bga-mner {kind}")] if kind == "train"
                 else rate[(n, f"bga-mner {kind}")] / rate[(n, f"bert-crf {kind}")] for n in trees}
        print(f"| {label} | {ratio['before']:.2f}x | {ratio['after']:.2f}x | |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
