"""The report's statistics: seed summaries, bootstrap confidence intervals and significance tests.

Why these tests, and what each one can and cannot say, is in docs/statistics.md. In short:

- :class:`Stat`: mean, sample std (ddof=1) and n of one metric over seeds.
- :func:`bootstrap_ci`: a 95% percentile bootstrap interval of span P/R/F1 over test tweets
  (``scipy.stats.bootstrap``, tweets resampled with replacement). Micro F1 is not a mean of
  per-tweet F1s: every resample sums the per-tweet counts (true positives, predicted and gold
  entities) and computes F1 from the sums. Several seeds are pooled by summing each tweet's
  counts over seeds (:func:`pool_seeds`) before tweets are resampled.
- :func:`randomisation_test`: the within-seed test, paired approximate randomisation over test
  tweets (``scipy.stats.permutation_test``, ``permutation_type="samples"``): under the null the
  two systems' outputs of a tweet are exchangeable, so each (seed, tweet) unit swaps them with
  probability 1/2; the statistic is the difference of micro F1. Runs of the same seed are paired
  and the paired seeds are pooled into one test (units = seed × tweet). Exact (all 2^k swaps of
  the k units on which the systems differ) when 2^k <= the number of resamples.
- :func:`aso`: the across-seed test, Almost Stochastic Order (Dror et al. 2019; ``deepsig``,
  Ulmer et al. 2022) on the per-seed test F1s, both directions from one bootstrap. A is declared
  better when eps_min(A > B) < :data:`ASO_THRESHOLD` (0.2, deepsig's recommended threshold).
- :func:`compare`: all of the above for one comparison row, with a plain verdict.
- :func:`bootstrap_contrast`: a weighted sum of ratios of per-tweet sums (F1 gains, the change of a
  gain with the training-set size, keep rates, recall) with a paired bootstrap interval over
  tweets; :func:`ci_verdict` and :func:`claim_verdict` turn an interval or a comparison into a
  claim's verdict (supported, contradicted, inconclusive).

Every random draw comes from a ``numpy.random.Generator`` seeded with :data:`SEED`, so a report
is the same every time it is built from the same runs.
"""

from __future__ import annotations

import json
import logging
import statistics
import warnings
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np

from bga_mner.data.spans import prf

log = logging.getLogger(__package__)

COUNTS_FILE = "predictions/test_counts.json"  # = bga_mner.metrics.TWEET_COUNTS_FILE (written by fit/test)
CONFIDENCE = 0.95
ASO_THRESHOLD = 0.2
BOOTSTRAP_RESAMPLES = 2000
RANDOMISATION_RESAMPLES = 9999
ASO_ITERATIONS = 1000  # deepsig's default number of bootstrap iterations
SEED = 0
MEASURES = ("precision", "recall", "f1")
NO_TEST = "n<2: no test"
NO_DIFFERENCE = "no difference shown"
# verdicts of a claim (make claims, report/claims.py)
SUPPORTED, CONTRADICTED, INCONCLUSIVE = "supported", "contradicted", "inconclusive"


@dataclass
class Stat:
    """Mean, sample std (ddof=1) and n of one metric over seeds (std None for a single seed)."""

    values: list[float] = field(default_factory=list)

    @property
    def n(self) -> int:
        return len(self.values)

    @property
    def mean(self) -> float | None:
        return statistics.fmean(self.values) if self.values else None

    @property
    def std(self) -> float | None:
        return statistics.stdev(self.values) if len(self.values) > 1 else None

    def __str__(self) -> str:
        if not self.values:
            return "—"
        return f"{self.mean:.2f}" + (f" ± {self.std:.2f}" if self.std is not None else "")


@dataclass(frozen=True, eq=False)
class TweetCounts:
    """Per-tweet span counts of one run's test predictions (``predictions/test_counts.json``).

    ``tp``, ``n_pred`` and ``n_gold`` are (tweets, types) integer arrays: true positives, predicted
    and gold entities of each tweet and entity type.
    """

    ids: tuple[str, ...]
    types: tuple[str, ...]
    tp: np.ndarray
    n_pred: np.ndarray
    n_gold: np.ndarray

    def __post_init__(self) -> None:
        shape = (len(self.ids), len(self.types))
        for name in ("tp", "n_pred", "n_gold"):
            if getattr(self, name).shape != shape:
                raise ValueError(f"{name}: shape {getattr(self, name).shape}, expected {shape}")

    @classmethod
    def from_lists(cls, tp: Sequence[Sequence[int]], n_pred: Sequence[Sequence[int]],
                   n_gold: Sequence[Sequence[int]], ids: Sequence[str] | None = None,
                   types: Sequence[str] = ("PER", "LOC", "ORG", "MISC")) -> TweetCounts:
        """Counts from nested lists, one list of per-type counts per tweet.

        Args:
            tp: true positives per tweet and type.
            n_pred: predicted entities per tweet and type.
            n_gold: gold entities per tweet and type.
            ids: the tweets' image ids (default ``"0"``, ``"1"``, ...).
            types: the entity types of the columns.
        """
        arrays = [np.asarray(x, dtype=np.int64).reshape(-1, len(types)) for x in (tp, n_pred, n_gold)]
        ids = tuple(str(i) for i in (ids if ids is not None else range(len(arrays[0]))))
        return cls(ids, tuple(types), *arrays)

    def __len__(self) -> int:
        return len(self.ids)

    def group(self, group: str = "overall") -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Per-tweet (tp, n_pred, n_gold) of one entity type, or summed over types (``overall``).

        Args:
            group: ``overall`` or one of ``types``.
        """
        if group == "overall":
            return self.tp.sum(1), self.n_pred.sum(1), self.n_gold.sum(1)
        j = self.types.index(group)
        return self.tp[:, j], self.n_pred[:, j], self.n_gold[:, j]

    def score(self, group: str = "overall", measure: str = "f1") -> float:
        """Micro P/R/F1 (percent) of all tweets: from the counts summed over tweets.

        Args:
            group: ``overall`` or an entity type.
            measure: precision, recall or f1.
        """
        return float(prf(*(x.sum() for x in self.group(group)))[measure])


def read_counts(run_dir: str | Path) -> TweetCounts | None:
    """The per-tweet counts of a run folder (:data:`COUNTS_FILE`), or None when it has none (a run
    written before the file existed). A malformed file is a ``ValueError`` naming it.

    Args:
        run_dir: the run folder.
    """
    path = Path(run_dir) / COUNTS_FILE
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        return TweetCounts.from_lists(data["tp"], data["n_pred"], data["n_gold"], data["ids"], data["types"])
    except (json.JSONDecodeError, KeyError, TypeError, ValueError) as err:
        raise ValueError(f"{path}: not a valid counts file ({type(err).__name__}: {err})") from err


def _check_same_tweets(counts: Sequence[TweetCounts]) -> None:
    first = counts[0]
    for other in counts[1:]:
        if other.ids != first.ids or other.types != first.types or not np.array_equal(other.n_gold, first.n_gold):
            raise ValueError("the runs' counts are not of the same test tweets (ids or gold entities differ)")


def pool_seeds(counts: Sequence[TweetCounts]) -> TweetCounts:
    """Several seeds' counts of the same test tweets as one: each tweet's counts summed over seeds.

    Args:
        counts: one per seed, all of the same tweets (same ids and gold counts); else ``ValueError``.
    """
    if not counts:
        raise ValueError("no counts to pool")
    _check_same_tweets(counts)
    return TweetCounts(counts[0].ids, counts[0].types, sum(c.tp for c in counts),
                       sum(c.n_pred for c in counts), sum(c.n_gold for c in counts))


def bootstrap_ci(counts: TweetCounts, group: str = "overall", measure: str = "f1",
                 confidence: float = CONFIDENCE, resamples: int = BOOTSTRAP_RESAMPLES,
                 seed: int = SEED) -> tuple[float, float]:
    """Percentile bootstrap interval of micro P/R/F1 over tweets (resampled with replacement).

    Args:
        counts: per-tweet counts (:func:`pool_seeds` for several seeds).
        group: ``overall`` or an entity type.
        measure: precision, recall or f1.
        confidence: the interval's coverage.
        resamples: bootstrap resamples.
        seed: seed of the resampling generator.

    Returns:
        (low, high) in percent.
    """
    from scipy.stats import bootstrap

    def statistic(tp: np.ndarray, n_pred: np.ndarray, n_gold: np.ndarray, axis: int = -1) -> np.ndarray:
        return prf(tp.sum(axis), n_pred.sum(axis), n_gold.sum(axis))[measure]

    res = bootstrap(counts.group(group), statistic, paired=True, vectorized=True, n_resamples=resamples,
                    batch=200, confidence_level=confidence, method="percentile",
                    rng=np.random.default_rng(seed))
    return float(res.confidence_interval.low), float(res.confidence_interval.high)


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
    _check_same_tweets([*a, *b])
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
    if units == 0:
        return 1.0  # identical outputs: every swap gives the observed difference, 0

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


def ratio_terms(counts: TweetCounts, group: str = "overall") -> tuple[np.ndarray, np.ndarray]:
    """Micro F1 as a ratio of per-tweet sums, for :func:`bootstrap_contrast`: F1 = 2 tp / (predicted +
    gold), so (2 tp, predicted + gold) per tweet.

    Args:
        counts: per-tweet counts (:func:`pool_seeds` for several seeds).
        group: ``overall`` or an entity type.
    """
    tp, n_pred, n_gold = counts.group(group)
    return 2 * tp, n_pred + n_gold


def _ratio(num: np.ndarray, den: np.ndarray, axis: int = -1) -> np.ndarray:
    num, den = np.sum(num, axis=axis), np.sum(den, axis=axis)
    return np.divide(num, den, out=np.zeros(np.broadcast(num, den).shape), where=den != 0)


def bootstrap_contrast(terms: Sequence[tuple[np.ndarray, np.ndarray]], weights: Sequence[float],
                       scale: float = 1.0, confidence: float = CONFIDENCE,
                       resamples: int = BOOTSTRAP_RESAMPLES, seed: int = SEED
                       ) -> tuple[float, float, float]:
    """A weighted sum of ratios of per-tweet sums, with a percentile bootstrap interval over tweets.

    Each term i is a pair of per-tweet arrays (numerator, denominator) over the SAME tweets; the
    statistic is ``scale * sum_i w_i * sum(num_i) / sum(den_i)`` (0/0 counts as 0), and every
    resample draws one set of tweets for all terms (a paired bootstrap). Examples: the F1 gain of
    A over B is ``[ratio_terms(A), ratio_terms(B)]``, weights ``[1, -1]``, scale 100 (seeds pooled
    by :func:`pool_seeds` first); the change of that gain between two training-set sizes has four
    terms, weights ``[1, -1, -1, 1]``; keep rates are (kept units, units) per tweet.

    Args:
        terms: (numerator, denominator) per term, each a (tweets,) array.
        weights: one weight per term.
        scale: multiplies the statistic (100: percent).
        confidence: the interval's coverage.
        resamples: bootstrap resamples.
        seed: seed of the resampling generator.

    Returns:
        (value on all tweets, low, high).
    """
    if not terms or len(terms) != len(weights):
        raise ValueError(f"{len(terms)} terms but {len(weights)} weights: need one weight per term")
    arrays = [np.asarray(a, dtype=float) for pair in terms for a in pair]
    n = len(arrays[0])
    if n == 0 or any(len(a) != n for a in arrays):
        raise ValueError("every term needs one numerator and denominator per tweet, of the same tweets")
    w = np.asarray(weights, dtype=float)

    def statistic(*data: np.ndarray, axis: int = -1) -> np.ndarray:
        ratios = [_ratio(data[2 * i], data[2 * i + 1], axis) for i in range(len(w))]
        return scale * sum(wi * r for wi, r in zip(w, ratios))

    value = float(statistic(*arrays))
    if n == 1:
        return value, value, value
    from scipy.stats import bootstrap

    res = bootstrap(arrays, statistic, paired=True, vectorized=True, n_resamples=resamples, batch=200,
                    confidence_level=confidence, method="percentile", rng=np.random.default_rng(seed))
    return value, float(res.confidence_interval.low), float(res.confidence_interval.high)


def ci_verdict(low: float, high: float, reference: float = 0.0) -> str:
    """The verdict of a directional claim "the statistic exceeds ``reference``" from its interval:
    ``supported`` (the interval lies above), ``contradicted`` (below), else ``inconclusive``.

    Args:
        low, high: the interval.
        reference: the value the claim says is exceeded (0 for a gain, chance for a recall).
    """
    if low > reference:
        return SUPPORTED
    if high < reference:
        return CONTRADICTED
    return INCONCLUSIVE


def claim_verdict(comparison: Comparison) -> str:
    """The verdict of a claim "A is better than B" from :func:`compare`'s ASO result: supported
    (A better), contradicted (B better), else inconclusive (also with fewer than 2 seeds)."""
    if comparison.verdict == f"{comparison.a} better":
        return SUPPORTED
    if comparison.verdict == f"{comparison.b} better":
        return CONTRADICTED
    return INCONCLUSIVE
