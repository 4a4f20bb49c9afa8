"""The CPU demo: ``python -m bga_mner.demo --runs DIR`` (``make demo``).

Generates the synthetic multimodal NER set (through the data module), trains and tests BGA-MNER
and BERT-CRF on it with ``experiments/demo/config.yaml`` (the bundled pretrained MiniLM text
encoder + a tiny random-init ViT of the same depth), and prints where the results JSONs and W&B
runs are, then, last, a Table-2-shaped markdown table. A run whose ``results.json`` exists is reused
unless ``--rerun``; an interrupted one is resumed (``run_fit(resume=True)``).
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from pathlib import Path
from typing import Sequence

from bga_mner.config import load_config

DEMO_CONFIG = Path(__file__).resolve().parents[2] / "experiments" / "demo" / "config.yaml"
MODELS = (("bga-mner", True), ("bert-crf", False))


def run_demo(runs: Path, config: Path = DEMO_CONFIG, overrides: Sequence[str] = (),
             rerun: bool = False) -> list[dict]:
    """Train and test both models; returns per model ``{"model", "results_path", "wandb_dir",
    "seconds", "reused"}``.

    Args:
        runs: the runs folder (one sub-folder per model).
        config: the demo's experiment config.
        overrides: extra ``key=value`` overrides for both runs.
        rerun: delete and redo runs that already finished.
    """
    from bga_mner.training import run_fit

    done = []
    for name, use_mcg in MODELS:
        cfg = load_config(config, [f"paths.runs_dir={runs}", f"model.use_mcg={use_mcg}", *overrides])
        cfg.run.name = f"{name}-seed{cfg.seed}"
        run_dir = runs / cfg.run.name
        if rerun and run_dir.exists():
            shutil.rmtree(run_dir)
        start = time.perf_counter()
        if (run_dir / "results.json").is_file():
            wandb = sorted((run_dir / "wandb").glob("*run-*"))
            done.append({"model": name, "results_path": run_dir / "results.json",
                         "wandb_dir": wandb[-1] if wandb else None, "seconds": 0.0, "reused": True})
            continue
        out = run_fit(cfg, resume=True)  # an interrupted earlier attempt continues where it stopped
        done.append({"model": name, "results_path": out["results_path"],
                     "wandb_dir": out["wandb_dir"], "seconds": time.perf_counter() - start,
                     "reused": False})
    return done


def render(runs: Path, done: Sequence[dict]) -> str:
    """Table 2 of the demo's runs (helper E's ``report.render_table2``)."""
    from bga_mner.report import load_results, render_table2

    wanted = {Path(d["results_path"]).resolve() for d in done}
    return render_table2([r for r in load_results(runs) if r.path.resolve() in wanted])


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bga_mner.demo", description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=Path, default=Path("runs/demo"), help="runs folder")
    parser.add_argument("--config", type=Path, default=DEMO_CONFIG, help="demo config.yaml")
    parser.add_argument("--rerun", action="store_true", help="redo finished runs")
    parser.add_argument("overrides", nargs="*", metavar="key=value", help="config overrides")
    args = parser.parse_args(argv)
    if not args.config.is_file():
        parser.error(f"{args.config}: demo config not found (pass --config experiments/demo/config.yaml)")
    start = time.perf_counter()
    done = run_demo(args.runs, args.config, args.overrides, args.rerun)
    total = time.perf_counter() - start
    print()
    for d in done:
        how = "reused" if d["reused"] else f"{d['seconds']:.0f} s"
        f1 = json.loads(Path(d["results_path"]).read_text())["test"]["overall"]["f1"]
        print(f"{d['model']:9s} test F1 {f1:6.2f}  ({how})  results: {d['results_path']}")
        print(f"{'':9s} W&B run: {d['wandb_dir'] or 'off'}")
    print(f"demo total: {total:.0f} s\n")
    print(render(args.runs, done), end="", flush=True)  # the result, last
    return 0


if __name__ == "__main__":
    sys.exit(main())
