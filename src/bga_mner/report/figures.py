"""The report's figures: Fig. 5 (test F1 against the number of training tweets, BGA against TEXT),
per-type F1 of BERT-CRF and BGA-MNER beside the paper's (Table 2 as bars) and the ablation drops
(Table 3 as bars).

Each ``*_figure`` function returns a matplotlib ``Figure`` made without pyplot (no backend is
selected or changed, so a notebook shows it inline with ``display(fig)``), or None when the runs
hold nothing to draw. :func:`plot_fig5` writes Fig. 5 as the report's ``fig5.png``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

from bga_mner.registry import REFERENCE
from bga_mner.report.results import PAPER_DATASETS, TYPES, RunResult, fig5_series, in_table, metric, of, select
from bga_mner.report.sections import SMOKE_NOTE
from bga_mner.report.tables import paper_number, table_rows

COLOURS = {"bert-crf": "#7f7f7f", "bga-mner": "#1f77b4"}  # Fig. 5's TEXT and BGA; full BGA-MNER and the others


def _figure(width: float, height: float) -> Any:
    from matplotlib.figure import Figure

    return Figure(figsize=(width, height), dpi=100, facecolor="white")


def _section_title(section: str, profile: str) -> str:
    name = section.replace("->", " → ")
    if profile == "smoke":
        return f"{name}: {SMOKE_NOTE}"
    if section.endswith(")"):  # results.not_comparable: the reason is in the section's name
        return f"{name}: not comparable to the paper"
    if section.split("->")[0] not in PAPER_DATASETS:
        return f"{name} (no paper numbers)"
    return name


def fig5_figure(results: Sequence[RunResult]) -> Any | None:
    """Fig. 5: F1 (per type and overall) against training tweets, BGA against TEXT, error bars the
    std over seeds; one row per data set. None when there are no data-limited runs."""
    series = fig5_series(results)
    if not series:
        return None
    groups = (*TYPES, "overall")
    fig = _figure(3.2 * len(groups), 2.8 * len(series))
    axes = fig.subplots(len(series), len(groups), squeeze=False)
    for row, ((section, profile), models) in enumerate(series.items()):
        for col, group in enumerate(groups):
            ax = axes[row][col]
            for label, model, style in (("TEXT", "bert-crf", "s--"), ("BGA", "bga-mner", "o-")):
                by_n = models.get(model, {})
                ns = sorted(by_n)
                stats = [metric(by_n[n], group) for n in ns]
                ax.errorbar(ns, [s.mean for s in stats], yerr=[s.std or 0.0 for s in stats],
                            fmt=style, capsize=3, label=label)
            ax.set_xscale("log", base=2)
            ax.set_title(f"{section}{' (smoke)' if profile == 'smoke' else ''}: F1-{group}", fontsize=9)
            ax.set_xlabel("training tweets")
            ax.grid(alpha=0.3)
        axes[row][0].set_ylabel("test F1 (%)")
        axes[row][0].legend(fontsize=8)
    fig.tight_layout()
    return fig


def plot_fig5(results: Sequence[RunResult], out: str | Path) -> Path | None:
    """Fig. 5 as a PNG (:func:`fig5_figure`).

    Args:
        results: all runs; the data-limited ones (:func:`fig5_series`) are plotted.
        out: the PNG to write (its folder is created).

    Returns:
        ``out``, or None (and nothing written) when there are no data-limited runs.
    """
    fig = fig5_figure(results)
    if fig is None:
        return None
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=120, format="png")  # the format by name: out may be a temporary file
    return out


def per_type_figure(results: Sequence[RunResult]) -> Any | None:
    """Table 2 as bars: per-type and overall test F1 of each Table 2 row (BERT-CRF, BGA-MNER; ours: mean,
    error bar the std over seeds) beside the paper's (hatched), one panel per data set. None without
    standard runs of either."""
    sections = select(results, in_table("2"))
    if not sections:
        return None
    groups = (*TYPES, "overall")
    fig = _figure(7.5 * min(2, len(sections)), 4.2 * -(-len(sections) // 2))
    axes = fig.subplots(-(-len(sections) // 2), min(2, len(sections)), squeeze=False).flatten()
    for ax in axes[len(sections):]:
        ax.axis("off")
    width = 0.2
    for ax, ((section, profile), runs) in zip(axes, sections.items()):
        bars = []  # (label, colour, values, errors, hatch)
        for name, row in table_rows("2"):
            colour = COLOURS["bga-mner" if name == REFERENCE else "bert-crf"]
            mine = of(runs, name)
            if mine:
                stats = [metric(mine, g) for g in groups]
                bars.append((f"{row.label} (ours, {len(mine)} seed{'s' if len(mine) != 1 else ''})", colour,
                             [s.mean for s in stats], [s.std or 0.0 for s in stats], None))
            paper = paper_number("2", row.paper, section, profile)
            if paper:
                bars.append((f"{row.label} (paper)", colour,
                             [paper[g] if g in TYPES else paper["f1"] for g in groups], None, "//"))
        offset = -(len(bars) - 1) / 2 * width
        for i, (label, colour, values, errors, hatch) in enumerate(bars):
            xs = [g + offset + i * width for g in range(len(groups))]
            ax.bar(xs, [v if v is not None else 0.0 for v in values], width, yerr=errors, capsize=2,
                   label=label, color="white" if hatch else colour, edgecolor=colour, hatch=hatch, lw=1.2)
        ax.set_xticks(range(len(groups)), list(groups))
        ax.set_ylabel("test F1 (%)")
        ax.set_ylim(0, 100)
        ax.set_title(_section_title(section, profile), fontsize=9)
        ax.grid(alpha=0.3, axis="y")
        ax.legend(fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.1), ncol=2, frameon=False)
    fig.tight_layout()
    return fig


def table3_drops(results: Sequence[RunResult]) -> dict[tuple[str, str], list[tuple[str, float | None, float | None]]]:
    """Table 3's "vs full" columns: per (section, profile), ``(row, ours, paper)`` F1 drops from
    full BGA-MNER for each other Table 3 row with runs (paper None where it has no number). Sections
    without a full BGA-MNER run or without any other row's run are left out."""
    out = {}
    rows3 = table_rows("3")
    pkey = next(row.paper for name, row in rows3 if name == REFERENCE)
    for (section, profile), runs in select(results, in_table("3")).items():
        full = metric(of(runs, REFERENCE), "overall").mean
        if full is None:
            continue
        pfull = paper_number("3", pkey, section, profile)
        rows = []
        for name, row in rows3:
            mine = of(runs, name)
            if mine and name != REFERENCE:
                ours = metric(mine, "overall").mean - full
                theirs = paper_number("3", row.paper, section, profile)
                rows.append((row.label, ours, None if theirs is None or pfull is None else theirs - pfull))
        if rows:
            out[(section, profile)] = rows
    return out


def table3_figure(results: Sequence[RunResult]) -> Any | None:
    """Table 3 as bars: each ablation's overall F1 minus full BGA-MNER's, ours beside the paper's,
    one panel per data set. None when no data set has full BGA-MNER and an ablation."""
    drops = table3_drops(results)
    if not drops:
        return None
    fig = _figure(7.0 * len(drops), 0.6 * max(len(r) for r in drops.values()) + 1.6)
    axes = fig.subplots(1, len(drops), squeeze=False)[0]
    for ax, ((section, profile), rows) in zip(axes, drops.items()):
        ys = list(range(len(rows)))
        has_paper = any(p is not None for _, _, p in rows)
        h = 0.38 if has_paper else 0.6
        ax.barh([y - (h / 2 if has_paper else 0) for y in ys], [o for _, o, _ in rows], h,
                color=COLOURS["bga-mner"], label="ours")
        if has_paper:
            ax.barh([y + h / 2 for y in ys], [p or 0.0 for _, _, p in rows], h, color="white",
                    edgecolor=COLOURS["bga-mner"], hatch="//", label="paper")
        for y, (_, ours, _) in zip(ys, rows):
            ax.annotate(f"{ours:+.2f}", (ours, y - (h / 2 if has_paper else 0)), fontsize=7,
                        xytext=(3 if ours >= 0 else -3, 0), textcoords="offset points",
                        ha="left" if ours >= 0 else "right", va="center")
        ax.axvline(0, color="black", lw=0.8)
        values = [0.0] + [v for _, o, p in rows for v in (o, p) if v is not None]
        pad = 0.3 * (max(values) - min(values) or 1.0)
        ax.set_xlim(min(values) - pad, max(values) + pad)  # room for the labels at the bar ends
        ax.set_yticks(ys, [label for label, _, _ in rows], fontsize=8)
        ax.invert_yaxis()
        ax.set_xlabel("overall F1 − full BGA-MNER (points)")
        ax.set_title(_section_title(section, profile), fontsize=9)
        ax.grid(alpha=0.3, axis="x")
        ax.legend(fontsize=7)
    fig.tight_layout()
    return fig
