"""Percentile bootstrap intervals over test tweets (docs/statistics.md).

- :func:`bootstrap_ci`: a 95% percentile bootstrap interval of span P/R/F1 over test tweets
  (``scipy.stats.bootstrap``, tweets resampled with replacement). Every resample sums the per-tweet
  counts (true positives, predicted and gold entities) and computes micro F1 from the sums; several
  seeds are pooled first (:func:`~bga_mner.report.statistics.pool_seeds`).
- :func:`bootstrap_contrast`: a weighted sum of ratios of per-tweet sums (F1 gains, the change of a
  gain with the training-set size, keep rates, recall) with a paired bootstrap interval over
  tweets; :func:`ci_verdict` turns an interval into a claim's verdict (supported, contradicted,
  inconclusive).

Every draw comes from a ``numpy.random.Generator`` seeded with
:data:`~bga_mner.report.statistics.SEED`.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from bga_mner.data.spans import prf
from bga_mner.report.statistics import CONFIDENCE, CONTRADICTED, INCONCLUSIVE, SEED, SUPPORTED, TweetCounts

BOOTSTRAP_RESAMPLES = 2000


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
