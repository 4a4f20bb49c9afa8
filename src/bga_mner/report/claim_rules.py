"""The claims of the paper's Section 4 as rules: each turns a claims folder's runs into a row (our
number, its interval, the paper's, the test, a verdict) and sub-rows; :mod:`bga_mner.report.claims`
renders them as ``claims.md``.

``make claims`` trains every setting with several seeds into one folder, one run folder per setting
and seed, ``<setting>-seed<seed>`` (experiments/claims/README.md), and writes each run's
``evidence.json`` (``analysis/evidence.py``: slice counts, Fig. 3 hits, Fig. 4 keep counts, dev
curves). The settings are the registry's (:mod:`bga_mner.registry`): each experiment's ``claims:``
name (``bga`` is full BGA-MNER, :data:`~bga_mner.registry.REFERENCE`; ``bert_crf``, the Table 3
ablations, ``real_context``, ``bga_real_visual``: the ``bga`` runs re-tested with real visual
tokens), the Fig. 5 sizes ``<prefix><N>`` of each ``data_limited`` variant (``bga_n<N>``,
``text_n<N>``) and ``bga_alpha<A>`` (the generation-loss weight alpha = A, from the run's config).
Each claim compares settings through the rows of its table in the registry.

Verdicts: a claim that one system beats another is decided by ASO over seeds
(:func:`~bga_mner.report.significance.compare`, :func:`~bga_mner.report.significance.claim_verdict`),
with the paired bootstrap interval of the difference and the randomisation p-value shown beside it; a
claim about a contrast of several systems or about rates (Fig. 3, 4, 5) by the 95% paired bootstrap
interval over test tweets, seeds pooled (:func:`~bga_mner.report.bootstrap.bootstrap_contrast`,
:func:`~bga_mner.report.bootstrap.ci_verdict`). docs/claims.md says how each verdict is reached.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import numpy as np

from bga_mner import registry
from bga_mner.registry import BASELINE, REFERENCE
from bga_mner.report.bootstrap import bootstrap_contrast, ci_verdict, ratio_terms
from bga_mner.report.markdown import num, signed
from bga_mner.report.results import PAPER_DATASETS, RunResult, read_run
from bga_mner.report.significance import Arm, Comparison, claim_verdict, compare
from bga_mner.report.statistics import CONTRADICTED, INCONCLUSIVE, SUPPORTED, Stat, TweetCounts, pool_seeds
from bga_mner.report.tables import paper_number, table_rows

EVIDENCE_FILE = "evidence.json"  # = bga_mner.analysis.evidence.EVIDENCE_FILE (this package is torch-free)
RUN_NAME = re.compile(r"^(?P<setting>[A-Za-z0-9_.]+)-seed(?P<seed>\d+)$")  # make claims' run folders
Row = list[str]


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
        config = json.loads(path.read_text(encoding="utf-8"))["config"]
        runs.setdefault(match["setting"], {})[int(match["seed"])] = ClaimRun(read_run(path), evidence, config)
    return runs


# ----------------------------------------------------------------------------- formatting
def ci_text(ci: tuple[float, float, float] | None, signed_: bool = True) -> str:
    """``[low, high]`` of a :func:`~bga_mner.report.bootstrap.bootstrap_contrast` interval."""
    return "—" if ci is None else f"[{(signed if signed_ else num)(ci[1])}, {(signed if signed_ else num)(ci[2])}]"


def _eps(x: float | None) -> str:
    return "—" if x is None else f"{x:.3f}"


def _p(p: float | None) -> str:
    return "—" if p is None else f"{p:.4f}"


def _combine(verdicts: Sequence[str]) -> str:
    """Several sub-claims as one: supported when all are, contradicted when any is, else inconclusive."""
    if verdicts and all(v == SUPPORTED for v in verdicts):
        return SUPPORTED
    return CONTRADICTED if CONTRADICTED in verdicts else INCONCLUSIVE


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
        return f"Δ {signed(self.delta.mean)} ± {num(self.delta.std)} ({self.a} {self.stat_a} vs " \
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


def reference() -> str:
    """The setting of full BGA-MNER (the registry's reference experiment)."""
    return registry.claims_setting(REFERENCE)


def _others(table: str, exclude: tuple[str, ...] = ()) -> list[tuple[str, registry.Row]]:
    """(setting, row) of the rows of ``table`` other than full BGA-MNER (and ``exclude``) that have a
    setting in make claims."""
    return [(exp.claims, row) for exp, row in registry.rows(table)
            if exp.name not in (REFERENCE, *exclude) and exp.claims]


def _paper_f1(table: str, key: str | None, dataset: str) -> float | None:
    value = paper_number(table, key, dataset, "full")
    return value["f1"] if isinstance(value, Mapping) else value


def _paper_deltas(table: str, key: str | None, versus_key: str | None) -> list[float]:
    """The paper's F1 of row ``key`` minus that of row ``versus_key`` on each of its data sets."""
    pairs = [(_paper_f1(table, key, d), _paper_f1(table, versus_key, d)) for d in PAPER_DATASETS]
    return [a - b for a, b in pairs if a is not None and b is not None]


def _paper_delta(table: str, key: str | None, versus_key: str | None) -> str:
    deltas = _paper_deltas(table, key, versus_key)
    return ", ".join(f"{x:+.2f} ({d[-4:]})" for x, d in zip(deltas, PAPER_DATASETS)) or "not in the paper"


def _reference_row(table: str) -> registry.Row:
    return next(row for name, row in table_rows(table) if name == REFERENCE)


def versus_row(runs: Runs, claim: str, a: str, b: str, label_a: str, label_b: str, paper: str) -> Row:
    """A claim that setting ``a`` beats setting ``b``: ``[claim, ours, CI of Δ, paper, test, verdict]``."""
    v = versus(runs, a, b, label_a, label_b)
    if v is None:
        return [claim, "no runs", "—", paper, "—", INCONCLUSIVE]
    return [claim, v.ours(), ci_text(v.ci), paper, v.test(), v.verdict]


# ----------------------------------------------------------------------------- the claims
def claim_table2(runs: Runs) -> tuple[Row, list[Row]]:
    """Table 2: BGA-MNER beats the other row of Table 2 (BERT-CRF; a further row would be a sub-claim)."""
    ours = _reference_row("2")
    rows = [versus_row(runs, f"Table 2: {ours.label} beats {row.label} (test F1)", reference(), setting,
                       ours.label, row.label, _paper_delta("2", ours.paper, row.paper))
            for setting, row in _others("2")]
    return rows[0], rows[1:]


def claim_table3(runs: Runs) -> tuple[Row, list[Row]]:
    """Table 3: each part helps: the full model beats every other row of Table 3 but those of Table 2
    (BERT-CRF, whose claim is Table 2's)."""
    others = _others("3", exclude=tuple(name for name, _ in table_rows("2")))
    full_key = _reference_row("3").paper
    details = [versus_row(runs, f"full vs {row.label}", reference(), setting, "full", row.label,
                          ", ".join(f"{x:+.2f}" for x in _paper_deltas("3", full_key, row.paper)) or "not in the paper")
               for setting, row in others]
    ours = [f"{row.label} {signed(v.delta.mean)}" for setting, row in others
            if (v := versus(runs, reference(), setting, "full", row.label)) is not None]
    drops = [x for _, row in others for x in _paper_deltas("3", full_key, row.paper)]
    paper = f"drops {min(drops):.2f}–{max(drops):.2f} (both sets)" if drops else "not in the paper"
    return [f"Table 3: every part helps (full > {', '.join(row.label for _, row in others)})",
            "Δ full − ablation: " + ", ".join(ours) if ours else "no runs", "see below", paper,
            "ASO per ablation (below)", _combine([d[-1] for d in details])], details


def claim_table4(runs: Runs) -> tuple[Row, list[Row]]:
    """Table 4: generated visual context at test is at least as good as real (the other row of Table 4)."""
    ((setting, row),) = _others("4")
    out = versus_row(runs, "Table 4: generated ≥ real visual features at test (same trained runs)", reference(),
                     setting, "generated", "real", _paper_delta("4", _reference_row("4").paper, row.paper))
    if out[-1] == INCONCLUSIVE and out[1] != "no runs":
        out[-1] += " (no difference shown: consistent with ≥, not evidence for it)"
    return out, []


def evidence_of(runs: Runs, setting: str, key: str) -> dict[int, dict[str, Any]]:
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
    parts = evidence_of(runs, reference(), "retrieval")
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
    return [claim, ours, ci_text(ci, signed_=False) + "%", "figure only",
            f"bootstrap CI against chance {chance:.2f}%", ci_verdict(ci[1], ci[2], chance)], []


def claim_fig4(runs: Runs) -> tuple[Row, list[Row]]:
    """Fig. 4: the samplers keep entity word pieces more than filler, and object crops more than
    the global image."""
    claim = "Fig. 4: the samplers keep entity tokens more than filler, object crops more than the global image"
    parts = evidence_of(runs, reference(), "keep")
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
        details.append([label, f"{Stat(seeds)} pp ({rates}, seeds pooled)", ci_text(ci) + " pp",
                        "figure only", "bootstrap CI against 0", verdict])
    return [claim, "; ".join(ours), "see below", "figure only", "bootstrap CI against 0 (below)",
            _combine(verdicts)], details


def fig5_settings() -> tuple[str, str]:
    """The setting prefixes of the Fig. 5 sizes in make claims: (BGA-MNER's, BERT-CRF's), the variants
    of the experiment with a Fig. 5 row (``<prefix><N>``: N training tweets)."""
    (exp, _), *_ = registry.rows("fig5")
    bga = next(v.claims for v in exp.variants if v.like == REFERENCE)
    text = next(v.claims for v in exp.variants if v.like != REFERENCE)
    return bga, text  # type: ignore[return-value]


def fig5_sizes(runs: Runs) -> list[int]:
    """The training-set sizes with runs of both Fig. 5 variants (``bga_n<N>`` and ``text_n<N>``), ascending."""
    bga, text = fig5_settings()
    sizes = {int(k[len(bga):]) for k in runs if k.startswith(bga) and k[len(bga):].isdigit()}
    return sorted(n for n in sizes if f"{text}{n}" in runs)


def claim_fig5(runs: Runs, full_size: int | None) -> tuple[Row, list[Row]]:
    """Fig. 5: BGA-MNER's gain over BERT-CRF grows as the training set shrinks."""
    claim = "Fig. 5: the gain over BERT-CRF grows as training data shrinks (smallest size vs full set)"
    sizes = fig5_sizes(runs)
    bga, text = fig5_settings()
    levels = [(f"n = {n}", f"{bga}{n}", f"{text}{n}") for n in sizes]
    levels.append((f"full set (n = {full_size})", reference(), registry.claims_setting(BASELINE)))
    details, gains = [], {}
    for label, bga, text in levels:
        v = versus(runs, bga, text, "BGA", "TEXT")
        if v is None:
            continue
        gains[label] = (bga, text)
        details.append([f"gain at {label}", v.ours(), ci_text(v.ci), "figure: BGA above TEXT", v.test(), v.verdict])
    if len(gains) < 2 or not sizes:
        return [claim, "needs runs at two sizes", "—", "figure only", "—", INCONCLUSIVE], details
    (small, (bs, ts)), (large, (bl, tl)) = list(gains.items())[0], list(gains.items())[-1]
    seeds = sorted(set(runs[bs]) & set(runs[ts]) & set(runs[bl]) & set(runs[tl]))
    pooled = [pool_seeds([runs[k][s].counts() for s in seeds]) for k in (bs, ts, bl, tl)]
    ci = bootstrap_contrast([ratio_terms(c) for c in pooled], [1, -1, -1, 1], scale=100)
    per_seed = Stat([(runs[bs][s].f1 - runs[ts][s].f1) - (runs[bl][s].f1 - runs[tl][s].f1) for s in seeds])
    ours = f"gain at {small} − gain at {large}: {signed(per_seed.mean)} ± {num(per_seed.std)} pp (n = {per_seed.n})"
    return [claim, ours, ci_text(ci) + " pp", "figure only (text: BGA above TEXT at every size)",
            "paired bootstrap CI against 0", ci_verdict(ci[1], ci[2])], details


CLAIMS: tuple[Callable[..., tuple[Row, list[Row]]], ...] = (claim_table2, claim_table3, claim_table4,
                                                          claim_fig3, claim_fig4)
