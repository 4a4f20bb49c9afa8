"""Markdown rendering of Tables 2-7 and of Fig. 5 in numbers.

Each table shows ours (mean ± std over seeds, and n), a 95% bootstrap confidence interval over
test tweets pooled over seeds, the paper's number (``resources/paper_results.yaml``) and the
difference, one section per data set (or cross-domain pair) and profile. Every comparison the
paper makes (BGA-MNER against BERT-CRF, each ablation against the full model, generated against
real visual features, test images present against empty, BGA against TEXT at each training-set
size) gets a significance table under its section (:func:`_significance`): the across-seed ASO
eps_min both ways, the within-seed randomisation p-value and a verdict
(:mod:`bga_mner.report.statistics`, docs/statistics.md). With a single seed it says that one
seed supports no comparison. Every sectioned table goes through one loop,
:func:`_render_sections`, and builds its rows with the shared row helpers (:func:`_compare_rows`,
:func:`_f1_row`). Runs of the smoke profile are labelled as such: synthetic data and tiny models,
not comparable to the paper.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Iterable, Mapping, Sequence, Sized, TypeVar

from bga_mner.report.results import (OVERALL, PAPER_DATASETS, TYPES, RunResult, fig5_series, log, metric,
                                     paper_results, select)
from bga_mner.report.statistics import (ASO_THRESHOLD, CONFIDENCE, Arm, Stat, bootstrap_ci, compare,
                                        pool_seeds)

SMOKE_NOTE = "synthetic (smoke profile) — not comparable to the paper"
PAPER_TEXT_ENCODER = "bert-base-uncased"

# Table 3 rows: (label, key in paper_results.yaml, use_scs, use_cycle, model)
ABLATIONS = (("BGA-MNER", "full", True, True, "bga-mner"),
             ("w/o SCS", "wo_scs", False, True, "bga-mner"),
             ("w/o cycle", "wo_cycle", True, False, "bga-mner"),
             ("w/o SCS & w/o cycle", "wo_scs_cycle", False, False, "bga-mner"),
             ("w/o SCS & w/o MCG (BERT-CRF)", "wo_scs_mcg", True, True, "bert-crf"))

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


def _num(x: float | None) -> str:
    return "—" if x is None else f"{x:.2f}"


def _signed(x: float | None) -> str:
    return "—" if x is None else f"{x:+.2f}"


def _diff(ours: float | None, paper: float | None) -> str:
    return "—" if ours is None or paper is None else _signed(ours - paper)


def _heading(title: str, section: str, profile: str) -> str:
    name = section.replace("->", " → ")
    if profile == "smoke":
        return f"### {title} — {SMOKE_NOTE}" if name == "synthetic" else f"### {title} — {name}, {SMOKE_NOTE}"
    if section.endswith(")"):  # results.not_comparable: the reason is in the section's name
        return f"### {title} — {name} — not comparable to the paper"
    if section.split("->")[0] not in PAPER_DATASETS:
        return f"### {title} — {name} (no paper numbers for this data set)"
    return f"### {title} — {name}"


def _md(header: Sequence[str], rows: Iterable[Sequence[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def _seeds(runs: Sized) -> str:
    return f"{len(runs)} seed{'s' if len(runs) != 1 else ''}"


def _empty(title: str, target: str) -> str:
    return f"## {title}\n\n_No runs for this table: `make {target}` writes them._\n"


def _ci(runs: Sequence[RunResult], group: str = "overall", measure: str = "f1") -> str:
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


def _significance(pairs: Iterable[Pair]) -> str | None:
    """The significance table of a section: one row per comparison whose two sides have runs (A is
    the side the paper expects to be better), and the single-seed note when a side has one seed.
    None without any comparison."""
    rows, single = [], False
    for label_a, runs_a, label_b, runs_b in pairs:
        if not runs_a or not runs_b:
            continue
        c = compare(_arm(label_a, runs_a), _arm(label_b, runs_b))
        single |= min(c.n_a, c.n_b) < 2
        p = "—" if c.p_value is None else f"{c.p_value:.4f} ({_seeds(c.paired_seeds)})"
        rows.append([f"{label_a} vs {label_b}", f"{c.n_a}, {c.n_b}", _signed(c.delta),
                     _num(c.eps_ab), _num(c.eps_ba), p, c.verdict])
    if not rows:
        return None
    return _md(SIGNIFICANCE_HEADER, rows) + (f"\n\n{SINGLE_SEED_NOTE}" if single else "")


def _render_sections(title: str, heading: str, header: Sequence[str], sections: Mapping[tuple[str, str], T],
                     rows_of: Callable[[str, str, T], list[Row] | None],
                     pairs_of: Callable[[str, str, T], Iterable[Pair]] | None = None) -> str:
    """The section loop of every sectioned table: ``## title``, then per (section, profile) a heading
    and a table of ``rows_of(section, profile, runs)`` (a section whose rows are None is left out),
    then the significance table of the comparisons ``pairs_of(section, profile, runs)``; the legend
    of the tests closes a table that has one."""
    parts, tested = [f"## {title}"], False
    for (section, profile), runs in sections.items():
        rows = rows_of(section, profile, runs)
        if rows is None:
            continue
        parts += [_heading(heading, section, profile), _md(header, rows)]
        significance = _significance(pairs_of(section, profile, runs)) if pairs_of else None
        if significance is not None:
            parts.append(significance)
            tested = True
    if tested:
        parts.append(SIGNIFICANCE_LEGEND)
    return "\n\n".join(parts) + "\n"


def _compare_rows(label: str, runs: Sequence[RunResult], ours: Sequence[Stat], paper: Mapping[str, float] | None,
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
    rows = [[f"{label} (ours, {_seeds(runs)})", *map(str, ours)],
            [f"{label} 95% CI (tweets{f', {_seeds(runs)} pooled' if len(runs) > 1 else ''})",
             *(_ci(runs, c, "f1") if c in TYPES else _ci(runs, "overall", c) for c in cols)]]
    if paper:
        rows.append([f"{label} (paper)", *(_num(paper[c]) for c in cols)])
        rows.append(["Δ ours − paper", *(_diff(o.mean, paper[c]) for o, c in zip(ours, cols))])
    return rows


def _f1_row(label: str, runs: Sequence[RunResult], paper: float | None) -> Row:
    """``[label, seeds, F1 (ours), 95% CI, F1 (paper), Δ ours − paper]``: one setting's overall F1."""
    f1 = metric(runs, "overall")
    return [label, _seeds(runs), str(f1), _ci(runs), _num(paper), _diff(f1.mean, paper)]


def render_table2(results: Sequence[RunResult]) -> str:
    """Table 2: per-type F1 and overall P/R/F1 of BERT-CRF and BGA-MNER, ours beside the paper's.

    Args:
        results: all runs; the standard runs of BERT-CRF and full BGA-MNER are shown.
    """
    title = "Table 2: main results (test set)"
    sections = select(results, lambda s: s.standard and (s.is_full() or s.model == "bert-crf"))
    if not sections:
        return _empty(title, "reproduce-table2")
    cols = [*TYPES, *OVERALL]

    def rows_of(section: str, profile: str, runs: list[RunResult]) -> list[Row]:
        rows = []
        for label, model in (("BERT-CRF", "bert-crf"), ("BGA-MNER", "bga-mner")):
            mine = [r for r in runs if r.setting.model == model]
            if not mine:
                continue
            ours = [metric(mine, t) for t in TYPES] + [metric(mine, "overall", m) for m in OVERALL]
            paper = paper_results()["table2"][label].get(section) if profile != "smoke" else None
            rows += _compare_rows(label, mine, ours, paper, cols)
        return rows

    def pairs_of(section: str, profile: str, runs: list[RunResult]) -> list[Pair]:
        return [("BGA-MNER", [r for r in runs if r.setting.model == "bga-mner"],
                 "BERT-CRF", [r for r in runs if r.setting.model == "bert-crf"])]

    return _render_sections(title, "Table 2", ["Method", *TYPES, "P", "R", "F1"], sections, rows_of, pairs_of)


def render_table3(results: Sequence[RunResult]) -> str:
    """Table 3: overall F1 of each ablation and its drop from full BGA-MNER, ours beside the paper's.

    Args:
        results: all runs; the standard ones are shown (BERT-CRF is the "w/o SCS & w/o MCG" row).
    """
    title = "Table 3: ablations (overall test F1)"
    sections = select(results, lambda s: s.standard)
    if not sections:
        return _empty(title, "ablations")

    def ablation_runs(runs: list[RunResult]) -> list[tuple[str, str, list[RunResult]]]:
        return [(label, key, [r for r in runs if r.setting.model == model
                              and (model == "bert-crf" or (r.setting.use_scs, r.setting.use_cycle) == (scs, cycle))])
                for label, key, scs, cycle, model in ABLATIONS]

    def rows_of(section: str, profile: str, runs: list[RunResult]) -> list[Row]:
        paper = paper_results()["table3"] if profile != "smoke" and section in PAPER_DATASETS else None
        full = metric([r for r in runs if r.setting.is_full()], "overall").mean
        pfull = paper["full"][section] if paper else None
        rows = []
        for label, key, mine in ablation_runs(runs):
            if not mine:
                continue
            f1, pf1 = metric(mine, "overall"), (paper[key][section] if paper else None)
            drop = None if key == "full" or full is None else f1.mean - full
            pdrop = None if key == "full" or pf1 is None else pf1 - pfull
            name, seeds, ours, ci, theirs, delta = _f1_row(label, mine, pf1)
            rows.append([name, seeds, ours, ci, _signed(drop), theirs, _signed(pdrop), delta])
        return rows

    def pairs_of(section: str, profile: str, runs: list[RunResult]) -> list[Pair]:
        (_, _, full), *ablations = ablation_runs(runs)
        return [("BGA-MNER", full, label, mine) for label, _, mine in ablations]

    header = ["Setting", "runs", "F1 (ours)", "95% CI", "vs full (ours)", "F1 (paper)", "vs full (paper)",
              "Δ ours − paper"]
    return _render_sections(title, "Table 3", header, sections, rows_of, pairs_of)


def render_table4(results: Sequence[RunResult]) -> str:
    """Table 4: real against generated visual features at inference (overall test F1).

    Args:
        results: all runs; in-domain full BGA-MNER runs with either inference visual are shown.
    """
    title = "Table 4: real or generated visual features at inference (overall test F1)"
    sections = select(results, lambda s: s.is_full(inference_visual=s.inference_visual)
                      and s.test_dataset == s.dataset)
    if not sections:
        return _empty(title, "table4")

    def rows_of(section: str, profile: str, runs: list[RunResult]) -> list[Row]:
        rows = []
        for label, key in (("real textual + real visual", "real"), ("real textual + generated visual", "generated")):
            mine = [r for r in runs if r.setting.inference_visual == key]
            pf1 = paper_results()["table4"][key].get(section) if profile != "smoke" else None
            rows.append(_f1_row(label, mine, pf1))
        return rows

    def pairs_of(section: str, profile: str, runs: list[RunResult]) -> list[Pair]:
        # the paper's claim: generated visual features at inference are at least as good as real ones
        return [("generated visual", [r for r in runs if r.setting.inference_visual == "generated"],
                 "real visual", [r for r in runs if r.setting.inference_visual == "real"])]

    header = ["Features", "runs", "F1 (ours)", "95% CI", "F1 (paper)", "Δ ours − paper"]
    return _render_sections(title, "Table 4", header, sections, rows_of, pairs_of)


def render_table6(results: Sequence[RunResult]) -> str:
    """Table 6: cross-domain P/R/F1 (train on the source set, test on the target set).

    Args:
        results: all runs; full BGA-MNER runs tested on another data set are shown.
    """
    title = "Table 6: cross-domain generalisation (overall test P/R/F1)"
    sections = select(results, lambda s: s.is_full() and s.test_dataset != s.dataset)
    if not sections and any(r.setting.profile == "smoke" for r in results):
        return (f"## {title}\n\n_The smoke profile has a single (synthetic) data set, so it has no "
                "cross-domain run: `make table6` on the real data sets writes them._\n")
    if not sections:
        return _empty(title, "table6")

    def rows_of(section: str, profile: str, runs: list[RunResult]) -> list[Row]:
        ours = [metric(runs, "overall", m) for m in OVERALL]
        paper = paper_results()["table6"].get(section, {}).get("BGA-MNER") if profile != "smoke" else None
        return _compare_rows("BGA-MNER", runs, ours, paper, OVERALL)

    return _render_sections(title, "Table 6", ["Method", "P", "R", "F1"], sections, rows_of)


def render_table7(results: Sequence[RunResult]) -> str:
    """Table 7: overall test F1 with every test image replaced by an empty one, and the change.

    Args:
        results: all runs; in-domain full BGA-MNER runs with and without test images are shown.
    """
    title = "Table 7: modality missing at test time (overall test F1)"
    sections = select(results, lambda s: s.is_full(modality_missing=s.modality_missing)
                      and s.test_dataset == s.dataset)
    if not any(r.setting.modality_missing for runs in sections.values() for r in runs):
        return _empty(title, "table7")

    def rows_of(section: str, profile: str, runs: list[RunResult]) -> list[Row] | None:
        missing_runs = [r for r in runs if r.setting.modality_missing]
        present_runs = [r for r in runs if not r.setting.modality_missing]
        if not missing_runs:
            return None
        missing, full = metric(missing_runs, "overall"), metric(present_runs, "overall")
        paper = profile != "smoke" and section in PAPER_DATASETS
        pfull = paper_results()["table2"]["BGA-MNER"][section]["f1"] if paper else None
        pmiss = paper_results()["table7"]["BGA-MNER"][section]["f1"] if paper else None
        return [_f1_row("test images present (Table 2)", present_runs, pfull),
                _f1_row("all test images empty", missing_runs, pmiss),
                ["change (empty − present)", "", _diff(missing.mean, full.mean), "", _diff(pmiss, pfull), ""]]

    def pairs_of(section: str, profile: str, runs: list[RunResult]) -> list[Pair]:
        return [("images present", [r for r in runs if not r.setting.modality_missing],
                 "images empty", [r for r in runs if r.setting.modality_missing])]

    header = ["BGA-MNER", "runs", "F1 (ours)", "95% CI", "F1 (paper)", "Δ ours − paper"]
    return _render_sections(title, "Table 7", header, sections, rows_of, pairs_of)


def _table5_ours(path: Path, counts: Mapping[str, Any], f1: Mapping[str, str],
                 paper: Mapping[str, Any]) -> tuple[Row, str]:
    """Our row of Table 5 and the components table of one ``params.json``."""
    # `bga-mner params --json`: {text_encoder, visual_encoder, train, inference}
    paper_backbones = counts.get("text_encoder") == PAPER_TEXT_ENCODER
    train, infer = counts["train"]["total"], counts["inference"]["total"]
    row = [f"BGA-MNER (ours{'' if paper_backbones else ', ' + str(counts.get('text_encoder'))})",
           str(counts.get("visual_encoder", "?")), f"{train / 1e6:.1f}M", f"{infer / 1e6:.1f}M",
           f1.get("twitter2015", "—"), f1.get("twitter2017", "—")]
    comp = []
    for name in counts["train"]:
        pm = paper["components_m"].get(name.replace(" ", "_")) if paper_backbones else None
        comp.append([name, f"{counts['train'][name] / 1e6:.2f}M", f"{counts['inference'][name] / 1e6:.2f}M",
                     "—" if pm is None else f"{pm:.1f}M"])
    note = "" if paper_backbones else " (not the paper's backbones: not comparable)"
    return row, (f"Components of `{path}`{note}:\n\n"
                 + _md(["Component", "train time (ours)", "inference (ours)", "paper"], comp))


def render_table5(params: Sequence[tuple[Path, Mapping[str, Any]]], results: Sequence[RunResult] = ()) -> str:
    """Table 5: parameter counts (train and inference time) beside the paper's, with our F1s.

    Args:
        params: (path, ``bga-mner params --json`` output) pairs, as :func:`load_params` returns them.
        results: all runs; the standard full BGA-MNER runs of the full profile give the F1 columns.
    """
    title = "Table 5: parameters and visual encoder"
    if not params:
        return _empty(title, "table5")
    paper = paper_results()["table5"]
    full = select(results, lambda s: s.standard and s.is_full())
    f1 = {sec: str(metric(runs, "overall")) for (sec, prof), runs in full.items() if prof == "full"}
    # the paper gives one total per method (paper_results.yaml says at which time it counts)
    rows = [[r["method"] + " (paper)", r["visual_encoder"],
             "—" if r.get("image_free") else f"{r['params_m']:.1f}M", f"{r['params_m']:.1f}M",
             _num(r["twitter2015"]), _num(r["twitter2017"])] for r in paper["rows"]]
    components = []
    for path, counts in params:
        row, part = _table5_ours(path, counts, f1, paper)
        rows.append(row)
        components.append(part)
    table = _md(["Method", "Visual enc.", "Total params (train)", "Inference-time", "Twitter2015 F1",
                 "Twitter2017 F1"], rows)
    return "\n\n".join([f"## {title}", table, *components]) + "\n"


def render_fig5_table(results: Sequence[RunResult]) -> str:
    """Fig. 5 in numbers: per-type and overall test F1 against the number of training tweets.

    Args:
        results: all runs; the data-limited ones (:func:`fig5_series`) are shown.
    """
    title = "Fig. 5: data-limited training (test F1; the paper gives this only as a plot)"
    series = fig5_series(results)
    if not series:
        return _empty(title, "data-efficiency")

    def rows_of(section: str, profile: str, models: dict[str, dict[int, list[RunResult]]]) -> list[Row]:
        rows = []
        for n in sorted({n for by_n in models.values() for n in by_n}):
            for label, model in (("TEXT (BERT-CRF)", "bert-crf"), ("BGA", "bga-mner")):
                runs = models.get(model, {}).get(n, [])
                if runs:
                    rows.append([str(n), label, _seeds(runs), *(str(metric(runs, g)) for g in (*TYPES, "overall")),
                                 _ci(runs)])
        return rows

    def pairs_of(section: str, profile: str, models: dict[str, dict[int, list[RunResult]]]) -> list[Pair]:
        sizes = sorted({n for by_n in models.values() for n in by_n})
        return [(f"BGA (n={n})", models.get("bga-mner", {}).get(n, []),
                 f"TEXT (n={n})", models.get("bert-crf", {}).get(n, [])) for n in sizes]

    header = ["train tweets", "model", "runs", *TYPES, "overall F1", "overall 95% CI"]
    return _render_sections(title, "Fig. 5", header, series, rows_of, pairs_of)
