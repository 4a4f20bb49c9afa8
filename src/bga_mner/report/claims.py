"""``claims.md``: one row per claim of the paper's Section 4, tested on the synthetic benchmark.

:func:`build_claims` reads a claims folder (``make claims``; :func:`~bga_mner.report.claim_rules.load_claims_runs`)
and renders the rows of the claims (:mod:`bga_mner.report.claim_rules`: how each is decided), then two
more tables: the slices and the real-context control (:func:`slices_table`) and the generation-loss
weight (:func:`alpha_table`). :func:`demo_summary` is what ``make demo`` prints last.
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np

from bga_mner import registry
from bga_mner.registry import BASELINE
from bga_mner.report.claim_rules import (CLAIMS, Runs, ci_text, claim_fig3, claim_fig4, claim_fig5, evidence_of,
                                         load_claims_runs, reference, versus)
from bga_mner.report.markdown import md
from bga_mner.report.statistics import Stat

CLAIMS_FILE = "claims.md"
HEADER = ["Claim (paper, Section 4)", "Ours: mean ± std over seeds (n)", "95% CI (tweets, seeds pooled)",
          "Paper", "Test", "Verdict"]


def _md(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    return md(header, rows) + "\n"


def _baseline() -> str:
    """The setting of BERT-CRF (the registry's baseline)."""
    return registry.claims_setting(BASELINE)


def slices_table(runs: Runs) -> str:
    """BGA-MNER and the real-context control against BERT-CRF on the whole test set and on each slice."""
    rows = []
    for slice_name, what in ((None, "whole test set"), ("image_told", "image-told names"),
                             ("unseen", "unseen names")):
        for a, label in ((reference(), "BGA-MNER"), (registry.claims_setting("real_context"), "real-context control")):
            try:
                v = versus(runs, a, _baseline(), label, "BERT-CRF", slice_name)
            except ValueError:
                v = None
            if v is None:
                continue
            rows.append([what, f"{label} vs BERT-CRF", v.ours(), ci_text(v.ci), v.test(), v.comparison.verdict])
    if not rows:
        return ""
    return ("## The slices and the control\n\nF1 on the test slices of the benchmark (docs/synthetic.md); the "
            "real-context control reads the real image in training and at test, so its gain on the "
            "image-told names is the most that images can add there.\n\n"
            + _md(["Test tweets", "Comparison", "Ours", "95% CI of Δ", "Test", "ASO verdict"], rows))


def alpha_table(runs: Runs) -> str:
    """BGA-MNER at several generation-loss weights: F1, its gain over BERT-CRF, retrieval and how far
    the dev generation loss fell."""
    # BGA-MNER at another alpha: make claims' <reference>_alpha<A>; each run records its alpha
    ref = reference()
    keys = [k for k in runs if k.startswith(f"{ref}_alpha")]
    if not keys:
        return ""
    alphas = sorted((float(next(iter(runs[k].values())).config["model"]["alpha"]), k)
                    for k in [ref, *keys] if runs.get(k))
    rows = []
    for alpha, key in alphas:
        v = versus(runs, key, _baseline(), f"α={alpha:g}", "BERT-CRF")
        image_told = versus(runs, key, _baseline(), f"α={alpha:g}", "BERT-CRF", "image_told")
        r1 = evidence_of(runs, key, "retrieval")
        recall = Stat([100 * float(np.mean(p["hit_at_1"])) for p in r1.values()])
        falls = []
        for run in runs[key].values():
            curve = run.evidence.get("dev_curve", {}).get("val/recon", [])
            if len(curve) >= 2 and curve[0]:
                falls.append(100 * (1 - min(curve) / curve[0]))
        rows.append([f"{alpha:g}", str(v.stat_a) if v else "—", v.ours().split(" (")[0] if v else "—",
                     v.comparison.verdict if v else "—",
                     image_told.ours().split(" (")[0] if image_told else "—",
                     f"{recall}%" if recall.n else "—", f"{Stat(falls)}%" if falls else "—"])
    return ("## The generation-loss weight α\n\nWhat α leaves the generators and the text branch "
            "to learn in this budget (docs/claims.md).\n\n"
            + _md(["α", "test F1", "Δ vs BERT-CRF", "ASO verdict", "Δ on image-told names",
                   "Fig. 3 recall@1", "dev recon loss fall (epoch 1 → best)"], rows))


def build_claims(runs_dir: str | Path, full_size: int | None = None) -> str:
    """The markdown of ``claims.md`` for a claims folder.

    Args:
        runs_dir: the claims folder.
        full_size: tweets in the full training set (the Fig. 5 row's label; default: from the
            ``bga`` runs' config).
    """
    runs = load_claims_runs(runs_dir)
    if full_size is None and runs.get(reference()):
        data_cfg = next(iter(runs[reference()].values())).config["data"]
        full_size = data_cfg["train_limit"] or data_cfg["synthetic"]["train"]
    seeds = sorted({s for by_seed in runs.values() for s in by_seed})
    rows, details = [], []
    for claim in CLAIMS:
        row, sub = claim(runs)
        rows.append(row)
        details += sub
    row, sub = claim_fig5(runs, full_size)
    rows.append(row)
    details += sub
    settings = ", ".join(f"{k} ({len(v)})" for k, v in sorted(runs.items()))
    out = ["# The paper's Section 4 claims on the synthetic benchmark\n\n",
           f"Runs: `{runs_dir}`; seeds {seeds}; settings (runs): {settings}. Synthetic data and small "
           "random-init models: these verdicts are about this benchmark, not about Twitter-2015/2017. "
           "How each verdict is reached: docs/claims.md.\n\n",
           _md(HEADER, rows), "\n## Sub-claims\n\n", _md(HEADER, details)]
    for extra in (slices_table(runs), alpha_table(runs)):
        if extra:
            out += ["\n", extra]
    return "".join(out)


def demo_summary(runs_dir: str | Path) -> str:
    """What ``make demo`` prints last: BGA-MNER against BERT-CRF over the demo's seeds (F1 with CIs and
    the ASO verdict, on the whole test set and on the image-told and unseen names), the Fig. 3
    retrieval against chance and the Fig. 4 keep rates.

    Args:
        runs_dir: the demo's runs folder (``bga-seed<s>`` and ``bert_crf-seed<s>`` runs).
    """
    runs = load_claims_runs(runs_dir)
    rows = []
    for slice_name, what in ((None, "test F1, all entities"), ("image_told", "F1 on image-told names"),
                             ("unseen", "F1 on unseen names")):
        v = versus(runs, reference(), _baseline(), "BGA-MNER", "BERT-CRF", slice_name)
        if v is None:
            continue
        entities = ""
        if slice_name is not None:
            first = next(iter(runs[reference()].values())).counts(slice_name)
            entities = f" ({int(first.n_gold.sum())} entities per seed)"
        rows.append([what + entities, v.ours(), ci_text(v.ci), v.test(), v.comparison.verdict])
    for claim in (claim_fig3, claim_fig4):
        row, details = claim(runs)
        rows.append([row[0].split(":")[0], row[1], row[2], row[4], row[5]])
        rows += [[f"  {d[0]}", d[1], d[2], d[4], d[5]] for d in details]
    seeds = sorted(runs.get(reference(), {}))
    note = ("\n_A single seed supports no comparison: the verdicts need at least 2 seeds per model._\n"
            if len(seeds) < 2 else "")
    return (f"## Demo: BGA-MNER vs BERT-CRF on the synthetic benchmark, seeds {seeds}\n\n"
            + _md(["", "Ours: mean ± std over seeds (n)", "95% CI (tweets, seeds pooled)", "Test", "Verdict"], rows)
            + note)
