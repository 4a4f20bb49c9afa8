"""The CPU demo: ``python -m bga_mner.demo --runs DIR`` (``make demo``).

Trains and tests BGA-MNER and BERT-CRF on the synthetic benchmark (docs/synthetic.md) with
``experiments/demo/config.yaml`` (the bundled pretrained MiniLM text encoder + a tiny random-init
ViT of the same depth), one run per model and seed (default 3 seeds), ``--jobs`` runs at a time
(each a ``bga-mner fit`` process with its share of the cores). Each run then gets its
``evidence.json`` (``bga-mner evidence``: slice counts, Fig. 3 hits, Fig. 4 keep counts). Last it
prints, from the runs (``report.claims.demo_summary``): test F1 mean ± std with 95% CIs and the
significance verdict, F1 on the image-told and unseen names, the Fig. 3 retrieval against chance and
the samplers' keep rates (entity against filler pieces, crops against the global image).

Runs are ``DIR/<bga|bert_crf>-seed<seed>/``; a finished run (``results.json``) is reused unless
``--rerun``, an interrupted one resumes (``fit --resume``). Each run's output goes to
``DIR/logs/<run>.log``.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

from bga_mner import registry

DEMO_CONFIG = registry.get("demo").config
DEMO_SEEDS = registry.get("demo").seeds  # its README.md's front matter (the registry)
DEMO_JOBS = 2  # fit processes at a time


def models() -> list[tuple[str, tuple[str, ...]]]:
    """(setting, overrides) of full BGA-MNER and BERT-CRF: their make-claims settings (what
    report/claims.py's demo_summary reads) and their experiments' overrides (the registry)."""
    return [(registry.claims_setting(name), registry.get(name).overrides())
            for name in (registry.REFERENCE, registry.BASELINE)]


@dataclass
class DemoRun:
    """One run of the demo: its folder, the commands that make it, and how it went."""

    name: str
    run_dir: Path
    fit: list[str]
    seconds: float = 0.0
    reused: bool = False


def _bga_command() -> list[str]:
    return [sys.executable, "-m", "bga_mner.cli"]


def plan(runs: Path, config: Path = DEMO_CONFIG, overrides: Sequence[str] = (),
         seeds: Sequence[int] = DEMO_SEEDS) -> list[DemoRun]:
    """The demo's runs, one per model and seed (BGA-MNER first, seeds in order).

    Args:
        runs: the runs folder.
        config: the demo's experiment config.
        overrides: extra ``key=value`` overrides for every run.
        seeds: the seeds.
    """
    out = []
    for seed in seeds:
        for setting, switches in models():
            name = f"{setting}-seed{seed}"
            fit = [*_bga_command(), "fit", "--resume", "--config", str(config), f"run.name={name}",
                   f"seed={seed}", f"paths.runs_dir={runs}", *switches, *overrides]
            out.append(DemoRun(name, runs / name, fit))
    return out


def _run_one(run: DemoRun, threads: int, logs: Path) -> DemoRun:
    """Fit (unless finished) and write the evidence of one run; its output goes to its log."""
    env = dict(os.environ, OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads))
    log = logs / f"{run.name}.log"
    start = time.perf_counter()
    with log.open("a", encoding="utf-8") as out:
        results, evidence = run.run_dir / "results.json", run.run_dir / "evidence.json"
        steps = [] if results.is_file() else [run.fit]
        run.reused = not steps
        if not (run.reused and evidence.is_file() and evidence.stat().st_mtime >= results.stat().st_mtime):
            steps.append([*_bga_command(), "evidence", str(run.run_dir)])  # as make: unless up to date
        for cmd in steps:
            out.write("$ " + " ".join(cmd) + "\n")
            out.flush()
            if subprocess.run(cmd, stdout=out, stderr=subprocess.STDOUT, env=env).returncode:
                tail = log.read_text(encoding="utf-8").splitlines()[-25:]
                raise RuntimeError(f"{run.name} failed ({' '.join(cmd[3:5])}); the end of {log}:\n"
                                   + "\n".join(tail))
    run.seconds = time.perf_counter() - start
    return run


def run_demo(runs: Path, config: Path = DEMO_CONFIG, overrides: Sequence[str] = (), rerun: bool = False,
             seeds: Sequence[int] = DEMO_SEEDS, jobs: int = DEMO_JOBS) -> list[DemoRun]:
    """Train, test and analyse every run of :func:`plan`, ``jobs`` at a time.

    Args:
        runs: the runs folder.
        config: the demo's experiment config.
        overrides: extra ``key=value`` overrides for every run.
        rerun: delete and redo runs that already finished.
        seeds: the seeds.
        jobs: runs at a time; each gets ``cpu_count // jobs`` threads (at least 1).
    """
    todo = plan(runs, config, overrides, seeds)
    logs = runs / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    if rerun:
        for run in todo:
            shutil.rmtree(run.run_dir, ignore_errors=True)
    threads = max(1, (os.cpu_count() or 1) // max(1, jobs))
    with ThreadPoolExecutor(max_workers=max(1, jobs)) as pool:
        return list(pool.map(lambda r: _run_one(r, threads, logs), todo))


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bga_mner.demo", description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=Path, default=Path("runs/demo"), help="runs folder")
    parser.add_argument("--config", type=Path, default=DEMO_CONFIG, help="demo config.yaml")
    parser.add_argument("--seeds", type=int, nargs="+", default=list(DEMO_SEEDS),
                        help=f"seeds (default: experiments/demo's, {' '.join(map(str, DEMO_SEEDS))})")
    parser.add_argument("--jobs", type=int, default=DEMO_JOBS, help="runs at a time (default %(default)s)")
    parser.add_argument("--rerun", action="store_true", help="redo finished runs")
    parser.add_argument("overrides", nargs="*", metavar="key=value", help="config overrides")
    args = parser.parse_args(argv)
    if not args.config.is_file():
        parser.error(f"{args.config}: demo config not found (pass --config experiments/demo/config.yaml)")
    from bga_mner.report.claims import demo_summary

    start = time.perf_counter()
    try:
        done = run_demo(args.runs, args.config, args.overrides, args.rerun, args.seeds, args.jobs)
    except RuntimeError as err:
        print(f"demo: {err}", file=sys.stderr)
        return 1
    total = time.perf_counter() - start
    print()
    for d in done:
        how = "reused " if d.reused else ""
        print(f"{d.name:16s} {how}{d.seconds:5.0f} s   {d.run_dir}")
    print(f"demo total: {total:.0f} s ({len(done)} runs, {args.jobs} at a time)\n")
    print(demo_summary(args.runs), end="", flush=True)  # the result, last
    return 0


if __name__ == "__main__":
    sys.exit(main())
