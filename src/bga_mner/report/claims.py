"""``claims.md``: one row per claim of the paper's Section 4, tested on the synthetic benchmark.

``make claims`` trains every setting below with several seeds into one folder, one run folder per
setting and seed named ``<setting>-seed<seed>`` (experiments/claims/README.md), and writes each
run's ``evidence.json`` (``analysis/evidence.py``: slice counts, Fig. 3 hits, Fig. 4 keep counts,
dev curves). :func:`build_claims` reads them and renders the table; docs/claims.md says how each
verdict is reached. Settings:

========================  ==============================================================
``bert_crf``              BERT-CRF (text only)
``bga``                   full BGA-MNER (generated visual context)
``real_context``          the control: the text branch attends to the REAL visual tokens
``wo_scs`` ...            Table 3's ablations (``wo_scs``, ``wo_cycle``, ``wo_scs_cycle``)
``bga_real_visual``       the ``bga`` runs re-tested with real visual tokens (Table 4)
``bga_n<N>``/``text_n<N>``  BGA-MNER / BERT-CRF trained on N tweets (Fig. 5)
``bga_alpha<A>``          BGA-MNER with the generation-loss weight alpha = A (docs/claims.md)
========================  ==============================================================

Verdicts: a claim that one system beats another is decided by ASO over seeds
(:func:`statistics.compare`, :func:`statistics.claim_verdict`), with the paired bootstrap interval
of the difference and the randomisation p-value shown beside it; a claim about a contrast of
several systems or about rates (Fig. 3, 4, 5) by the 95% paired bootstrap interval over test tweets,
seeds pooled (:func:`statistics.bootstrap_contrast`, :func:`statistics.ci_verdict`).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import numpy as np

from bga_mner.report.results import RunResult, paper_results, read_run
from bga_mner.report.statistics import (
    CONTRADICTED,
    INCONCLUSIVE,
    SUPPORTED,
    Arm,
    Comparison,
    Stat,
    TweetCounts,
    bootstrap_contrast,
    ci_verdict,
    claim_verdict,
    compare,
    pool_seeds,
    ratio_terms,
)
from bga_mner.report.tables import _md as _table
from bga_mner.report.tables import _num as _plain
from bga_mner.report.tables import _signed

CLAIMS_FILE = "claims.md"
EVIDENCE_FILE = "evidence.json"  # = bga_mner.analysis.evidence.EVIDENCE_FILE (this package is torch-free)
RUN_NAME = re.compile(r"^(?P<setting>[A-Za-z0-9_.]+)-seed(?P<seed>\d+)$")
ABLATIONS = (("w/o SCS", "wo_scs"), ("w/o cycle", "wo_cycle"), ("w/o SCS & cycle", "wo_scs_cycle"))
PAPER_SETS = ("twitter2015", "twitter2017")
HEADER = ["Claim (paper, Section 4)", "Ours: mean ± std over seeds (n)", "95% CI (tweets, seeds pooled)",
          "Paper", "Test", "Verdict"]


@dataclass
class ClaimRun:
    """One run of the claims folder: its results (with per-tweet counts) and its evidence."""

    result: RunResult
    evidence: dict[str, Any] = field(default_factory=dict)
    config: dict[str, Any] = field(default_factory=dict)  # the run's merged config (results.json)

    @property
    def f1(self) -> float:
        return float(self.result.test["overall"]["f1"])

    def counts(self, slice_name: str | None = None) -> TweetCounts:
        """Per-tweet counts of the whole test set (None) or of an evidence slice."""
        if slice_name is None:
            if self.result.counts is None:
                raise ValueError(f"{self.result.path}: no per-tweet counts (predictions/test_counts.json)")
            return self.result.counts
        data = self.evidence.get("slices", {}).get(slice_name)
        if data is None:
            raise ValueError(f"{self.result.path.parent / EVIDENCE_FILE}: no slice {slice_name!r}")
        return TweetCounts.from_lists(data["tp"], data["n_pred"], data["n_gold"], data["ids"], data["types"])


Runs = Mapping[str, Mapping[int, ClaimRun]]  # setting -> seed -> run


def load_claims_runs(runs_dir: str | Path) -> dict[str, dict[int, ClaimRun]]:
    """Every ``<setting>-seed<seed>/results.json`` directly under ``runs_dir``, with its evidence.

    Args:
        runs_dir: the claims folder (``make claims``'s ``CLAIMS_RUNS``).
    """
    runs_dir = Path(runs_dir)
    if not runs_dir.is_dir():
        raise FileNotFoundError(f"{runs_dir}: claims folder not found (run `make claims`)")
    runs: dict[str, dict[int, ClaimRun]] = {}
    for path in sorted(runs_dir.glob("*/results.json")):
        match = RUN_NAME.match(path.parent.name)
        if not match:
            continue
        evidence_path = path.parent / EVIDENCE_FILE
        evidence = json.loads(evidence_path.read_text(encoding="utf-8")) if evidence_path.is_file() else {}
        config = json.loads(path.read_text(encoding="utf-8")).get("config") or {}
        runs.setdefault(match["setting"], {})[int(match["seed"])] = ClaimRun(read_run(path), evidence, config)
    return runs


# ----------------------------------------------------------------------------- formatting
def _num(x: float | None, signed: bool = False) -> str:
    x = None if x is None or x != x else x  # NaN: no value
    return _signed(x) if signed else _plain(x)


def _ci(ci: tuple[float, float, float] | None, signed: bool = True) -> str:
    return "—" if ci is None else f"[{_num(ci[1], signed)}, {_num(ci[2], signed)}]"


def _eps(x: float | None) -> str:
    return "—" if x is None else f"{x:.3f}"


def _p(p: float | None) -> str:
    return "—" if p is None else f"{p:.4f}"


def _combine(verdicts: Sequence[str]) -> str:
    """Several sub-claims as one: supported when all are, contradicted when any is, else inconclusive."""
    if verdicts and all(v == SUPPORTED for v in verdicts):
        return SUPPORTED
    return CONTRADICTED if CONTRADICTED in verdicts else INCONCLUSIVE


def _md(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    return _table(header, rows) + "\n"


# ----------------------------------------------------------------------------- comparisons
@dataclass
class Versus:
    """A against B on the same seeds' test tweets: per-seed F1s, the difference's interval, the tests."""

    a: str
    b: str
    stat_a: Stat
    stat_b: Stat
    delta: Stat                      # per-seed A - B over the seeds both ran
    ci: tuple[float, float, float] | None
    comparison: Comparison
    verdict: str

    def ours(self) -> str:
        return f"Δ {_num(self.delta.mean, True)} ± {_num(self.delta.std)} ({self.a} {self.stat_a} vs " \
               f"{self.b} {self.stat_b}; n = {self.stat_a.n}, {self.stat_b.n})"

    def test(self) -> str:
        return (f"ASO ε_min({self.a} > {self.b}) = {_eps(self.comparison.eps_ab)}, "
                f"reverse {_eps(self.comparison.eps_ba)}; AR p = {_p(self.comparison.p_value)}")


def versus(runs: Runs, a: str, b: str, label_a: str, label_b: str,
           slice_name: str | None = None) -> Versus | None:
    """Setting ``a`` against setting ``b`` on the whole test set or on a slice (None when either
    has no run)."""
    ra, rb = runs.get(a, {}), runs.get(b, {})
    if not ra or not rb:
        return None
    ca = {s: r.counts(slice_name) for s, r in ra.items()}
    cb = {s: r.counts(slice_name) for s, r in rb.items()}
    fa = {s: c.score() for s, c in ca.items()}
    fb = {s: c.score() for s, c in cb.items()}
    comparison = compare(Arm(label_a, fa, ca), Arm(label_b, fb, cb))
    both = sorted(set(fa) & set(fb))
    ci = None
    if both:
        ci = bootstrap_contrast([ratio_terms(pool_seeds([ca[s] for s in both])),
                                 ratio_terms(pool_seeds([cb[s] for s in both]))], [1, -1], scale=100)
    return Versus(label_a, label_b, Stat([fa[s] for s in sorted(fa)]), Stat([fb[s] for s in sorted(fb)]),
                  Stat([fa[s] - fb[s] for s in both]), ci, comparison, claim_verdict(comparison))


def _paper_delta(table: str, a: str, b: str) -> str:
    paper = paper_results()[table]
    return ", ".join(f"{paper[a][d] - paper[b][d]:+.2f} ({d[-4:]})" for d in PAPER_SETS)


# ----------------------------------------------------------------------------- the claims
Row = list[str]


def claim_table2(runs: Runs) -> tuple[Row, list[Row]]:
    """Table 2: BGA-MNER beats BERT-CRF."""
    v = versus(runs, "bga", "bert_crf", "BGA-MNER", "BERT-CRF")
    claim = "Table 2: BGA-MNER beats BERT-CRF (test F1)"
    paper = _paper_delta("table3", "full", "wo_scs_mcg")
    if v is None:
        return [claim, "no runs", "—", paper, "—", INCONCLUSIVE], []
    return [claim, v.ours(), _ci(v.ci), paper, v.test(), v.verdict], []


def claim_table3(runs: Runs) -> tuple[Row, list[Row]]:
    """Table 3: each part helps: the full model beats every ablation."""
    claim = "Table 3: every part helps (full > w/o SCS, w/o cycle, w/o SCS & cycle)"
    paper = paper_results()["table3"]
    details, verdicts, ours = [], [], []
    for label, key in ABLATIONS:
        v = versus(runs, "bga", key, "full", label)
        p = ", ".join(f"{paper['full'][d] - paper[key][d]:+.2f}" for d in PAPER_SETS)
        if v is None:
            verdicts.append(INCONCLUSIVE)
            details.append([f"full vs {label}", "no runs", "—", p, "—", INCONCLUSIVE])
            continue
        verdicts.append(v.verdict)
        ours.append(f"{label} {_num(v.delta.mean, True)}")
        details.append([f"full vs {label}", v.ours(), _ci(v.ci), p, v.test(), v.verdict])
    return [claim, "Δ full − ablation: " + ", ".join(ours) if ours else "no runs", "see below",
            "drops 0.18–1.41 (both sets)", "ASO per ablation (below)", _combine(verdicts)], details


def claim_table4(runs: Runs) -> tuple[Row, list[Row]]:
    """Table 4: generated visual context at test is at least as good as real."""
    claim = "Table 4: generated ≥ real visual features at test (same trained runs)"
    v = versus(runs, "bga", "bga_real_visual", "generated", "real")
    paper = _paper_delta("table4", "generated", "real")
    if v is None:
        return [claim, "no runs", "—", paper, "—", INCONCLUSIVE], []
    note = "" if v.verdict != INCONCLUSIVE else " (no difference shown: consistent with ≥, not evidence for it)"
    return [claim, v.ours(), _ci(v.ci), paper, v.test(), v.verdict + note], []


def _evidence(runs: Runs, setting: str, key: str) -> dict[int, dict[str, Any]]:
    return {s: r.evidence[key] for s, r in runs.get(setting, {}).items() if key in r.evidence}


def _pooled_per_tweet(parts: Mapping[int, Mapping[str, Any]], field_: str) -> tuple[list[str], np.ndarray]:
    """A per-tweet array of ``field_`` summed over seeds (the same tweets in every seed)."""
    ids = None
    total = None
    for part in parts.values():
        if ids is None:
            ids = list(part["ids"])
        elif list(part["ids"]) != ids:
            raise ValueError("the runs' evidence is not of the same test tweets")
        arr = np.asarray(part[field_], dtype=float)
        total = arr if total is None else total + arr
    return ids or [], total if total is not None else np.zeros(0)


def claim_fig3(runs: Runs) -> tuple[Row, list[Row]]:
    """Fig. 3: a tweet's generated visual features retrieve its own image above chance."""
    claim = "Fig. 3: generated visual features retrieve the tweet's own image above chance (recall@1)"
    parts = _evidence(runs, "bga", "retrieval")
    if not parts:
        return [claim, "no evidence", "—", "figure only", "—", INCONCLUSIVE], []
    n = {p["n"] for p in parts.values()}.pop()
    per_seed = Stat([100 * float(np.mean(p["hit_at_1"])) for _, p in sorted(parts.items())])
    _, hits = _pooled_per_tweet(parts, "hit_at_1")
    trials = np.full_like(hits, float(len(parts)))
    ci = bootstrap_contrast([(hits, trials)], [1], scale=100)
    chance = 100 / n
    r5 = Stat([100 * float(np.mean(p["hit_at_5"])) for _, p in sorted(parts.items())])
    ours = f"recall@1 {per_seed}% vs chance {chance:.2f}% (n = {n} images, {per_seed.n} seeds); recall@5 {r5}% vs {500 / n:.2f}%"
    return [claim, ours, _ci(ci, signed=False) + "%", "figure only",
            f"bootstrap CI against chance {chance:.2f}%", ci_verdict(ci[1], ci[2], chance)], []


def claim_fig4(runs: Runs) -> tuple[Row, list[Row]]:
    """Fig. 4: the samplers keep entity word pieces more than filler, and object crops more than
    the global image."""
    claim = "Fig. 4: the samplers keep entity tokens more than filler, object crops more than the global image"
    parts = _evidence(runs, "bga", "keep")
    if not parts:
        return [claim, "no evidence", "—", "figure only", "—", INCONCLUSIVE], []
    details, verdicts, ours = [], [], []
    for label, more, less in (("text: entity − filler pieces", "entity", "filler"),
                              ("visual: crop − global patches", "crops", "global")):
        terms = []
        for key in (more, less):
            _, pooled = _pooled_per_tweet({s: {"ids": p["ids"], key: p[key]} for s, p in parts.items()}, key)
            pooled = pooled.reshape(-1, 2)
            terms.append((pooled[:, 0], pooled[:, 1]))
        ci = bootstrap_contrast(terms, [1, -1], scale=100)
        seeds = []
        for _, p in sorted(parts.items()):
            a, b = np.asarray(p[more], float).sum(0), np.asarray(p[less], float).sum(0)
            seeds.append(100 * (a[0] / a[1] - b[0] / b[1]) if a[1] and b[1] else float("nan"))
        rates = " vs ".join(f"{key} {100 * terms[i][0].sum() / max(terms[i][1].sum(), 1):.1f}%"
                            for i, key in enumerate((more, less)))
        verdict = ci_verdict(ci[1], ci[2])
        verdicts.append(verdict)
        ours.append(f"{label} {Stat(seeds)} pp")
        details.append([label, f"{Stat(seeds)} pp ({rates}, seeds pooled)", _ci(ci) + " pp",
                        "figure only", "bootstrap CI against 0", verdict])
    return [claim, "; ".join(ours), "see below", "figure only", "bootstrap CI against 0 (below)",
            _combine(verdicts)], details


def fig5_sizes(runs: Runs) -> list[int]:
    """The training-set sizes with both ``bga_n<N>`` and ``text_n<N>`` runs, ascending."""
    sizes = {int(k[5:]) for k in runs if k.startswith("bga_n") and k[5:].isdigit()}
    return sorted(n for n in sizes if f"text_n{n}" in runs)


def claim_fig5(runs: Runs, full_size: int | None) -> tuple[Row, list[Row]]:
    """Fig. 5: BGA-MNER's gain over BERT-CRF grows as the training set shrinks."""
    claim = "Fig. 5: the gain over BERT-CRF grows as training data shrinks (smallest size vs full set)"
    sizes = fig5_sizes(runs)
    levels = [(f"n = {n}", f"bga_n{n}", f"text_n{n}") for n in sizes]
    levels.append((f"full set (n = {full_size})", "bga", "bert_crf"))
    details, gains = [], {}
    for label, bga, text in levels:
        v = versus(runs, bga, text, "BGA", "TEXT")
        if v is None:
            continue
        gains[label] = (bga, text)
        details.append([f"gain at {label}", v.ours(), _ci(v.ci), "figure: BGA above TEXT", v.test(), v.verdict])
    if len(gains) < 2 or not sizes:
        return [claim, "needs runs at two sizes", "—", "figure only", "—", INCONCLUSIVE], details
    (small, (bs, ts)), (large, (bl, tl)) = list(gains.items())[0], list(gains.items())[-1]
    seeds = sorted(set(runs[bs]) & set(runs[ts]) & set(runs[bl]) & set(runs[tl]))
    pooled = [pool_seeds([runs[k][s].counts() for s in seeds]) for k in (bs, ts, bl, tl)]
    ci = bootstrap_contrast([ratio_terms(c) for c in pooled], [1, -1, -1, 1], scale=100)
    per_seed = Stat([(runs[bs][s].f1 - runs[ts][s].f1) - (runs[bl][s].f1 - runs[tl][s].f1) for s in seeds])
    ours = f"gain at {small} − gain at {large}: {_num(per_seed.mean, True)} ± {_num(per_seed.std)} pp (n = {per_seed.n})"
    return [claim, ours, _ci(ci) + " pp", "figure only (text: BGA above TEXT at every size)",
            "paired bootstrap CI against 0", ci_verdict(ci[1], ci[2])], details


CLAIMS: tuple[Callable[..., tuple[Row, list[Row]]], ...] = (claim_table2, claim_table3, claim_table4,
                                                          claim_fig3, claim_fig4)


def slices_table(runs: Runs) -> str:
    """BGA-MNER and the real-context control against BERT-CRF on the whole test set and on each slice."""
    rows = []
    for slice_name, what in ((None, "whole test set"), ("image_told", "image-told names"),
                             ("unseen", "unseen names")):
        for a, label in (("bga", "BGA-MNER"), ("real_context", "real-context control")):
            try:
                v = versus(runs, a, "bert_crf", label, "BERT-CRF", slice_name)
            except ValueError:
                v = None
            if v is None:
                continue
            rows.append([what, f"{label} vs BERT-CRF", v.ours(), _ci(v.ci), v.test(), v.comparison.verdict])
    if not rows:
        return ""
    return ("## The slices and the control\n\nF1 on the test slices of the benchmark (docs/synthetic.md); the "
            "real-context control reads the real image in training and at test, so its gain on the "
            "image-told names is the most that images can add there.\n\n"
            + _md(["Test tweets", "Comparison", "Ours", "95% CI of Δ", "Test", "ASO verdict"], rows))


def alpha_table(runs: Runs) -> str:
    """BGA-MNER at several generation-loss weights: F1, its gain over BERT-CRF, retrieval and how far
    the dev generation loss fell."""
    alphas = sorted((float(k[9:]), k) for k in runs if k.startswith("bga_alpha"))
    if not alphas:
        return ""
    default = runs.get("bga", {})
    alpha0 = None
    if default:
        first = next(iter(default.values()))
        alpha0 = float((first.config.get("model") or {}).get("alpha", 0.001))
    rows = []
    for alpha, key in sorted(([(alpha0, "bga")] if alpha0 is not None else []) + alphas):
        v = versus(runs, key, "bert_crf", f"α={alpha:g}", "BERT-CRF")
        image_told = versus(runs, key, "bert_crf", f"α={alpha:g}", "BERT-CRF", "image_told")
        r1 = _evidence(runs, key, "retrieval")
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
    if full_size is None and runs.get("bga"):
        data_cfg = next(iter(runs["bga"].values())).config.get("data") or {}
        full_size = data_cfg.get("train_limit") or (data_cfg.get("synthetic") or {}).get("train")
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
        v = versus(runs, "bga", "bert_crf", "BGA-MNER", "BERT-CRF", slice_name)
        if v is None:
            continue
        entities = ""
        if slice_name is not None:
            first = next(iter(runs["bga"].values())).counts(slice_name)
            entities = f" ({int(first.n_gold.sum())} entities per seed)"
        rows.append([what + entities, v.ours(), _ci(v.ci), v.test(), v.comparison.verdict])
    for claim in (claim_fig3, claim_fig4):
        row, details = claim(runs)
        rows.append([row[0].split(":")[0], row[1], row[2], row[4], row[5]])
        rows += [[f"  {d[0]}", d[1], d[2], d[4], d[5]] for d in details]
    seeds = sorted(runs.get("bga", {}))
    note = ("\n_A single seed supports no comparison: the verdicts need at least 2 seeds per model._\n"
            if len(seeds) < 2 else "")
    return (f"## Demo: BGA-MNER vs BERT-CRF on the synthetic benchmark, seeds {seeds}\n\n"
            + _md(["", "Ours: mean ± std over seeds (n)", "95% CI (tweets, seeds pooled)", "Test", "Verdict"], rows)
            + note)
