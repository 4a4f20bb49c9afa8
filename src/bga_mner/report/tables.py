"""Markdown rendering of Tables 2-7 and of Fig. 5 in numbers.

Which runs are a table's rows, in which order, under which label and beside which of the paper's
numbers comes from the experiment registry (:mod:`bga_mner.registry`: each experiment's ``rows``);
a run belongs to its ``experiment``'s rows. Full BGA-MNER (:data:`~bga_mner.registry.REFERENCE`) is
compared with every other row of its table. Every sectioned table goes through one loop,
:func:`~bga_mner.report.sections.render_sections` (ours beside the paper's, 95% CIs, significance).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping, Sequence

from bga_mner import registry
from bga_mner.registry import REFERENCE, paper_results
from bga_mner.report.markdown import diff, md, num, seeds, signed
from bga_mner.report.results import OVERALL, TYPES, RunResult, fig5_series, in_table, metric, of, select
from bga_mner.report.sections import Pair, Row, ci, compare_rows, empty, f1_row, render_sections

PAPER_TEXT_ENCODER = "bert-base-uncased"
# the comparison of Tables 4 and 7 under each section: (A: the reference's runs, B: the other row's)
COMPARED = {"4": ("generated visual", "real visual"), "7": ("images present", "images empty")}


def table_rows(table: str) -> list[tuple[str, registry.Row]]:
    """(experiment, row) of each row of ``table``, in the table's order (:func:`bga_mner.registry.rows`)."""
    return [(exp.name, row) for exp, row in registry.rows(table)]


def paper_number(table: str, key: str | None, section: str, profile: str) -> Any:
    """The paper's number(s) of row ``key`` of ``table`` on ``section``; None in the smoke profile,
    where the row has no key or the paper has no such number.

    Args:
        table: ``2`` .. ``7``.
        key: the row's paper key (:class:`bga_mner.registry.Row`).
        section: a data set, or ``source->target`` (Table 6).
        profile: the runs' profile.
    """
    if profile == "smoke" or key is None:
        return None
    block = paper_results()[f"table{table}"]
    return (block.get(section) or {}).get(key) if table == "6" else (block.get(key) or {}).get(section)


def _versus_reference(table: str, runs: Sequence[RunResult]) -> list[Pair]:
    """Full BGA-MNER against every other row of ``table`` (labels: the rows')."""
    rows = table_rows(table)
    label = next(row.label for name, row in rows if name == REFERENCE)
    return [(label, of(runs, REFERENCE), row.label, of(runs, name)) for name, row in rows if name != REFERENCE]


def render_table2(results: Sequence[RunResult]) -> str:
    """Table 2: per-type F1 and overall P/R/F1 of each row (BERT-CRF, full BGA-MNER), ours beside the paper's.

    Args:
        results: all runs; the standard runs of the experiments with a Table 2 row are shown.
    """
    title = "Table 2: main results (test set)"
    sections = select(results, in_table("2"))
    if not sections:
        return empty(title, "reproduce-table2")
    cols = [*TYPES, *OVERALL]

    def rows_of(section: str, profile: str, runs: list[RunResult]) -> list[Row]:
        rows = []
        for name, row in table_rows("2"):
            mine = of(runs, name)
            if not mine:
                continue
            ours = [metric(mine, t) for t in TYPES] + [metric(mine, "overall", m) for m in OVERALL]
            rows += compare_rows(row.label, mine, ours, paper_number("2", row.paper, section, profile), cols)
        return rows

    return render_sections(title, "Table 2", ["Method", *TYPES, "P", "R", "F1"], sections, rows_of,
                           lambda section, profile, runs: _versus_reference("2", runs))


def render_table3(results: Sequence[RunResult]) -> str:
    """Table 3: overall F1 of each row and its drop from full BGA-MNER, ours beside the paper's.

    Args:
        results: all runs; the standard runs of the experiments with a Table 3 row are shown (BERT-CRF
            is the "w/o SCS & w/o MCG" row).
    """
    title = "Table 3: ablations (overall test F1)"
    sections = select(results, in_table("3"))
    if not sections:
        return empty(title, "ablations")

    def rows_of(section: str, profile: str, runs: list[RunResult]) -> list[Row]:
        full = metric(of(runs, REFERENCE), "overall").mean
        pfull = paper_number("3", registry.get(REFERENCE).row("3").paper, section, profile)  # type: ignore[union-attr]
        rows = []
        for name, row in table_rows("3"):
            mine = of(runs, name)
            if not mine:
                continue
            f1, pf1 = metric(mine, "overall"), paper_number("3", row.paper, section, profile)
            reference = name == REFERENCE
            drop = None if reference or full is None else f1.mean - full
            pdrop = None if reference or pf1 is None or pfull is None else pf1 - pfull
            label, n, ours, interval, theirs, delta = f1_row(row.label, mine, pf1)
            rows.append([label, n, ours, interval, signed(drop), theirs, signed(pdrop), delta])
        return rows

    header = ["Setting", "runs", "F1 (ours)", "95% CI", "vs full (ours)", "F1 (paper)", "vs full (paper)",
              "Δ ours − paper"]
    return render_sections(title, "Table 3", header, sections, rows_of,
                           lambda section, profile, runs: _versus_reference("3", runs))


def render_table4(results: Sequence[RunResult]) -> str:
    """Table 4: real against generated visual features at inference (overall test F1).

    Args:
        results: all runs; the in-domain runs of the experiments with a Table 4 row are shown (full
            BGA-MNER and its re-test with real visual features, experiments/real_visual).
    """
    title = "Table 4: real or generated visual features at inference (overall test F1)"
    sections = select(results, in_table("4"))
    if not sections:
        return empty(title, "table4")

    def rows_of(section: str, profile: str, runs: list[RunResult]) -> list[Row]:
        return [f1_row(row.label, of(runs, name), paper_number("4", row.paper, section, profile))
                for name, row in table_rows("4")]

    def pairs_of(section: str, profile: str, runs: list[RunResult]) -> list[Pair]:
        # the paper's claim: generated visual features at inference are at least as good as real ones
        return [(COMPARED["4"][0], a, COMPARED["4"][1], b) for _, a, _, b in _versus_reference("4", runs)]

    header = ["Features", "runs", "F1 (ours)", "95% CI", "F1 (paper)", "Δ ours − paper"]
    return render_sections(title, "Table 4", header, sections, rows_of, pairs_of)


def render_table6(results: Sequence[RunResult]) -> str:
    """Table 6: cross-domain P/R/F1 (train on the source set, test on the target set).

    Args:
        results: all runs; those of the experiments with a Table 6 row tested on another data set are shown.
    """
    title = "Table 6: cross-domain generalisation (overall test P/R/F1)"
    sections = select(results, lambda s: "6" in s.tables and s.test_dataset != s.dataset)
    if not sections and any(r.setting.profile == "smoke" for r in results):
        return (f"## {title}\n\n_The smoke profile has a single (synthetic) data set, so it has no "
                "cross-domain run: `make table6` on the real data sets writes them._\n")
    if not sections:
        return empty(title, "table6")

    def rows_of(section: str, profile: str, runs: list[RunResult]) -> list[Row]:
        rows = []
        for name, row in table_rows("6"):
            mine = of(runs, name)
            if not mine:
                continue
            ours = [metric(mine, "overall", m) for m in OVERALL]
            rows += compare_rows(row.label, mine, ours, paper_number("6", row.paper, section, profile), OVERALL)
        return rows

    return render_sections(title, "Table 6", ["Method", "P", "R", "F1"], sections, rows_of)


def render_table7(results: Sequence[RunResult]) -> str:
    """Table 7: overall test F1 with every test image replaced by an empty one, and the change.

    Args:
        results: all runs; the in-domain runs of the experiments with a Table 7 row are shown (full
            BGA-MNER and its re-test without images, experiments/modality_missing).
    """
    title = "Table 7: modality missing at test time (overall test F1)"
    sections = select(results, in_table("7"))
    if not any(r.setting.place != REFERENCE for runs in sections.values() for r in runs):
        return empty(title, "table7")
    reference = registry.get(REFERENCE).row("7")

    def rows_of(section: str, profile: str, runs: list[RunResult]) -> list[Row] | None:
        others = [(row, of(runs, name)) for name, row in table_rows("7") if name != REFERENCE and of(runs, name)]
        if not others:
            return None
        present = of(runs, REFERENCE)
        full = metric(present, "overall").mean
        pfull = (paper_number("7", reference.paper, section, profile) or {}).get("f1")  # type: ignore[union-attr]
        rows = [f1_row(reference.label, present, pfull)]  # type: ignore[union-attr]
        for row, mine in others:
            pmiss = (paper_number("7", row.paper, section, profile) or {}).get("f1")
            rows += [f1_row(row.label, mine, pmiss),
                     ["change (empty − present)", "", diff(metric(mine, "overall").mean, full), "",
                      diff(pmiss, pfull), ""]]
        return rows

    def pairs_of(section: str, profile: str, runs: list[RunResult]) -> list[Pair]:
        return [(COMPARED["7"][0], a, COMPARED["7"][1], b) for _, a, _, b in _versus_reference("7", runs)]

    header = ["BGA-MNER", "runs", "F1 (ours)", "95% CI", "F1 (paper)", "Δ ours − paper"]
    return render_sections(title, "Table 7", header, sections, rows_of, pairs_of)


def _table5_ours(path: Path, counts: Mapping[str, Any], label: str, f1: Mapping[str, str],
                 paper: Mapping[str, Any]) -> tuple[Row, str]:
    """Our row of Table 5 and the components table of one ``params.json``."""
    # `bga-mner params --json`: {text_encoder, visual_encoder, train, inference}
    paper_backbones = counts.get("text_encoder") == PAPER_TEXT_ENCODER
    train, infer = counts["train"]["total"], counts["inference"]["total"]
    row = [f"{label} (ours{'' if paper_backbones else ', ' + str(counts.get('text_encoder'))})",
           str(counts.get("visual_encoder", "?")), f"{train / 1e6:.1f}M", f"{infer / 1e6:.1f}M",
           f1.get("twitter2015", "—"), f1.get("twitter2017", "—")]
    comp = []
    for name in counts["train"]:
        pm = paper["components_m"].get(name.replace(" ", "_")) if paper_backbones else None
        comp.append([name, f"{counts['train'][name] / 1e6:.2f}M", f"{counts['inference'][name] / 1e6:.2f}M",
                     "—" if pm is None else f"{pm:.1f}M"])
    note = "" if paper_backbones else " (not the paper's backbones: not comparable)"
    return row, (f"Components of `{path}`{note}:\n\n"
                 + md(["Component", "train time (ours)", "inference (ours)", "paper"], comp))


def render_table5(params: Sequence[tuple[Path, Mapping[str, Any]]], results: Sequence[RunResult] = ()) -> str:
    """Table 5: parameter counts (train and inference time) beside the paper's, with our F1s.

    Args:
        params: (path, ``bga-mner params --json`` output) pairs, as :func:`load_params` returns them.
        results: all runs; the standard runs of the full profile of the experiment with a Table 5 row
            (full BGA-MNER) give the F1 columns.
    """
    title = "Table 5: parameters and visual encoder"
    if not params:
        return empty(title, "table5")
    paper = paper_results()["table5"]
    (name, ours), *_ = table_rows("5")
    full = select(of(results, name), in_table("5"))
    f1 = {sec: str(metric(runs, "overall")) for (sec, prof), runs in full.items() if prof == "full"}
    # the paper gives one total per method (paper_results.yaml says at which time it counts)
    rows = [[r["method"] + " (paper)", r["visual_encoder"],
             "—" if r.get("image_free") else f"{r['params_m']:.1f}M", f"{r['params_m']:.1f}M",
             num(r["twitter2015"]), num(r["twitter2017"])] for r in paper["rows"]]
    components = []
    for path, counts in params:
        row, part = _table5_ours(path, counts, ours.label, f1, paper)
        rows.append(row)
        components.append(part)
    table = md(["Method", "Visual enc.", "Total params (train)", "Inference-time", "Twitter2015 F1",
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
        return empty(title, "data-efficiency")

    def rows_of(section: str, profile: str, models: dict[str, dict[int, list[RunResult]]]) -> list[Row]:
        rows = []
        for n in sorted({n for by_n in models.values() for n in by_n}):
            for label, model in (("TEXT (BERT-CRF)", "bert-crf"), ("BGA", "bga-mner")):
                runs = models.get(model, {}).get(n, [])
                if runs:
                    rows.append([str(n), label, seeds(runs), *(str(metric(runs, g)) for g in (*TYPES, "overall")),
                                 ci(runs)])
        return rows

    def pairs_of(section: str, profile: str, models: dict[str, dict[int, list[RunResult]]]) -> list[Pair]:
        sizes = sorted({n for by_n in models.values() for n in by_n})
        return [(f"BGA (n={n})", models.get("bga-mner", {}).get(n, []),
                 f"TEXT (n={n})", models.get("bert-crf", {}).get(n, [])) for n in sizes]

    header = ["train tweets", "model", "runs", *TYPES, "overall F1", "overall 95% CI"]
    return render_sections(title, "Fig. 5", header, series, rows_of, pairs_of)
