"""``bga-mner evidence RUN_DIR [RUN_DIR ...]``.

Writes each finished synthetic run's ``evidence.json`` (``analysis/evidence.py``): its test
predictions' span counts on the benchmark's slices (image-told and unseen names), its dev curves,
and, for a trained BGA-MNER run, the Fig. 3 retrieval hits and the Fig. 4 keep counts per test tweet.
``make claims`` runs it after each fit; ``bga-mner claims`` reads the files.
"""

from __future__ import annotations

import argparse
from pathlib import Path


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("run_dirs", type=Path, nargs="+", metavar="RUN_DIR", help="finished run folders")


def main(args: argparse.Namespace) -> int:
    from bga_mner.analysis.evidence import write_evidence
    from bga_mner.errors import UserError

    for run_dir in args.run_dirs:
        if not (run_dir / "results.json").is_file():
            raise UserError(f"{run_dir}: no results.json (not a finished run)")
        print(f"wrote {write_evidence(run_dir)}")
    return 0
