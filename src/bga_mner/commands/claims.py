"""``bga-mner claims CLAIMS_DIR [--out FILE] [--full-size N]``.

Reads the runs of ``make claims`` (``<setting>-seed<seed>/`` with results.json and evidence.json),
prints the claims table (``report/claims.py``; how each verdict is reached: docs/claims.md) and
writes it to --out (default CLAIMS_DIR/claims.md).
"""

from __future__ import annotations

import argparse
from pathlib import Path


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("claims_dir", type=Path, help="the folder of make claims' runs")
    parser.add_argument("--out", type=Path, default=None, help="markdown file (default: CLAIMS_DIR/claims.md)")
    parser.add_argument("--full-size", type=int, default=None,
                        help="tweets in the full training set (labels the Fig. 5 row)")


def main(args: argparse.Namespace) -> int:
    from bga_mner.atomic import atomic_write_text
    from bga_mner.report.claims import CLAIMS_FILE, build_claims

    text = build_claims(args.claims_dir, args.full_size)
    out = args.out or args.claims_dir / CLAIMS_FILE
    atomic_write_text(out, text)
    print(text, end="")
    print(f"\nwritten to {out}")
    return 0
