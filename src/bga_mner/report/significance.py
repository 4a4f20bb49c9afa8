"""Significance tests of one comparison, A against B (docs/statistics.md).

- :func:`randomisation_test`: the within-seed test, paired approximate randomisation over test
  tweets (``scipy.stats.permutation_test``, ``permutation_type="samples"``): under the null the
  two systems' outputs of a tweet are exchangeable, so each (seed, tweet) unit swaps them with
  probability 1/2; the statistic is the difference of micro F1. Runs of the same seed are paired
  and the paired seeds are pooled into one test (units = seed × tweet). Exact (all 2^k swaps of
  the k units on which the systems differ) when 2^k <= the number of resamples.
- :func:`aso`: the across-seed test, Almost Stochastic Order (Dror et al. 2019; ``deepsig``,
  Ulmer et al. 2022) on the per-seed test F1s, both directions from one bootstrap. A is declared
  better when eps_min(A > B) < :data:`ASO_THRESHOLD` (0.2, deepsig's recommended threshold).
- :func:`compare`: both for one comparison row, with a plain :func:`verdict`;
  :func:`claim_verdict` turns it into a claim's verdict (supported, contradicted, inconclusive).

Every random draw is seeded with :data:`~bga_mner.report.statistics.SEED`.
"""

from __future__ import annotations

import logging
import statistics
import warnings
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Mapping, Sequence

import numpy as np

from bga_mner.data.spans import prf
from bga_mner.report.statistics import (CONFIDENCE, CONTRADICTED, INCONCLUSIVE, SEED, SUPPORTED, TweetCounts,
                                        check_same_tweets)

log = logging.getLogger(__package__)

ASO_THRESHOLD = 0.2
RANDOMISATION_RESAMPLES = 9999
ASO_ITERATIONS = 1000  # deepsig's default number of bootstrap iterations
NO_TEST = "n<2: no test"
NO_DIFFERENCE = "no difference shown"


def randomisation_test(a: Sequence[TweetCounts], b: Sequence[TweetCounts], group: str = "overall",
                       resamples: int = RANDOMISATION_RESAMPLES, seed: int = SEED) -> float:
    """Two-sided p-value of paired approximate randomisation: is the micro-F1 difference of system A
    and system B larger than swapping their outputs tweet by tweet makes it?

    Args:
        a: system A's counts, one per seed.
        b: system B's counts of the same seeds in the same order, all of the same tweets.
        group: ``overall`` or an entity type.
        resamples: random swap patterns; the test is exact (all 2^k patterns of the k units on
            which the systems differ) when 2^k <= ``resamples``.
        seed: seed of the swap generator.
    """
    if len(a) != len(b) or not a:
        raise ValueError(f"{len(a)} runs of A but {len(b)} of B: pair each seed once")
    check_same_tweets([*a, *b])
    from scipy.stats import permutation_test

    # one unit per (seed, tweet); the data are unit indices into [A's units; B's units], so that
    # scipy's paired permutation (swap x[i] and y[i]) swaps the two systems' outputs of unit i.
    # The gold counts of a unit are the same on both sides, so only tp and n_pred move: a side's
    # sums are A's (or B's) sums plus the swapped units' differences (one matrix product).
    tp_a, pred_a, gold = (np.concatenate([c.group(group)[k] for c in a]).astype(float) for k in range(3))
    tp_b, pred_b = (np.concatenate([c.group(group)[k] for c in b]).astype(float) for k in range(2))
    n_gold, sums = gold.sum(), (tp_a.sum(), pred_a.sum(), tp_b.sum(), pred_b.sum())
    # a unit on which both systems have the same counts changes nothing when swapped: only the
    # others are permuted (the same p-value; scipy's paired permutation loops over units in Python)
    moves = (tp_a != tp_b) | (pred_a != pred_b)
    d_tp, d_pred = (tp_b - tp_a)[moves], (pred_b - pred_a)[moves]
    units = int(moves.sum())
    if units < 2:
        # identical outputs: every swap gives the observed difference, 0. One unit that differs: its
        # two patterns give +d and -d, both as far from 0 as the observed d (scipy needs two units)
        return 1.0

    def statistic(x: np.ndarray, y: np.ndarray, axis: int = -1) -> np.ndarray:
        swapped = np.moveaxis(x >= units, axis, -1).astype(float)  # x holds B's unit where swapped
        moved_tp, moved_pred = swapped @ d_tp, swapped @ d_pred
        f1_x = prf(sums[0] + moved_tp, sums[1] + moved_pred, n_gold)["f1"]
        f1_y = prf(sums[2] - moved_tp, sums[3] - moved_pred, n_gold)["f1"]
        return f1_x - f1_y

    res = permutation_test((np.arange(units), np.arange(units) + units), statistic,
                           permutation_type="samples", vectorized=True, n_resamples=resamples,
                           batch=max(1, 1_000_000 // units), alternative="two-sided",
                           rng=np.random.default_rng(seed))
    return float(res.pvalue)


@lru_cache(maxsize=256)
def _aso_cached(a: tuple[float, ...], b: tuple[float, ...], confidence: float, iterations: int,
                seed: int) -> tuple[float, float]:
    from deepsig import multi_aso  # imports pandas: only when a test runs

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # e.g. "Division by zero" for two identical score lists
        # use_bonferroni=False: one comparison needs no correction, and deepsig 1.2.8's correction
        # for it raises the confidence level to 1 (eps_min NaN)
        eps = multi_aso({"A": list(a), "B": list(b)}, confidence_level=confidence, use_bonferroni=False,
                        num_bootstrap_iterations=iterations, num_jobs=1, show_progress=False, seed=seed)
    return float(eps[0, 1]), float(eps[1, 0])


def aso(scores_a: Sequence[float], scores_b: Sequence[float], confidence: float = CONFIDENCE,
        iterations: int | None = None, seed: int = SEED) -> tuple[float, float]:
    """Almost Stochastic Order over seeds (``deepsig.multi_aso`` with two systems): eps_min of
    "A is better than B" and of "B is better than A" (0: total stochastic dominance; 0.5 and above:
    none). Both come from one bootstrap; the result is cached (a comparison shared by two tables
    runs once).

    Args:
        scores_a: A's score per seed (at least one).
        scores_b: B's score per seed.
        confidence: the test's confidence level.
        iterations: deepsig's bootstrap iterations (default :data:`ASO_ITERATIONS`).
        seed: deepsig's seed.

    Returns:
        (eps_min(A > B), eps_min(B > A)).
    """
    if not scores_a or not scores_b:
        raise ValueError("ASO needs at least one score on each side")
    iterations = ASO_ITERATIONS if iterations is None else iterations
    return _aso_cached(tuple(map(float, scores_a)), tuple(map(float, scores_b)), confidence, iterations, seed)


def verdict(label_a: str, label_b: str, eps_ab: float | None, eps_ba: float | None,
            threshold: float = ASO_THRESHOLD) -> str:
    """The plain verdict of an ASO result: ``"<A> better"``, ``"<B> better"``, ``"no difference
    shown"``, or ``"n<2: no test"`` when the test was not run (None).

    Args:
        label_a: A's name.
        label_b: B's name.
        eps_ab: eps_min(A > B), None without a test.
        eps_ba: eps_min(B > A), None without a test.
        threshold: A is better when eps_min(A > B) is below it.
    """
    if eps_ab is None or eps_ba is None:
        return NO_TEST
    if eps_ab < threshold and eps_ab <= eps_ba:
        return f"{label_a} better"
    if eps_ba < threshold:
        return f"{label_b} better"
    return NO_DIFFERENCE


@dataclass(frozen=True)
class Arm:
    """One side of a comparison: a name, its test F1 per seed and, for the seeds that have them,
    its per-tweet counts."""

    label: str
    f1: Mapping[int, float]
    counts: Mapping[int, TweetCounts] = field(default_factory=dict)


@dataclass(frozen=True)
class Comparison:
    """One comparison row: A against B.

    Attributes:
        a, b: the names.
        n_a, n_b: seeds of each.
        delta: mean test F1 of A minus that of B (over their seeds).
        eps_ab, eps_ba: ASO eps_min of A > B and of B > A; None with fewer than 2 seeds on a side.
        p_value: paired approximate randomisation over tweets, pooled over the paired seeds; None
            without a seed that both sides ran with per-tweet counts of the same tweets.
        paired_seeds: the seeds of the randomisation test.
        verdict: :func:`verdict` of the ASO result.
    """

    a: str
    b: str
    n_a: int
    n_b: int
    delta: float | None
    eps_ab: float | None
    eps_ba: float | None
    p_value: float | None
    paired_seeds: tuple[int, ...]
    verdict: str


def compare(a: Arm, b: Arm, confidence: float = CONFIDENCE) -> Comparison:
    """A against B: ASO over seeds (both need at least 2 seeds), approximate randomisation over the
    tweets of the seeds both have counts for, and the verdict.

    Args:
        a: the system the paper expects to be better.
        b: the reference.
        confidence: ASO's confidence level.
    """
    fa, fb = [a.f1[s] for s in sorted(a.f1)], [b.f1[s] for s in sorted(b.f1)]
    delta = statistics.fmean(fa) - statistics.fmean(fb) if fa and fb else None
    eps_ab = eps_ba = None
    if len(fa) >= 2 and len(fb) >= 2:
        eps_ab, eps_ba = aso(fa, fb, confidence)
    seeds = tuple(sorted(set(a.counts) & set(b.counts)))
    p_value = None
    if seeds:
        try:
            p_value = randomisation_test([a.counts[s] for s in seeds], [b.counts[s] for s in seeds])
        except ValueError as err:
            log.warning("%s vs %s: no randomisation test (%s)", a.label, b.label, err)
            seeds = ()
    return Comparison(a.label, b.label, len(fa), len(fb), delta, eps_ab, eps_ba, p_value, seeds,
                      verdict(a.label, b.label, eps_ab, eps_ba))


def claim_verdict(comparison: Comparison) -> str:
    """The verdict of a claim "A is better than B" from :func:`compare`'s ASO result: supported
    (A better), contradicted (B better), else inconclusive (also with fewer than 2 seeds)."""
    if comparison.verdict == f"{comparison.a} better":
        return SUPPORTED
    if comparison.verdict == f"{comparison.b} better":
        return CONTRADICTED
    return INCONCLUSIVE
