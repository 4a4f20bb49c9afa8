"""``build_report``: render the asked tables from a runs folder and write them as markdown (and fig5.png)."""

from __future__ import annotations

from pathlib import Path
from typing import Callable, Sequence

from bga_mner.atomic import atomic_write
from bga_mner.report.figures import plot_fig5
from bga_mner.report.results import load_params, load_results
from bga_mner.report.tables import (render_fig5_table, render_table2, render_table3, render_table4, render_table5,
                                    render_table6, render_table7)

TABLES = ("2", "3", "4", "5", "6", "7", "fig5")


def _write_text(path: Path, text: str) -> Path | None:
    return atomic_write(path, lambda tmp: tmp.write_text(text, encoding="utf-8"))


def build_report(runs_dir: str | Path, tables: Sequence[str] = TABLES,
                 out_dir: str | Path | None = None) -> dict[str, str]:
    """Render ``tables`` from the runs under ``runs_dir`` and write them to ``out_dir``.

    Args:
        runs_dir: folder searched recursively for ``results.json`` and ``params.json``.
        tables: any of ``TABLES``.
        out_dir: where ``table<X>.md``, ``fig5.md``, ``fig5.png`` and ``report.md`` go
            (default ``<runs_dir>/report``).

    Returns:
        {table: markdown}, in the order asked.
    """
    unknown = [t for t in tables if t not in TABLES]
    if unknown:
        raise ValueError(f"unknown table(s) {unknown}; expected some of {TABLES}")
    results = load_results(runs_dir)
    renderers: dict[str, Callable[[], str]] = {
        "2": lambda: render_table2(results), "3": lambda: render_table3(results),
        "4": lambda: render_table4(results), "5": lambda: render_table5(load_params(runs_dir), results),
        "6": lambda: render_table6(results), "7": lambda: render_table7(results),
        "fig5": lambda: render_fig5_table(results)}
    out_dir = Path(out_dir) if out_dir is not None else Path(runs_dir) / "report"
    out_dir.mkdir(parents=True, exist_ok=True)
    rendered = {}
    for t in tables:
        text = renderers[t]()
        if t == "fig5" and (png := atomic_write(out_dir / "fig5.png",
                                                     lambda tmp: plot_fig5(results, tmp))) is not None:
            text += f"\n![Fig. 5]({png.name})\n"
        name = "fig5.md" if t == "fig5" else f"table{t}.md"
        _write_text(out_dir / name, text)
        rendered[t] = text
    if set(tables) == set(TABLES):
        _write_text(out_dir / "report.md",
                    f"# Results of `{runs_dir}` beside the paper's\n\n" + "\n".join(rendered.values()))
    return rendered
