"""``bga-mner report RUNS_DIR [--table 2|3|4|5|6|7|fig5|all] [--out DIR]``.

Reads every results.json (and params.json) under RUNS_DIR, prints the paper-shaped tables with the
paper's numbers beside ours, and writes them (markdown, plus fig5.png) to --out.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("runs_dir", type=Path, help="folder searched recursively for results.json")
    parser.add_argument("--table", action="append", default=None,
                        choices=["2", "3", "4", "5", "6", "7", "fig5", "all"],
                        help="table to render (repeatable; default: all)")
    parser.add_argument("--out", type=Path, default=None, help="output folder (default: RUNS_DIR/report)")


def main(args: argparse.Namespace) -> int:
    from bga_mner.report import TABLES, build_report

    tables = list(TABLES) if not args.table or "all" in args.table else list(dict.fromkeys(args.table))
    try:
        rendered = build_report(args.runs_dir, tables, args.out)
    except (FileNotFoundError, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    print("\n".join(rendered.values()))
    print(f"written to {args.out or args.runs_dir / 'report'}")
    return 0
