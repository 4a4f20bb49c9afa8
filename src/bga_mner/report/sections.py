"""What every sectioned table of the report shares: the section loop, the rows of ours beside the
paper's, the 95% bootstrap CIs and the significance table under each section.

A table has one section per data set (or cross-domain pair) and profile (:func:`render_sections`).
Each shows ours (mean ± std over seeds, and n), a 95% bootstrap confidence interval over test tweets
pooled over seeds, the paper's number (``resources/paper_results.yaml``) and the difference
(:func:`compare_rows`, :func:`f1_row`). Every comparison the paper makes (full BGA-MNER against each
other row of the table; BGA against TEXT at each Fig. 5 size) gets a significance table under its
section (:func:`significance`): the across-seed ASO eps_min both ways, the within-seed randomisation
p-value and a verdict (:mod:`bga_mner.report.significance`, docs/statistics.md). With a single seed
it says that one seed supports no comparison. Runs of the smoke profile are labelled as such:
synthetic data and tiny models, not comparable to the paper.
"""

from __future__ import annotations

from typing import Callable, Iterable, Mapping, Sequence, TypeVar

from bga_mner.report.bootstrap import bootstrap_ci
from bga_mner.report.markdown import diff, md, num, seeds, signed
from bga_mner.report.results import PAPER_DATASETS, TYPES, RunResult, log, metric
from bga_mner.report.significance import ASO_THRESHOLD, Arm, compare
from bga_mner.report.statistics import CONFIDENCE, Stat, pool_seeds

SMOKE_NOTE = "synthetic (smoke profile) — not comparable to the paper"
SINGLE_SEED_NOTE = ("_A single seed supports no comparison: a verdict needs at least 2 seeds on each side "
                    "(the paper targets run 5 by default, `SEEDS='42 43 44 45 46'`). The randomisation "
                    "p-value of one seed measures only the sampling of the test tweets, not the seed's._")
SIGNIFICANCE_LEGEND = (
    f"_Significance: ASO = Almost Stochastic Order over the seeds' test F1 (deepsig, confidence "
    f"{CONFIDENCE:.2f}); A is better when ε_min(A > B) < {ASO_THRESHOLD}, the verdict. AR p = paired "
    "approximate randomisation over the test tweets of the seeds both sides ran, pooled (two-sided; it "
    "measures the test set's sampling, not the seeds'). 95% CI: percentile bootstrap over test tweets, "
    "each tweet's span counts summed over the seeds. Why these tests: docs/statistics.md._")
SIGNIFICANCE_HEADER = ["Comparison (A vs B)", "seeds (A, B)", "Δ F1 (A − B)", "ASO ε_min (A > B)",
                       "ASO ε_min (B > A)", "AR p (paired seeds)", "Verdict"]

Row = list[str]
Pair = tuple[str, Sequence[RunResult], str, Sequence[RunResult]]  # (label A, runs A, label B, runs B)
T = TypeVar("T")


def heading(title: str, section: str, profile: str) -> str:
    """A section's ``###`` heading: the data set(s), and why there are no paper numbers where there are none."""
    name = section.replace("->", " → ")
    if profile == "smoke":
        return f"### {title} — {SMOKE_NOTE}" if name == "synthetic" else f"### {title} — {name}, {SMOKE_NOTE}"
    if section.endswith(")"):  # results.not_comparable: the reason is in the section's name
        return f"### {title} — {name} — not comparable to the paper"
    if section.split("->")[0] not in PAPER_DATASETS:
        return f"### {title} — {name} (no paper numbers for this data set)"
    return f"### {title} — {name}"


def empty(title: str, target: str) -> str:
    """A table without runs: which make target writes them."""
    return f"## {title}\n\n_No runs for this table: `make {target}` writes them._\n"


def ci(runs: Sequence[RunResult], group: str = "overall", measure: str = "f1") -> str:
    """``[low, high]``: the 95% bootstrap interval over test tweets of ``runs`` pooled over seeds;
    "—" when a run has no per-tweet counts (or the runs' test tweets differ)."""
    counts = [r.counts for r in runs]
    if not counts or any(c is None for c in counts):
        return "—"
    try:
        low, high = bootstrap_ci(pool_seeds(counts), group, measure)  # type: ignore[arg-type]
    except ValueError as err:
        log.warning("no confidence interval for %s: %s", [str(r.path) for r in runs], err)
        return "—"
    return f"[{low:.2f}, {high:.2f}]"


def _arm(label: str, runs: Sequence[RunResult]) -> Arm:
    return Arm(label, {r.seed: float(r.test["overall"]["f1"]) for r in runs},
               {r.seed: r.counts for r in runs if r.counts is not None})


def significance(pairs: Iterable[Pair]) -> str | None:
    """The significance table of a section: one row per comparison whose two sides have runs (A is
    the side the paper expects to be better), and the single-seed note when a side has one seed.
    None without any comparison."""
    rows, single = [], False
    for label_a, runs_a, label_b, runs_b in pairs:
        if not runs_a or not runs_b:
            continue
        c = compare(_arm(label_a, runs_a), _arm(label_b, runs_b))
        single |= min(c.n_a, c.n_b) < 2
        p = "—" if c.p_value is None else f"{c.p_value:.4f} ({seeds(c.paired_seeds)})"
        rows.append([f"{label_a} vs {label_b}", f"{c.n_a}, {c.n_b}", signed(c.delta),
                     num(c.eps_ab), num(c.eps_ba), p, c.verdict])
    if not rows:
        return None
    return md(SIGNIFICANCE_HEADER, rows) + (f"\n\n{SINGLE_SEED_NOTE}" if single else "")


def render_sections(title: str, name: str, header: Sequence[str], sections: Mapping[tuple[str, str], T],
                    rows_of: Callable[[str, str, T], list[Row] | None],
                    pairs_of: Callable[[str, str, T], Iterable[Pair]] | None = None) -> str:
    """The section loop of every sectioned table: ``## title``, then per (section, profile) a heading
    (``### name — section``) and a table of ``rows_of(section, profile, runs)`` (a section whose rows
    are None is left out), then the significance table of the comparisons ``pairs_of(section,
    profile, runs)``; the legend of the tests closes a table that has one."""
    parts, tested = [f"## {title}"], False
    for (section, profile), runs in sections.items():
        rows = rows_of(section, profile, runs)
        if rows is None:
            continue
        parts += [heading(name, section, profile), md(header, rows)]
        table = significance(pairs_of(section, profile, runs)) if pairs_of else None
        if table is not None:
            parts.append(table)
            tested = True
    if tested:
        parts.append(SIGNIFICANCE_LEGEND)
    return "\n\n".join(parts) + "\n"


def compare_rows(label: str, runs: Sequence[RunResult], ours: Sequence[Stat], paper: Mapping[str, float] | None,
                 cols: Sequence[str]) -> list[Row]:
    """One method's row of ours (mean ± std), the row of its 95% CIs and, where the paper has it,
    its row and the difference.

    Args:
        label: the method's name.
        runs: our runs of it (seeds).
        ours: one :class:`Stat` per column.
        paper: the paper's numbers by column name, or None (no paper rows).
        cols: the column names, in the order of ``ours``: an entity type (its F1) or precision,
            recall, f1 (overall).
    """
    rows = [[f"{label} (ours, {seeds(runs)})", *map(str, ours)],
            [f"{label} 95% CI (tweets{f', {seeds(runs)} pooled' if len(runs) > 1 else ''})",
             *(ci(runs, c, "f1") if c in TYPES else ci(runs, "overall", c) for c in cols)]]
    if paper:
        rows.append([f"{label} (paper)", *(num(paper[c]) for c in cols)])
        rows.append(["Δ ours − paper", *(diff(o.mean, paper[c]) for o, c in zip(ours, cols))])
    return rows


def f1_row(label: str, runs: Sequence[RunResult], paper: float | None) -> Row:
    """``[label, seeds, F1 (ours), 95% CI, F1 (paper), Δ ours − paper]``: one setting's overall F1."""
    f1 = metric(runs, "overall")
    return [label, seeds(runs), str(f1), ci(runs), num(paper), diff(f1.mean, paper)]
