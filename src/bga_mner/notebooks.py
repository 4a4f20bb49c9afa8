"""Execute the analysis notebooks against a run: ``python -m bga_mner.notebooks --run DIR``.

The notebooks in ``notebooks/`` are committed without outputs and read their parameters from the
environment (``BGA_MNER_RUN``: a BGA-MNER run folder; ``BGA_MNER_RUNS``: a runs folder), defaulting
to the demo's. This executes each with nbclient and writes the executed copies beside the runs,
so ``make notebooks`` (and CI, on the smoke runs) shows that they run against real checkpoints.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

NOTEBOOKS_DIR = Path(__file__).resolve().parents[2] / "notebooks"
NAMES = ("scs_masks", "generative_alignment", "results")


def execute_notebooks(run_dir: Path, runs_dir: Path, out_dir: Path, names: tuple[str, ...] = NAMES,
                      timeout: int = 600) -> list[Path]:
    """Execute notebooks top to bottom against ``run_dir``/``runs_dir``; return the executed copies.

    Args:
        run_dir: a BGA-MNER run folder (with ``checkpoints/best.ckpt``).
        runs_dir: the folder of runs the results notebook reports on.
        out_dir: where the executed notebooks are written.
        names: which notebooks (file stems in ``notebooks/``).
        timeout: seconds per cell.
    """
    import nbformat
    from nbclient import NotebookClient

    if not (run_dir / "checkpoints" / "best.ckpt").is_file():
        raise FileNotFoundError(f"{run_dir}/checkpoints/best.ckpt: not a finished run folder")
    os.environ.update(BGA_MNER_RUN=str(run_dir.resolve()), BGA_MNER_RUNS=str(runs_dir.resolve()),
                      MPLBACKEND="Agg")
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for name in names:
        nb = nbformat.read(NOTEBOOKS_DIR / f"{name}.ipynb", as_version=4)
        NotebookClient(nb, timeout=timeout, kernel_name="python3",
                       resources={"metadata": {"path": str(NOTEBOOKS_DIR.parent)}}).execute()
        path = out_dir / f"{name}.ipynb"
        nbformat.write(nb, path)
        written.append(path)
        print(f"executed {name}.ipynb -> {path}")
    return written


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", type=Path, required=True, help="BGA-MNER run folder")
    parser.add_argument("--runs", type=Path, default=None, help="runs folder (default: parent of --run)")
    parser.add_argument("--out", type=Path, default=None, help="default: <runs>/notebooks")
    args = parser.parse_args(argv)
    runs = args.runs or args.run.parent
    try:
        execute_notebooks(args.run, runs, args.out or runs / "notebooks")
    except FileNotFoundError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
